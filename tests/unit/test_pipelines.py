"""The CI pipelines (.github/workflows/, .gitlab-ci.yml, ci/): linted by a real linter for each
format, and every command they run checked against what it calls, so that the pipelines cannot
drift from the Makefile, the ops CLI or each other (docs/pipelines.md).

The definitions are read into jobs per task (preview, up, promote, drift) and stack, each with the
shell commands it runs. A command must be a Makefile target (`make -n` accepts it), an
`infra.ops` invocation that the ops CLI's own parser accepts, a `pulumi` command on a stack file
with the policy pack the ops CLI would use, ci/summary.py with arguments its parser accepts, or a
named piece of CI plumbing. tests/engine/test_pipeline_commands.py checks the pulumi flags against
the real CLI and runs the jobs' commands on render-mode copies of the stacks."""
from __future__ import annotations

import functools
import http.server
import importlib.util
import itertools
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import yaml

from infra.ops import cli, stacks
from infra.ops.stack_config import ConfigEntry

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
STACK_WORKFLOW = "./.github/workflows/clipper-stack.yml"
GITLAB_CI = ROOT / ".gitlab-ci.yml"
GITLAB_KEYWORDS = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache",
                   "before_script", "after_script"}
SEPARATORS = {"&&", "||", "|", ";", "&"}
GROUPING = {"{", "}", "(", ")"}
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
REDIRECTION = re.compile(r"(?<!\S)\d*>>?&\d+|(?<!\S)\d*(?:>>?|<)\s*(?:\"[^\"]*\"|\S+)")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


@dataclass
class Script:
    """One `run:` or `script:` block, where it is, and the variables it sees."""

    where: str
    text: str
    variables: dict = field(default_factory=dict)
    condition: str = ""  # GitHub: the step's `if:`


@dataclass
class Job:
    ci: str  # github | gitlab
    name: str
    task: Optional[str]
    stack: Optional[str]
    scripts: list  # [Script]
    definition: dict = field(default_factory=dict)

    def commands(self, only: Optional[tuple] = None) -> list[list[str]]:
        """Every command of the job; with `only`, just those variables are expanded."""
        return [argv for script in self.scripts
                for argv in commands(script.text, {k: v for k, v in script.variables.items()
                                                   if only is None or k in only})]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the key `on` as True.
    return workflow.get("on", workflow.get(True)) or {}


def expand(text: str, variables: dict) -> str:
    """$NAME and ${NAME} replaced where the name is known; unknown ones stay as they are."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return str(variables[name]) if name in variables else match.group(0)

    return VARIABLE.sub(value, text)


def commands(script: str, variables: Optional[dict] = None) -> list[list[str]]:
    """The simple commands of a script, with redirections, grouping and leading assignments
    dropped and known variables expanded: `a 2>&1 | tee x && b` gives [[a], [tee, x], [b]]."""
    variables = variables or {}
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lexer = shlex.shlex(REDIRECTION.sub(" ", line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in itertools.chain(lexer, [";"]):
            if token in SEPARATORS:
                if current:
                    found.append(current)
                current = []
            elif token in GROUPING or (not current and ASSIGNMENT.match(token)):
                continue
            else:
                current.append(expand(token, variables))
    return found


def github_expression(text: str, context: dict) -> str:
    """`${{ inputs.stack }}` and the like replaced from context; others become `<expression>`."""
    return EXPRESSION.sub(lambda m: str(context.get(m.group(1), f"<{m.group(1)}>")), str(text))


def step_tasks(condition: Optional[str]) -> Optional[set]:
    """The tasks a step's `if:` admits (None: every task)."""
    tasks = set(re.findall(r"inputs\.task == '(\w+)'", str(condition or "")))
    return tasks or None


def matrix_rows(strategy: Optional[dict]) -> list[dict]:
    matrix = (strategy or {}).get("matrix") or {}
    keys = [k for k in matrix if k not in ("include", "exclude")]
    rows = [dict(zip(keys, values)) for values in itertools.product(*(matrix[k] for k in keys))]
    return rows + list(matrix.get("include") or []) if keys else list(matrix.get("include") or [{}])


def github_jobs() -> list[Job]:
    """Every job of every workflow, with the reusable stack workflow expanded per caller."""
    stack_workflow = load_yaml(ROOT / STACK_WORKFLOW)
    (stack_job,) = stack_workflow["jobs"].values()
    jobs = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        if path.name == Path(STACK_WORKFLOW).name:
            continue
        workflow = load_yaml(path)
        for name, job in workflow["jobs"].items():
            for row in matrix_rows(job.get("strategy")):
                context = {f"matrix.{k}": v for k, v in row.items()}
                if job.get("uses") == STACK_WORKFLOW:
                    inputs = {k: github_expression(v, context) for k, v in job["with"].items()}
                    jobs.append(_stack_job(f"{path.name}:{name}", stack_job, inputs, job))
                else:
                    scripts = [Script(f"{path.name}:{name}:{step.get('name', i)}", github_expression(step["run"], context),
                                      _env(workflow, job, step, context))
                               for i, step in enumerate(job.get("steps", [])) if "run" in step]
                    jobs.append(Job("github", f"{path.name}:{name}", None, None, scripts, job))
    return jobs


