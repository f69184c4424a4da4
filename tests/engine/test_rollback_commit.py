"""`python -m infra.ops rollback` gives back program AND config, on the real engine: a git clone of
this repository's HEAD in a temp dir, where v1 runs at commit A and commit B changes a component
(the readiness probe path) with v2's config (backend 1.5.0). Each test works on its own copy of
the clone and of its file backend. Render mode: what the program declares is the render dir."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.ops.history import PROGRAM_AS_COMMITTED, parse_history
from infra.rendered import rendered_objects
from tests.engine.engine import ROOT, Project

STACK = "local-production"
RENDER = Path(".state/render") / STACK
V1_BACKEND, V2_BACKEND = "ghcr.io/clpr-tv/backend:1.4.2", "ghcr.io/clpr-tv/backend:1.5.0"
PROBE_FILE, PROBE_A, PROBE_B = "components/app.py", 'ProbeSettings(path="/readyz")', 'ProbeSettings(path="/ready")'


class GitProject(Project):
    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.dir, capture_output=True, text=True, env=self.env)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def deploy(self, message: str) -> None:
        self.ok("up", "--stack", STACK, "--yes", "--skip-preview", "--message", message)

    def history(self):
        return parse_history(self.ok("stack", "history", "--json", "--show-secrets", "--stack", STACK).json())

    def render_files(self) -> dict[str, str]:
        """Every rendered file, by path under the render dir, with the hash of its bytes."""
        root = self.dir / RENDER
        return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}

    def backend_files(self) -> dict[str, str]:
        root = self.dir.parent / "backend"
        return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}

    def backend_deployment(self) -> dict:
        [deployment] = [d for d in rendered_objects(self.dir / RENDER) if d["kind"] == "Deployment"
                        and d["metadata"]["name"] == "backend"]
        return deployment["spec"]["template"]["spec"]["containers"][0]

    def worktrees(self) -> list[str]:
        return [line for line in self.git("worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def deployed(bin_dir, tmp_path_factory) -> GitProject:
    """v1 deployed at commit A (this repository's HEAD, policy pack removed: the ops tests run it
    apart), then commit B (readiness probe path, backend 1.5.0) deployed as v2. Both trees clean."""
    base = tmp_path_factory.mktemp("rollback-commit")
    (base / "backend").mkdir()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(base / "project")], check=True)
    project = GitProject(base / "project", Project._env(base, bin_dir))
    project.git("remote", "remove", "origin")
    project.git("config", "user.email", "ops@clpr.tv")
    project.git("config", "user.name", "ops")
    (project.dir / ".venv").symlink_to(ROOT / ".venv")
    with (project.dir / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("/.venv\n")  # a link here, where a checkout has the directory `.venv/` ignores
    project.git("rm", "--quiet", "policies/PulumiPolicy.yaml")
    project.git("commit", "--quiet", "-m", "A: v1")
    project.a = project.git("rev-parse", "HEAD")
    project.ok("stack", "init", STACK)
    assert project.git("status", "--porcelain") == ""
    project.deploy("deploy v1")
    shutil.copytree(project.dir / RENDER, base / "v1-render")
    project.v1_render = project.render_files()

    source = (project.dir / PROBE_FILE).read_text()
    assert source.count(PROBE_A) == 1, f"{PROBE_FILE} no longer declares {PROBE_A}: update this test"
    (project.dir / PROBE_FILE).write_text(source.replace(PROBE_A, PROBE_B))
    project.ok("config", "set", "--path", "clipper:apps.backend.image", V2_BACKEND, "--stack", STACK)
    project.git("commit", "--quiet", "-am", "B: readiness probe /ready, backend 1.5.0")
    project.b = project.git("rev-parse", "HEAD")
    project.deploy("deploy v2")
    return project


@pytest.fixture
def project(deployed, tmp_path) -> GitProject:
    copy = deployed.clone(tmp_path)
    copy.a, copy.b, copy.v1_render = deployed.a, deployed.b, deployed.v1_render
    return copy


def test_updates_record_their_commit_and_a_clean_tree(project):
    v2, v1 = project.history()
    assert (v1.git_head, v1.git_dirty, v2.git_head, v2.git_dirty) == (project.a, False, project.b, False)
    container = project.backend_deployment()
    assert (container["image"], container["readinessProbe"]["httpGet"]["path"]) == (V2_BACKEND, "/ready")
    assert project.render_files() != project.v1_render


def test_rollback_runs_the_commit_and_renders_exactly_v1(project):
    run = project.ops("rollback", "--stack", STACK, "--steps", "1", "--yes")
    assert run.returncode == 0, run.output
    assert f"program: commit {project.a[:12]} (update 1's), from a temporary worktree" in run.stdout
    assert PROBE_FILE in run.stdout and "clipper:apps.backend.image" in run.stdout
    assert project.render_files() == project.v1_render  # the render dir diff is empty
    newest, _, v1 = project.history()
    assert newest.message == (f"rollback {STACK} to update 1 ({v1.start_time:%Y-%m-%d %H:%M:%S} UTC) at commit {project.a[:12]} "
                              f"{PROGRAM_AS_COMMITTED}")
    assert (newest.result, newest.git_head, newest.git_dirty) == ("succeeded", project.a, False)
    assert newest.config == v1.config
    # The checkout is as it was (still at B, no worktree left) but for its stack file: v1's config.
    assert project.git("rev-parse", "HEAD") == project.b
    assert project.git("status", "--porcelain") == f"M Pulumi.{STACK}.yaml"
    assert project.worktrees() == [f"worktree {project.dir}"]
    assert project.stack_config(STACK)["clipper:apps"]["backend"]["image"] == V1_BACKEND

    again = project.ops("rollback", "--stack", STACK, "--to", "1", "--yes")
    assert again.returncode == 1 and "nothing to roll back: the newest update, 3, ran with update 1's config" in again.stderr


def test_program_head_keeps_the_component_change_and_says_so(project):
    run = project.ops("rollback", "--stack", STACK, "--steps", "1", "--program", "head", "--yes")
    assert run.returncode == 0, run.output
    assert f"HEAD is {project.b[:12]}" in run.stderr and "runs the program at HEAD" in run.stderr
    assert f"program: HEAD {project.b[:12]} (today's), not update 1's commit {project.a[:12]}" in run.stdout
    container = project.backend_deployment()
    assert (container["image"], container["readinessProbe"]["httpGet"]["path"]) == (V1_BACKEND, "/ready")
    assert project.render_files() != project.v1_render
    assert project.history()[0].git_head == project.b


def test_dry_run_prints_the_plan_and_changes_nothing_byte_for_byte(project):
    def snapshot():
        return (
            digest(project.dir / f"Pulumi.{STACK}.yaml"),
            project.backend_files(),
            project.ok("stack", "history", "--json", "--show-secrets", "--stack", STACK).stdout,
            project.render_files(),
            project.git("status", "--porcelain"),
            project.worktrees(),
        )

    before = snapshot()
    run = project.ops("rollback", "--stack", STACK, "--steps", "1", "--dry-run")
    assert run.returncode == 0, run.output
    assert f"clipper:apps.backend.image  {V2_BACKEND}  {V1_BACKEND}" in run.stdout  # config differences
    assert f"{PROBE_FILE} | 2 +-" in run.stdout  # program differences (git diff --stat A HEAD)
    assert "==> preview of local-production (dry run)" in run.stdout and "  | " in run.stdout
    assert "dry run: nothing was changed" in run.stdout
    assert snapshot() == before


def test_preflight_rollback_drill_previews_the_previous_update_and_changes_nothing(project):
    before = digest(project.dir / f"Pulumi.{STACK}.yaml"), project.backend_files(), project.render_files()
    run = project.ops("preflight", "--stack", STACK, "--rollback-drill")
    assert run.returncode == 0, run.output
    [row] = [line for line in run.stdout.splitlines() if line.startswith("rollback drill")]
    # (The counts are not pinned: this copy of the project sits at another path than the one that
    # deployed, and the provider's render dir is an absolute path, so the preview replaces everything.)
    assert row.split()[2] == "GO" and "to update 1 (" in row and f"at commit {project.a[:12]}: preview passes (" in row
    assert (digest(project.dir / f"Pulumi.{STACK}.yaml"), project.backend_files(), project.render_files()) == before


def test_dirty_and_missing_commits_are_refused_and_change_nothing(project):
    (project.dir / "components" / "scratch.py").write_text("# not committed\n")
    project.deploy("deploy from a dirty tree")  # update 3, at B, dirty
    assert project.history()[0].git_dirty is True
    (project.dir / "components" / "scratch.py").unlink()

    def snapshot():
        return digest(project.dir / f"Pulumi.{STACK}.yaml"), project.backend_files(), project.render_files()

    before = snapshot()
    dirty = project.ops("rollback", "--stack", STACK, "--to", "3", "--yes")
    assert dirty.returncode == 1 and "uncommitted changes (git.dirty)" in dirty.stderr and "--allow-dirty" in dirty.stderr
    assert dirty.stderr.count("\n") == 1 and snapshot() == before

    branch = project.git("rev-parse", "--abbrev-ref", "HEAD")
    project.git("checkout", "--quiet", "-B", branch, project.a)  # B is dropped from the repository
    project.git("reflog", "expire", "--expire=now", "--all")
    project.git("gc", "--quiet", "--prune=now")
    before = snapshot()  # the checkout of A put A's stack file back
    missing = project.ops("rollback", "--stack", STACK, "--to", "2", "--yes")
    assert missing.returncode == 1, missing.output
    assert f"commit {project.b[:12]}, which is not in the repository" in missing.stderr
    assert missing.stderr.count("\n") == 1 and snapshot() == before
