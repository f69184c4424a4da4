"""The pipelines' commands on the real engine: every flag they pass to pulumi is one the CLI
knows, and the jobs' `run:` blocks, run as written (bash -eo pipefail, as GitHub runs them), take
staging and production through the whole flow on render-mode copies of the two stacks: up staging,
promote to production, preview both with the policy pack, drift, and then a preview that the
production policy pack blocks. tests/unit/test_pipelines.py proves GitLab runs the same commands."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.config import Addons
from infra.simulate import DELETE, apply_overrides
from tests.engine.engine import ROOT, Project
from tests.unit.test_pipelines import github_jobs, kind, task_jobs

# Every add-on the config knows, so one added later is switched off here too.
ADDONS = tuple(field.alias or name for name, field in Addons.model_fields.items())
V2_BACKEND = "ghcr.io/clpr-tv/backend:1.5.0"


def test_pulumi_knows_every_flag_the_pipelines_pass(bin_dir):
    used: dict[tuple, set] = {}
    for job in github_jobs():
        for argv in job.commands():
            if kind(argv) == "pulumi":
                words = tuple(a for a in argv[1:3] if not a.startswith("-"))
                used.setdefault(words, set()).update(a for a in argv if a.startswith("--"))
    assert set(used) == {("preview",), ("up",), ("stack", "select")}
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PULUMI_SKIP_UPDATE_CHECK": "true"}
    for words, flags in used.items():
        done = subprocess.run(["pulumi", *words, "--help"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        known = set(re.findall(r"(--[a-z][a-z-]*)", done.stdout))
        assert flags <= known, f"pulumi {' '.join(words)} does not know {sorted(flags - known)}"


def render_mode(stack: str) -> dict:
    """The stack file's config, on no cloud: render mode, add-ons (charts from the internet) off."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return apply_overrides(document["config"], {
        "clipper:cloud": "existing",
        "clipper:existing": {"mode": "render", "renderDir": f".state/render/{stack}"},
        "clipper:ingress.waitForAddress": False,
        "clipper:apps.backend.secrets": DELETE,  # synced by External Secrets, which is off
        **{f"clipper:addons.{addon}.enabled": False for addon in ADDONS},
    })


@pytest.fixture
def pipeline_project(bin_dir, tmp_path) -> Project:
    """A copy of the project, as the CI checkout would be, with staging and production in render
    mode, committed to a git repository of its own (the promote job shows `git diff`)."""
    project = Project.copy_of(ROOT, tmp_path, bin_dir)
    shutil.copytree(ROOT / "ci", project.dir / "ci")
    for stack in ("staging", "production"):
        project.write_stack_config(stack, render_mode(stack))
    git = {**project.env, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run(["git", *command], cwd=project.dir, env=git, check=True, capture_output=True)
    project.env.update({
        "PULUMI_SECRETS_PROVIDER": "passphrase",  # the CI variable; KMS in real use
        "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
        "GITHUB_PATH": str(tmp_path / "github-path"),
        "CI": "true",
    })
    return project


def run_job(project: Project, task: str, stack: str) -> tuple[int, str]:
    """The job's `run:` steps, in order, each as GitHub runs it; stops at the first failure, then
    runs the `always()` steps (the summary), as GitHub does. The cloud logins (actions, or steps
    only for a cloud) and `make venv` (the copy shares the repo's .venv) are left out."""
    job = task_jobs(github_jobs())[(task, stack)]
    env = {**project.env, "TASK": task, "STACK": stack, "COMMIT": "0123456789ab"}
    failed, output = 0, []
    for script in job.scripts:
        if "vars.CLIPPER_CLOUD" in script.condition or script.text.strip() == "make venv":
            continue
        if failed and "always()" not in script.condition:
            continue
        step_env = {**env, "CI_JOB_STATUS": "failure" if failed else "success"}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script.text],
                              cwd=project.dir, env=step_env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        output.append(f"$ {script.where}\n{done.stdout}{done.stderr}")
        failed = failed or done.returncode
    (project.dir / "pipeline.log").unlink(missing_ok=True)  # the next job starts on a fresh runner
    return failed, "\n".join(output)


def summary(project: Project, task: str, stack: str) -> str:
    return (project.dir / f"summary-{task}-{stack}.md").read_text()


def test_the_pipeline_jobs_take_both_stacks_through_the_flow_and_policy_blocks_a_bad_change(pipeline_project):
    project = pipeline_project
    project.set("staging", "apps.backend.image", V2_BACKEND)  # the change that was merged

    code, output = run_job(project, "up", "staging")
    assert code == 0, output
    assert "staging: GO" in output and "deploy 0123456789ab" in project.ok("stack", "history", "--stack", "staging").stdout
    assert "### up staging: ✅ success" in summary(project, "up", "staging")

    code, output = run_job(project, "promote", "production")
    assert code == 0, output
    assert project.outputs("production")["appImages"]["backend"] == V2_BACKEND
    assert f"+      image: {V2_BACKEND}" in output, "the promoted stack file's diff, to commit"

    for stack in ("staging", "production"):
        code, output = run_job(project, "preview", stack)
        assert code == 0, output
        text = summary(project, "preview", stack)
        assert f"### preview {stack}: ✅ success" in text and f"{stack}: GO" in text
        assert "**Policy pack**" in text and "**Resources**" in text

        code, output = run_job(project, "drift", stack)
        assert code == 0 and "has no live state" in summary(project, "drift", stack), output
    step_summary = Path(project.env["GITHUB_STEP_SUMMARY"]).read_text()
    assert step_summary.count("<!-- clipper-pipeline:") == 6

    # A change the production policy pack blocks: its preview job fails, and says why.
    project.set("production", "apps.frontend.image", "docker.io/clpr-tv/frontend:2.1.0")
    code, output = run_job(project, "preview", "production")
    assert code != 0, output
    text = summary(project, "preview", "production")
    assert "### preview production: ❌ failure" in text and "production: NO-GO" in text
    assert "image-allowed-registry" in text