def _env(*levels_and_context) -> dict:
    *levels, context = levels_and_context
    env = {}
    for level in levels:
        env.update({k: github_expression(v, context) for k, v in (level.get("env") or {}).items()})
    return env


def _stack_job(name: str, stack_job: dict, inputs: dict, caller: dict) -> Job:
    context = {f"inputs.{k}": v for k, v in inputs.items()}
    scripts = []
    for i, step in enumerate(stack_job["steps"]):
        tasks = step_tasks(step.get("if"))
        if "run" not in step or (tasks is not None and inputs["task"] not in tasks):
            continue
        scripts.append(Script(f"{name}:{step.get('name', i)}", github_expression(step["run"], context),
                              _env(stack_job, step, context), str(step.get("if", ""))))
    definition = {**stack_job, "caller": caller, "inputs": inputs}
    return Job("github", name, inputs["task"], inputs["stack"], scripts, definition)


def gitlab_config() -> dict:
    return load_yaml(GITLAB_CI)


def _merged(config: dict, name: str) -> dict:
    """A job with its `extends` templates merged in (the job's own keys win; variables merge)."""
    job = config[name]
    parents = job.get("extends") or []
    merged: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        base = _merged(config, parent)
        merged.update(base)
    variables = {**merged.get("variables", {}), **job.get("variables", {})}
    merged.update(job)
    merged["variables"] = variables
    return merged


def gitlab_jobs() -> list[Job]:
    config = gitlab_config()
    jobs = []
    for name, raw in config.items():
        if name in GITLAB_KEYWORDS or name.startswith(".") or not isinstance(raw, dict):
            continue
        job = _merged(config, name)
        rows = []
        for entry in ((job.get("parallel") or {}).get("matrix") or []):
            values = [entry[k] if isinstance(entry[k], list) else [entry[k]] for k in entry]
            rows += [dict(zip(entry, combo)) for combo in itertools.product(*values)]
        for row in rows or [{}]:
            variables = {**config.get("variables", {}), **job["variables"], **row}
            scripts = [Script(f"gitlab:{name}:{part}", "\n".join(job.get(part) or []), variables)
                       for part in ("before_script", "script", "after_script")]
            jobs.append(Job("gitlab", name, variables.get("TASK"), variables.get("STACK"), scripts, job))
    return jobs


def all_jobs() -> list[Job]:
    return github_jobs() + gitlab_jobs()


# ---------------------------------------------------------------------------------------------
# What the commands may be

OPS = [".venv/bin/python", "-m", "infra.ops"]
SUMMARY = [".venv/bin/python", "ci/summary.py"]
PULUMI_COMMANDS = {("preview",), ("up",), ("stack", "select")}
# CI plumbing around the project's commands: each form allowed, and why.
GLUE = {
    ("tee", "-a", "pipeline.log"): "keep the output for the summary",
    ("cat",): "assemble a summary or comment",
    ("echo",): "add a directory to GITHUB_PATH",
    ("set", "-o", "pipefail"): "a failing command fails its `| tee`",
    ("command", "-v", "make"): "is make in the image?",
    ("apt-get", "update"): "install make where the image lacks it",
    ("apt-get", "install"): "install make where the image lacks it",
    ("source", "ci/cloud-login.sh"): "GitLab: OIDC login to the cloud",
    ("az", "aks", "install-cli"): "GitHub, AKS: kubelogin, the kubeconfig's token helper",
    ("git", "diff", "--"): "show the promoted stack file",
    ("gh", "pr", "comment"): "the preview summary on the pull request",
}
TASKS = {("preview", "staging"), ("preview", "production"), ("up", "staging"), ("promote", "production"),
         ("drift", "staging"), ("drift", "production")}
LINT_BIN = ROOT / ".venv-lint" / "bin"


def kind(argv: list[str]) -> str:
    if argv[0] == "make":
        return "make"
    if argv[:3] == OPS:
        return "ops"
    if argv[:2] == SUMMARY:
        return "summary"
    if argv[0] == "pulumi":
        return "pulumi"
    if any(tuple(argv[:len(form)]) == form for form in GLUE):
        return "glue"
    return "unknown"


def project_commands(job: Job, only: Optional[tuple] = None) -> list[list[str]]:
    """What the job runs of the project's own: make, the ops CLI, pulumi, ci/summary.py render."""
    return [argv for argv in job.commands(only) if kind(argv) in {"make", "ops", "pulumi"}
            or (kind(argv) == "summary" and argv[2] == "render")]


def task_jobs(jobs: list[Job]) -> dict:
    found = {}
    for job in jobs:
        if job.task is not None:
            assert (job.task, job.stack) not in found, f"two {job.ci} jobs {job.task} {job.stack}"
            found[(job.task, job.stack)] = job
    return found


@functools.lru_cache(maxsize=None)
def make_targets() -> frozenset:
    """The targets `make help` lists: the Makefile's documented interface."""
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"^\s+make (\S+)", done.stdout, re.M))


def stack_file_config(stack: str) -> dict:
    path = ROOT / f"Pulumi.{stack}.yaml"
    assert path.is_file(), f"the pipelines name stack {stack!r}, which has no {path.name}"
    return yaml.safe_load(path.read_text())["config"]


def summary_module():
    spec = importlib.util.spec_from_file_location("ci_summary", ROOT / "ci" / "summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def option(argv: list[str], name: str) -> Optional[str]:
    return argv[argv.index(name) + 1] if name in argv else None


def check_pulumi(argv: list[str]) -> list[str]:
    """Problems with a pulumi command: an unexpected subcommand, a stack with no stack file, or a
    policy pack other than the one (and the config) the ops CLI uses for that stack."""
    words = tuple(a for a in argv[1:3] if not a.startswith("-"))
    if not any(words[:len(c)] == c for c in PULUMI_COMMANDS):
        return [f"unexpected pulumi command {' '.join(argv[:3])}"]
    stack = option(argv, "--stack")
    if stack is None:
        return ["no --stack: it would run on whatever stack the workspace last selected"]
    config = {key: ConfigEntry(value) for key, value in stack_file_config(stack).items()}
    problems = []
    if argv[1] in ("preview", "up"):
        expected = stacks.policy_options(stack, config, ROOT)
        used = {"policy_packs": [option(argv, "--policy-pack")],
                "policy_pack_configs": [option(argv, "--policy-pack-config")]}
        if used != expected:
            problems.append(f"policy pack {used} is not the one the ops CLI uses for {stack}: {expected}")
    return problems


def check(argv: list[str]) -> list[str]:
    """Why a command may not be in the pipelines; [] when it may."""
    what = kind(argv)
    if what == "make":
        return [] if len(argv) == 2 and argv[1] in make_targets() else [f"not a `make help` target: {argv}"]
    if what == "ops":
        try:
            args = cli.build_parser().parse_args(argv[3:])
        except SystemExit:
            return [f"the ops CLI rejects {argv[3:]}"]
        problems = [f"no stack file for {name}" for name in {getattr(args, a, None) for a in ("stack", "source", "target")}
                    if name and not (ROOT / f"Pulumi.{name}.yaml").is_file()]
        if args.command in ("promote", "rollback") and not args.yes:
            problems.append(f"{args.command} without --yes refuses when there is no terminal (CI)")
        return problems
    if what == "summary":
        try:
            summary_module().build_parser().parse_args(argv[2:])
        except SystemExit:
            return [f"ci/summary.py rejects {argv[2:]}"]
        return []
    if what == "pulumi":
        return check_pulumi(argv)
    if what == "glue":
        return []
    return [f"neither a make target, an ops command, pulumi nor named CI plumbing: {argv}"]


# ---------------------------------------------------------------------------------------------
# The commands


def test_scripts_split_into_their_simple_commands():
    script = 'a --x "y z" 2>&1 | tee -a f && B=1 b >> "$OUT"\n# a comment\n{ c; } || d "$STACK-x" \\\n  --e\n'
    assert commands(script, {"STACK": "staging"}) == [
        ["a", "--x", "y z"], ["tee", "-a", "f"], ["b"], ["c"], ["d", "staging-x", "--e"]]


def test_every_command_is_a_make_target_an_ops_command_pulumi_or_named_plumbing():
    jobs = all_jobs()
    problems = [f"{job.ci} {job.name}: {problem}" for job in jobs for argv in job.commands() for problem in check(argv)]
    assert not problems, "\n".join(problems)
    used = {kind(argv) for job in jobs for argv in job.commands()}
    assert {"make", "ops", "pulumi", "summary"} <= used


def test_the_checks_reject_what_the_clis_would_reject():
    """The check above is not a rubber stamp: each of these is refused, for its reason."""
    bad = {
        ("make", "deploy"): "not a `make help` target",
        (*OPS, "preflight"): "the ops CLI rejects",
        (*OPS, "promote", "--from", "staging", "--to", "production"): "without --yes",
        (*OPS, "drift", "--stack", "qa"): "no stack file for qa",
        (*OPS, "drift", "--stack", "staging", "--json"): "the ops CLI rejects",
        ("pulumi", "destroy", "--stack", "staging"): "unexpected pulumi command",
        ("pulumi", "preview"): "no --stack",
        ("pulumi", "preview", "--stack", "production", "--policy-pack", "policies",
         "--policy-pack-config", "policies/config/staging.json"): "is not the one the ops CLI uses",
        ("pulumi", "up", "--stack", "staging", "--yes"): "is not the one the ops CLI uses",
        (*SUMMARY, "render", "--title", "x"): "ci/summary.py rejects",
        ("curl", "-d", "@state.json"): "neither a make target",
    }
    for argv, reason in bad.items():
        problems = check(list(argv))
        assert problems and reason in problems[0], (argv, problems)


def test_make_accepts_every_target_the_pipelines_run():
    targets = {argv[1] for job in all_jobs() for argv in job.commands() if kind(argv) == "make"}
    assert targets == {"venv"}
    for target in targets:
        done = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr


def test_ops_help_runs_for_every_command_the_pipelines_use():
    used = {argv[3] for job in all_jobs() for argv in job.commands() if kind(argv) == "ops"}
    assert used == {"preflight", "promote", "drift"}
    for command in used:
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "infra.ops", command, "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and ("--from" if command == "promote" else "--stack") in done.stdout, done.stderr


def test_both_ci_systems_run_the_same_commands_for_each_task_and_stack():
    github, gitlab = task_jobs(github_jobs()), task_jobs(gitlab_jobs())
    assert set(github) == set(gitlab) == TASKS
    for task in sorted(TASKS):
        ours = project_commands(github[task], only=("STACK", "TASK"))
        theirs = project_commands(gitlab[task], only=("STACK", "TASK"))
        assert ours == theirs, f"{task}:\nGitHub: {ours}\nGitLab: {theirs}"


# ---------------------------------------------------------------------------------------------
# The flow: change -> preview with policy -> staging -> promote -> production, and drift


def test_each_task_runs_the_commands_of_the_flow():
    for ci_jobs in (github_jobs(), gitlab_jobs()):
        jobs = task_jobs(ci_jobs)
        for (task, stack), job in jobs.items():
            run = project_commands(job)
            policy = ["--policy-pack", "policies", "--policy-pack-config", f"policies/config/{stack}.json"]
            ops = [argv[3:] for argv in run if kind(argv) == "ops"]
            pulumi = [argv[1:] for argv in run if kind(argv) == "pulumi"]
            if task == "preview":
                assert ops == [["preflight", "--stack", stack]]
                assert [p[:3] for p in pulumi] == [["preview", "--stack", stack]] and pulumi[0][3:7] == policy
            elif task == "up":
                assert ops == [["preflight", "--stack", stack]]
                assert pulumi[0][:4] == ["stack", "select", "--create", "--stack"]
                assert pulumi[1][:4] == ["up", "--stack", stack, "--yes"] and pulumi[1][4:8] == policy
            elif task == "promote":
                assert ops == [["promote", "--from", "staging", "--to", stack, "--yes"]]
            else:
                assert ops == [["drift", "--stack", stack]] and not pulumi
            assert run[0] == ["make", "venv"], "the project virtualenv first"
            assert run[-1][:3] == [*SUMMARY, "render"], "a summary of every job, last"


def test_github_triggers_environments_and_the_production_gate():
    workflows = {path.name: load_yaml(path) for path in WORKFLOWS.glob("*.yml")}
    assert set(triggers(workflows["clipper-change.yml"])) == {"pull_request"}
    assert triggers(workflows["clipper-deploy.yml"])["push"] == {"branches": ["main"]}
    assert "schedule" in triggers(workflows["clipper-drift.yml"])
    assert set(triggers(workflows["clipper-stack.yml"])) == {"workflow_call"}
    jobs = task_jobs(github_jobs())
    environments = {task: job.definition["inputs"]["environment"] for task, job in jobs.items()}
    # The production identity is in the `production` environment (required reviewers) only, and
    # only the promotion runs there; previews and drift get the read-only `preview` identity.
    assert environments == {("preview", "staging"): "preview", ("preview", "production"): "preview",
                            ("up", "staging"): "staging", ("promote", "production"): "production",
                            ("drift", "staging"): "preview", ("drift", "production"): "preview"}
    (stack_job,) = load_yaml(ROOT / STACK_WORKFLOW)["jobs"].values()
    assert stack_job["environment"] == "${{ inputs.environment }}"
    deploy = workflows["clipper-deploy.yml"]["jobs"]
    assert deploy["production"]["needs"] == "staging"
    assert "needs.staging.result == 'success'" in deploy["production"]["if"]


def test_gitlab_rules_the_manual_gate_and_protected_environment():
    config = gitlab_config()
    jobs = {job.name: job.definition for job in gitlab_jobs()}
    mr, schedule = '$CI_PIPELINE_SOURCE == "merge_request_event"', '$CI_PIPELINE_SOURCE == "schedule"'
    push = '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "push"'
    assert [r["if"] for r in jobs["preview"]["rules"]] == [mr]
    assert [r["if"] for r in jobs["up-staging"]["rules"]] == [push]
    assert [r["if"] for r in jobs["drift"]["rules"]] == [schedule]
    promote = jobs["promote-production"]
    assert push in [r["if"] for r in promote["rules"]]
    assert all(rule.get("when") == "manual" for rule in promote["rules"]), "promotion is a manual job on every path"
    assert promote["allow_failure"] is False, "the pipeline waits (blocked) for the manual promotion"
    assert promote["environment"]["name"] == "production"
    assert jobs["up-staging"]["environment"]["name"] == "staging"
    assert {jobs[n]["environment"]["action"] for n in ("preview", "drift")} <= {"prepare", "verify"}, \
        "previews and drift only read: no deployment"
    assert jobs["up-staging"]["resource_group"] != promote["resource_group"]
    assert [r["if"] for r in config["workflow"]["rules"]][:2] == [mr, schedule]


# ---------------------------------------------------------------------------------------------
# Credentials, state and versions


def test_credentials_come_from_oidc_federation_never_from_stored_keys():
    texts = {path.name: path.read_text() for path in WORKFLOWS.glob("*.yml")}
    for name, text in texts.items():
        assert "secrets." not in text, f"{name} reads a stored secret"
        assert load_yaml(WORKFLOWS / name)["permissions"] == {}, f"{name}: no default token permissions"
    key_inputs = {"credentials_json", "aws-access-key-id", "aws-secret-access-key", "aws-session-token", "creds"}
    (stack_job,) = load_yaml(ROOT / STACK_WORKFLOW)["jobs"].values()
    assert stack_job["permissions"] == {"contents": "read", "id-token": "write"}
    logins = {}
    for step in stack_job["steps"]:
        assert not key_inputs & set(step.get("with") or {}), step
        logins[step.get("uses", "").split("@")[0]] = step
    assert {"google-github-actions/auth", "aws-actions/configure-aws-credentials", "azure/login"} <= set(logins)
    assert set(logins["google-github-actions/auth"]["with"]) == {"workload_identity_provider", "service_account"}
    assert "role-to-assume" in logins["aws-actions/configure-aws-credentials"]["with"]
    assert set(logins["azure/login"]["with"]) == {"client-id", "tenant-id", "subscription-id"}
    for job in github_jobs():
        caller = job.definition.get("caller")
        if caller:
            assert caller["permissions"]["id-token"] == "write", job.name
    # GitLab: every job gets an OIDC token and logs in with it; the file names no key.
    config = gitlab_config()
    assert set(config[".clipper"]["id_tokens"]) == {"CLIPPER_ID_TOKEN"}
    assert all(job.definition.get("extends") == ".clipper" for job in gitlab_jobs())
    keyish = re.compile(r"(KEY|SECRET|PASSWORD|PASSPHRASE|TOKEN|CREDENTIALS?)$")
    assert not [name for name in config["variables"] if keyish.search(name)]
    login = (ROOT / "ci" / "cloud-login.sh").read_text()
    assert not re.search(r"SECRET_ACCESS_KEY|client-secret|--password|credentials_json", login)


def test_state_backend_and_secrets_provider_come_from_ci_variables():
    (stack_job,) = load_yaml(ROOT / STACK_WORKFLOW)["jobs"].values()
    assert stack_job["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert stack_job["env"]["PULUMI_SECRETS_PROVIDER"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}"
    variables = gitlab_config()["variables"]
    assert "PULUMI_BACKEND_URL" not in variables and "PULUMI_SECRETS_PROVIDER" not in variables
    for ci_jobs in (github_jobs(), gitlab_jobs()):
        for job in ci_jobs:
            for argv in job.commands(only=("STACK", "TASK")):
                if argv[:3] == ["pulumi", "stack", "select"]:
                    assert option(argv, "--secrets-provider") == "$PULUMI_SECRETS_PROVIDER"
    # Stacks whose files carry no secrets provider use the one recorded in their state.
    assert stack_job["env"]["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true"
    assert variables["PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER"] == "true"


def test_actions_are_pinned_to_a_version_or_a_commit():
    pinned = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
    for path in WORKFLOWS.glob("*.yml"):
        for name, job in load_yaml(path)["jobs"].items():
            uses = [job["uses"]] if "uses" in job else [s["uses"] for s in job.get("steps", []) if "uses" in s]
            for ref in uses:
                assert ref.startswith("./.github/workflows/") or pinned.match(ref), f"{path.name}:{name}: {ref}"


def test_the_pulumi_cli_in_ci_is_the_version_requirements_txt_pins_for_the_sdk():
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    (stack_job,) = load_yaml(ROOT / STACK_WORKFLOW)["jobs"].values()
    (install,) = [s for s in stack_job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert str(install["with"]["pulumi-version"]) == pin
    assert gitlab_config()["variables"]["CLIPPER_CI_IMAGE"].endswith(f":{pin}")


# ---------------------------------------------------------------------------------------------
# The linters


def lint_tool(name: str) -> Path:
    path = LINT_BIN / name
    assert path.is_file(), f"{path} is missing: run `make lint-tools` (make test does)"
    return path


def run_tool(*argv, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def actionlint(cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_tool(lint_tool("actionlint"), "-no-color", "-shellcheck", lint_tool("shellcheck"), "-pyflakes=", cwd=cwd)


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    transform = ["--data-transform", "gitlab-ci"] if schema == "gitlab-ci" else []
    return run_tool(lint_tool("check-jsonschema"), "--builtin-schema", f"vendor.{schema}", *transform, *files)


def gitlab_shell_scripts(directory: Path) -> list[Path]:
    """Each GitLab job's before_script + script, and its after_script, as bash files."""
    files = []
    for job in gitlab_jobs():
        before, script, after = job.scripts
        for part, text in (("script", f"{before.text}\n{script.text}"), ("after_script", after.text)):
            path = directory / f"{job.name}-{job.stack}-{part}.sh"
            path.write_text(f"#!/usr/bin/env bash\n{text}\n")
            files.append(path)
    return files


def shellcheck(*files: Path) -> subprocess.CompletedProcess:
    return run_tool(lint_tool("shellcheck"), "-x", "--source-path", ROOT, *files)


@pytest.mark.slow
def test_actionlint_passes_every_workflow_with_shellcheck_on_each_run_block():
    version = run_tool(lint_tool("actionlint"), "-version")
    pinned = re.search(r"actionlint@(v\S+)", (ROOT / "tests" / "requirements-lint.txt").read_text()).group(1)
    assert version.stdout.splitlines()[0] == pinned
    done = actionlint()
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_definitions_match_the_ci_systems_schemas():
    for schema, files in (("gitlab-ci", [GITLAB_CI]), ("github-workflows", sorted(WORKFLOWS.glob("*.yml")))):
        done = check_jsonschema(schema, *files)
        assert done.returncode == 0 and "ok -- validation done" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_shellcheck_passes_ci_scripts_and_every_gitlab_job_script(tmp_path):
    done = shellcheck(*sorted((ROOT / "ci").glob("*.sh")), *gitlab_shell_scripts(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_each_linter_fails_on_a_planted_mistake(tmp_path):
    """Guard against a linter that passes everything (a wrong flag, no files read)."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for path in WORKFLOWS.glob("*.yml"):
        (workflows / path.name).write_text(path.read_text())
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # actionlint finds workflows from the repo root
    stack = workflows / "clipper-stack.yml"
    stack.write_text(stack.read_text().replace("${{ inputs.task }}-${{ inputs.stack }}",
                                               "${{ inputs.tsak }}-${{ inputs.stack }}", 1))
    done = actionlint(cwd=tmp_path)
    assert done.returncode == 1 and 'property "tsak" is not defined' in done.stdout, done.stdout
    gitlab = tmp_path / ".gitlab-ci.yml"
    gitlab.write_text(GITLAB_CI.read_text().replace("      when: manual\n", "      when: by-hand\n", 1))
    done = check_jsonschema("gitlab-ci", gitlab)
    assert done.returncode == 1 and "promote-production" in done.stdout, done.stdout
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\npulumi preview --stack $STACK\n")
    done = shellcheck(script)
    assert done.returncode == 1 and "SC2086" in done.stdout, done.stdout


# ---------------------------------------------------------------------------------------------
# ci/summary.py


def preflight_log(stack: str, go: bool) -> str:
    """What `infra.ops preflight` prints, made with its own table function."""
    from infra.ops import console
    rows = [("pulumi CLI", "GO", "/usr/bin/pulumi (3.272.0)"), ("config validates", "GO", "73 resources declared"),
            ("preview", "GO" if go else "NO-GO", "4 create" if go else "blocked by mandatory policy violations"),
            ("policy pack", "GO" if go else "NO-GO", "passed (policies/config/x.json; 2 advisory)" if go else
             "image-allowed-registry: image 'docker.io/x:1' is not from an allowed registry")]
    return "\n".join([f"==> preview of {stack} with the policy pack", "  | Previewing update (" + stack + "):",
                      "  | error: preview failed" if not go else "  | ", "",
                      console.table(["check", "result", "detail"], rows), "", f"{stack}: {'GO' if go else 'NO-GO'}", ""])


PREVIEW_LOG = """Previewing update (staging):
     Type                              Name             Plan
     pulumi:pulumi:Stack               clipper-staging
 ~   └─ kubernetes:apps/v1:Deployment  backend          update     [diff: ~spec]

Policies:
    ✅ clipper@v0.1.0 (local: policies)
        - [advisory]  [severity: medium]  waivers-in-use  (kubernetes:apps/v1:Deployment: backend)
          waiver honoured: external-dns watches Services

Resources:
    ~ 1 to update
    72 unchanged

"""


def test_summary_picks_the_verdict_policy_findings_and_changes_out_of_the_log():
    summary = summary_module()
    text = summary.render("preview staging", "success", preflight_log("staging", True) + PREVIEW_LOG)
    assert text.startswith("<!-- clipper-pipeline: preview staging -->\n### preview staging: ✅ success")
    for expected in ("staging: GO", "config validates", "waivers-in-use", "~ 1 to update", "<details><summary>log"):
        assert expected in text
    assert "  | " not in text.split("<details>")[0], "the ops CLI's engine prefix is taken off"
    failed = summary.render("preview production", "failure", preflight_log("production", False))
    assert "❌ failure" in failed and "production: NO-GO" in failed and "error: preview failed" in failed


def test_summary_stays_within_its_limit_and_its_fences_hold(tmp_path):
    summary = summary_module()
    log = preflight_log("staging", True) + "x" * 100_000 + "\n```\nthe end\n"
    text = summary.render("up staging", "success", log, limit=5000)
    assert len(text) <= 5000 and "the end" in text and "start of the log cut" in text
    assert "````text" in text, "a fence longer than the log's own backticks"
    out = tmp_path / "summary.md"
    assert summary.main(["render", "--title", "drift production", "--status", "failure", "--out", str(out),
                         str(tmp_path / "missing.log")], env={}) == 0
    assert "❌ failure" in out.read_text() and "Nothing to summarise" in out.read_text()


class FakeGitLab(http.server.BaseHTTPRequestHandler):
    """The merge-request notes API on loopback: GET lists, POST adds, PUT edits."""

    notes: list = []
    calls: list = []

    def _reply(self, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self):
        self.calls.append(("GET", self.path, self.headers["PRIVATE-TOKEN"]))
        self._reply(self.notes)

    def do_POST(self):
        note = {"id": len(self.notes) + 7, "body": self._body()["body"]}
        self.calls.append(("POST", self.path, self.headers["PRIVATE-TOKEN"]))
        self.notes.append(note)
        self._reply(note)

    def do_PUT(self):
        note_id = int(self.path.rsplit("/", 1)[1])
        self.calls.append(("PUT", self.path, self.headers["PRIVATE-TOKEN"]))
        for note in self.notes:
            if note["id"] == note_id:
                note["body"] = self._body()["body"]
        self._reply({})

    def log_message(self, *args):
        pass


def test_gitlab_note_adds_one_note_per_title_then_edits_it(tmp_path):
    summary = summary_module()
    FakeGitLab.notes, FakeGitLab.calls = [{"id": 1, "body": "LGTM"}], []
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeGitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4", "CI_PROJECT_ID": "42",
               "CI_MERGE_REQUEST_IID": "5", "GITLAB_NOTE_TOKEN": "t0ken"}
        path = tmp_path / "summary.md"
        for status in ("failure", "success"):
            path.write_text(summary.render("preview staging", status, preflight_log("staging", status == "success")))
            assert summary.main(["gitlab-note", str(path)], env=env) == 0
    finally:
        server.shutdown()
    assert [c[0] for c in FakeGitLab.calls] == ["GET", "POST", "GET", "PUT"]
    assert all(c[1].startswith("/api/v4/projects/42/merge_requests/5/notes") and c[2] == "t0ken"
               for c in FakeGitLab.calls)
    assert len(FakeGitLab.notes) == 2 and "✅ success" in FakeGitLab.notes[1]["body"]
    # Without a token (or outside a merge request) it says so and calls nothing.
    FakeGitLab.calls = []
    assert summary.main(["gitlab-note", str(path)], env={**env, "GITLAB_NOTE_TOKEN": ""}) == 0
    assert summary.main(["gitlab-note", str(path)], env={"GITLAB_NOTE_TOKEN": "t"}) == 0
    assert FakeGitLab.calls == []


# ---------------------------------------------------------------------------------------------
# ci/cloud-login.sh, with the clouds' CLIs replaced by recorders


FAKE_CLI = f"""#!{shutil.which("bash")}
echo "$(basename "$0") $*" >> "$CALLS"
"""


def login(tmp_path: Path, cloud: str, tools: tuple, **variables) -> tuple[subprocess.CompletedProcess, list, dict]:
    """Source ci/cloud-login.sh with only `tools` (recorders) and a few coreutils on PATH: a real
    gcloud or aws on this machine is never found."""
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).write_text(FAKE_CLI)
        (bin_dir / tool).chmod(0o755)
    for tool in ("mktemp", "env", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = base / "calls"
    calls.write_text("")
    env = {"PATH": str(bin_dir), "CALLS": str(calls), "CLIPPER_CLOUD": cloud, "HOME": str(base), "TMPDIR": str(base),
           **variables}
    done = subprocess.run([shutil.which("bash"), "-c", "source ci/cloud-login.sh && env -0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    exported = dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
    return done, calls.read_text().splitlines(), exported


def test_cloud_login_exchanges_the_job_token_for_each_cloud(tmp_path):
    token = "eyJhbGciOiJSUzI1NiJ9.e30.sig"
    done, calls, env = login(tmp_path, "gke", ("gcloud", "gke-gcloud-auth-plugin"), CLIPPER_ID_TOKEN=token,
                             GCP_WORKLOAD_IDENTITY_PROVIDER="projects/1/locations/global/workloadIdentityPools/ci/providers/gitlab",
                             GCP_SERVICE_ACCOUNT="deployer@clpr-staging.iam.gserviceaccount.com")
    assert done.returncode == 0, done.stderr
    credentials = env["GOOGLE_APPLICATION_CREDENTIALS"]
    assert calls[0].startswith("gcloud iam workload-identity-pools create-cred-config projects/1/")
    assert f"--output-file={credentials}" in calls[0] and "--service-account=deployer@" in calls[0]
    token_file = re.search(r"--credential-source-file=(\S+)", calls[0]).group(1)
    assert Path(token_file).read_text() == token and oct(Path(token_file).stat().st_mode & 0o777) == "0o600"
    assert calls[1] == f"gcloud auth login --cred-file={credentials} --quiet"

    done, calls, env = login(tmp_path, "eks", ("aws",), CLIPPER_ID_TOKEN=token, CI_JOB_ID="77",
                             AWS_ROLE_ARN="arn:aws:iam::123456789012:role/clipper-deployer", AWS_REGION="eu-west-1")
    assert done.returncode == 0, done.stderr
    assert Path(env["AWS_WEB_IDENTITY_TOKEN_FILE"]).read_text() == token
    assert env["AWS_ROLE_ARN"].endswith("role/clipper-deployer") and env["AWS_ROLE_SESSION_NAME"] == "gitlab-77"
    assert calls == ["aws sts get-caller-identity --output text"]

    done, calls, env = login(tmp_path, "aks", ("az", "kubelogin"), CLIPPER_ID_TOKEN=token, AZURE_CLIENT_ID="c1",
                             AZURE_TENANT_ID="t1", AZURE_SUBSCRIPTION_ID="s1")
    assert done.returncode == 0, done.stderr
    assert calls == [f"az login --service-principal --username c1 --tenant t1 --federated-token {token} --output none",
                     "az account set --subscription s1"]
    assert (env["ARM_USE_OIDC"], env["ARM_OIDC_TOKEN"], env["ARM_CLIENT_ID"]) == ("true", token, "c1")


def test_cloud_login_says_what_is_missing(tmp_path):
    done, calls, _ = login(tmp_path, "eks", ("aws",), CLIPPER_ID_TOKEN="t", AWS_REGION="eu-west-1")
    assert done.returncode != 0 and "AWS_ROLE_ARN" in done.stderr and calls == []
    done, calls, _ = login(tmp_path, "gke", ("gcloud",), CLIPPER_ID_TOKEN="t", GCP_SERVICE_ACCOUNT="sa",
                           GCP_WORKLOAD_IDENTITY_PROVIDER="projects/1/x")
    assert done.returncode != 0 and "gke-gcloud-auth-plugin not found in the job image" in done.stderr
    done, _, _ = login(tmp_path, "aks", ("az", "kubelogin"))
    assert done.returncode != 0 and "CLIPPER_ID_TOKEN" in done.stderr
    done, _, _ = login(tmp_path, "gcp", ())
    assert done.returncode != 0 and "set it to gke, eks, aks or existing" in done.stderr
    done, calls, _ = login(tmp_path, "existing", ())
    assert done.returncode == 0 and calls == []
