"""`rollback` runs the program as of the commit the update ran: a real git repository in a temp dir
(commit A, then B changing a component), an in-memory stand-in for the engine side (infra.ops.stacks).
The engine itself is exercised by tests/engine/test_rollback_commit.py."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra.ops import checks, cli, history, program_at, stacks
from infra.ops.history import UpdateRecord
from infra.ops.stack_config import ConfigEntry

STACK = "local-production"
RENDER_MODE = {"clipper:cloud": ConfigEntry("existing"),  # no cluster: nothing to verify after an update
               "clipper:existing": ConfigEntry({"mode": "render", "renderDir": ".state/render"}, structured=True),
               "clipper:notificationWebhook": ConfigEntry("https://hooks.example/v1", secret=True)}
V1 = {**RENDER_MODE, "clipper:apps": ConfigEntry({"backend": {"image": "ghcr.io/clpr-tv/backend:1.4.2"}}, structured=True)}
V2 = {**RENDER_MODE, "clipper:apps": ConfigEntry({"backend": {"image": "ghcr.io/clpr-tv/backend:1.5.0"}}, structured=True)}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> SimpleNamespace:
    """A project in git: commit A, then commit B with a changed component; `.state/` ignored."""
    root = tmp_path / "repo"
    (root / "components").mkdir(parents=True)
    (root / "infra").mkdir()
    git(root, "init", "--quiet", "-b", "main")
    git(root, "config", "user.email", "ops@clpr.tv")
    git(root, "config", "user.name", "ops")
    (root / ".gitignore").write_text(".state/\n__pycache__/\n")
    (root / "Pulumi.yaml").write_text("name: clipper\nruntime: python\nmain: infra/\n")
    (root / "infra" / "__main__.py").write_text("import components.app\n")
    (root / "components" / "app.py").write_text('READINESS = "/readyz"\n')
    (root / f"Pulumi.{STACK}.yaml").write_text("config:\n  clipper:apps: {backend: {image: 'ghcr.io/clpr-tv/backend:1.4.2'}}\n")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "A")
    a = git(root, "rev-parse", "HEAD")
    (root / "components" / "app.py").write_text('READINESS = "/ready"\n')
    (root / f"Pulumi.{STACK}.yaml").write_text("config:\n  clipper:apps: {backend: {image: 'ghcr.io/clpr-tv/backend:1.5.0'}}\n")
    git(root, "commit", "--quiet", "-am", "B")
    b = git(root, "rev-parse", "HEAD")
    (root / ".state" / "render").mkdir(parents=True)
    return SimpleNamespace(root=root, a=a, b=b)


def record(number, config, head, dirty=False, kind="update", result="succeeded") -> UpdateRecord:
    return UpdateRecord(number, kind, result, f"deploy {number}", datetime(2026, 1, number, tzinfo=timezone.utc),
                        None, head, dirty, dict(config))


class FakeEngine:
    """infra.ops.stacks without an engine: history and config in memory, the stack file on disk."""

    def __init__(self, repo, history):
        self.repo, self.history = repo, history
        self.config = dict(V2)
        self.writes, self.previews, self.ups, self.opened = [], [], [], []

    def open_stack(self, name, work_dir=None, env=None):
        if name != STACK:
            from infra.ops.errors import BadUsage
            raise BadUsage(f"unknown stack {name!r}")
        self.opened.append((Path(work_dir), env))
        return SimpleNamespace(name=name, work_dir=Path(work_dir), env=env)

    def write_config(self, stack, entries, remove=(), config_file=None):
        self.writes.append(config_file)
        if config_file is None:  # the stack file: what `pulumi config set-all` would do to it
            for key in remove:
                self.config.pop(key, None)
            self.config.update(entries)
            (self.repo.root / f"Pulumi.{STACK}.yaml").write_text(f"config: {sorted(self.config)}\n")

    def preview(self, stack, options, on_event=None):
        tree = stack.work_dir
        self.previews.append(SimpleNamespace(
            work_dir=tree, options=dict(options),
            component=(tree / "components" / "app.py").read_text(),
            state_is_the_checkouts=(tree / ".state").resolve() == (self.repo.root / ".state").resolve(),
            status=subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True,
                                  env={**os.environ, **(stack.env or {})}).stdout,
        ))
        return SimpleNamespace(change_summary={"update": 2, "same": 9})

    def up(self, stack, message, options):
        self.ups.append((stack.work_dir, message, dict(options)))

    def install(self, monkeypatch):
        monkeypatch.setattr(stacks, "open_stack", self.open_stack)
        monkeypatch.setattr(stacks, "history", lambda stack: self.history)
        monkeypatch.setattr(stacks, "read_config", lambda stack: dict(self.config))
        monkeypatch.setattr(stacks, "write_config", self.write_config)
        monkeypatch.setattr(stacks, "preview", self.preview)
        monkeypatch.setattr(stacks, "up", self.up)
        monkeypatch.setattr(stacks, "stack_file", lambda stack: self.repo.root / f"Pulumi.{STACK}.yaml")
        return self


def rollback(repo, *args) -> int:
    return cli.main(["--work-dir", str(repo.root), "rollback", "--stack", STACK, *args])


def worktrees(repo) -> list[str]:
    return [line for line in git(repo.root, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def test_rollback_runs_the_commit_the_update_ran_from_a_clean_worktree(repo, monkeypatch, capsys):
    engine = FakeEngine(repo, [record(2, V2, repo.b), record(1, V1, repo.a)]).install(monkeypatch)
    assert rollback(repo, "--steps", "1", "--yes") == 0
    [preview] = engine.previews
    assert preview.work_dir != repo.root and preview.component == 'READINESS = "/readyz"\n'  # commit A's program
    assert preview.state_is_the_checkouts  # relative paths in config (renderDir) name the checkout's files
    assert preview.status == ""  # clean for git, so the update records git.dirty false
    stack_file = str(repo.root / f"Pulumi.{STACK}.yaml")
    assert preview.options == {"config_file": stack_file}  # the restored config, not the commit's stack file
    [(ran_in, message, options)] = engine.ups
    assert ran_in == preview.work_dir and options == {"config_file": stack_file}
    assert message.endswith(f"to update 1 (2026-01-01 00:00:00 UTC) at commit {repo.a[:12]}")
    assert engine.config == V1
    out = capsys.readouterr().out
    assert f"program: commit {repo.a[:12]} (update 1's)" in out
    assert "components/app.py | 2 +-" in out  # what the rollback takes out
    assert worktrees(repo) == [f"worktree {repo.root}"] and not preview.work_dir.exists()
    assert (repo.root / ".state" / "render").is_dir()  # the link went, not what it pointed to


def test_program_head_keeps_todays_program_and_says_so(repo, monkeypatch, capsys):
    engine = FakeEngine(repo, [record(2, V2, repo.b), record(1, V1, repo.a)]).install(monkeypatch)
    assert rollback(repo, "--steps", "1", "--program", "head", "--yes") == 0
    [preview] = engine.previews
    assert preview.work_dir == repo.root and preview.options == {}
    assert engine.ups[0][1] == "rollback local-production to update 1 (2026-01-01 00:00:00 UTC)"
    out, err = capsys.readouterr()
    assert f"HEAD is {repo.b[:12]}" in err and "runs the program at HEAD" in err
    assert f"program: HEAD {repo.b[:12]} (today's), not update 1's commit {repo.a[:12]} (--program head)" in out
    assert "that stay" in out and "components/app.py" in out


def test_a_commit_not_in_the_repository_is_refused_with_one_message(repo, monkeypatch, capsys):
    gone = "f" * 40
    engine = FakeEngine(repo, [record(2, V2, repo.b), record(1, V1, gone)]).install(monkeypatch)
    assert rollback(repo, "--to", "1", "--yes") == 1
    err = capsys.readouterr().err
    assert f"commit {gone[:12]}, which is not in the repository" in err and "--program head" in err
    assert err.count("\n") == 1
    assert not engine.writes and not engine.previews and not engine.ups


def test_an_update_that_ran_dirty_is_refused_unless_allowed(repo, monkeypatch, capsys):
    engine = FakeEngine(repo, [record(2, V2, repo.b), record(1, V1, repo.a, dirty=True)]).install(monkeypatch)
    before = (repo.root / f"Pulumi.{STACK}.yaml").read_bytes()
    assert rollback(repo, "--steps", "1", "--yes") == 1
    err = capsys.readouterr().err
    assert "uncommitted changes (git.dirty)" in err and "--allow-dirty" in err
    assert not engine.writes and not engine.previews and not engine.ups
    assert (repo.root / f"Pulumi.{STACK}.yaml").read_bytes() == before

    assert rollback(repo, "--steps", "1", "--allow-dirty", "--yes") == 0
    assert engine.previews[0].component == 'READINESS = "/readyz"\n'
    assert "running commit" in capsys.readouterr().err


def test_an_ops_update_whose_only_uncommitted_files_were_stack_files_rolls_back_at_its_commit(repo, monkeypatch, capsys):
    # promote writes the stack file, then ups: git.dirty is true, the program was the commit's.
    promoted = dataclasses.replace(record(1, V1, repo.a, dirty=True),
                                   message=f"promote staging -> production: backend 1.4.2 -> 1.5.0 {history.PROGRAM_AS_COMMITTED}")
    engine = FakeEngine(repo, [record(2, V2, repo.b), promoted]).install(monkeypatch)
    assert rollback(repo, "--steps", "1", "--yes") == 0
    assert engine.previews[0].component == 'READINESS = "/readyz"\n'  # commit A's program, from its worktree
    assert "uncommitted" not in capsys.readouterr().err


def test_ops_updates_say_when_the_program_was_as_committed(repo, monkeypatch):
    sent = []
    fake = SimpleNamespace(name=STACK, workspace=SimpleNamespace(work_dir=str(repo.root)),
                           up=lambda message, **_: sent.append(message))
    (repo.root / f"Pulumi.{STACK}.yaml").write_text("config: {changed: by promote}\n")  # a stack file: still as committed
    stacks.up(fake, "promote", {})
    (repo.root / "components" / "app.py").write_text('READINESS = "/edited"\n')  # the program: not
    stacks.up(fake, "promote", {})
    assert sent == [f"promote {history.PROGRAM_AS_COMMITTED}", "promote"]


def test_nothing_to_roll_back_is_refused(repo, monkeypatch, capsys):
    """The newest update already ran update 1's config at update 1's commit (a rollback to 1)."""
    history = [record(3, V1, repo.a), record(2, V2, repo.b), record(1, V1, repo.a)]
    engine = FakeEngine(repo, history).install(monkeypatch)
    assert rollback(repo, "--to", "1", "--yes") == 1
    assert "nothing to roll back: the newest update, 3, ran with update 1's config" in capsys.readouterr().err
    assert rollback(repo, "--to", "3", "--yes") == 1
    assert "nothing to roll back: it is the newest update" in capsys.readouterr().err
    assert not engine.writes and not engine.previews and not engine.ups
    # Same config at another commit is a change: the program differs.
    engine.history = [record(3, V1, repo.b), record(2, V2, repo.b), record(1, V1, repo.a)]
    assert rollback(repo, "--to", "1", "--yes") == 0


def test_an_update_without_a_commit_runs_todays_program_and_says_so(repo, monkeypatch, capsys):
    engine = FakeEngine(repo, [record(2, V2, None), record(1, V1, None)]).install(monkeypatch)
    assert rollback(repo, "--steps", "1", "--yes") == 0
    assert engine.previews[0].work_dir == repo.root
    assert "recorded no git commit" in capsys.readouterr().err
    assert engine.ups[0][1].endswith("(2026-01-01 00:00:00 UTC)")


def test_dry_run_previews_from_a_copy_and_changes_nothing(repo, monkeypatch, capsys):
    engine = FakeEngine(repo, [record(2, V2, repo.b), record(1, V1, repo.a)]).install(monkeypatch)
    stack_file = repo.root / f"Pulumi.{STACK}.yaml"
    before = stack_file.read_bytes()
    assert rollback(repo, "--steps", "1", "--dry-run") == 0  # no --yes needed: nothing is deployed
    [preview] = engine.previews
    assert preview.component == 'READINESS = "/readyz"\n'
    copy = Path(preview.options["config_file"])
    assert copy != stack_file and copy.name == stack_file.name and not copy.exists()  # a temp copy, gone
    assert engine.writes == [copy]  # the restored config went into the copy only
    assert stack_file.read_bytes() == before and engine.config == V2 and not engine.ups
    out = capsys.readouterr().out
    assert "clipper:apps.backend.image" in out and "components/app.py" in out and "dry run: nothing was changed" in out
    assert worktrees(repo) == [f"worktree {repo.root}"]


def test_bad_program_argument_is_bad_usage(repo, capsys):
    with pytest.raises(SystemExit) as done:
        rollback(repo, "--steps", "1", "--program", "tuesday")
    assert done.value.code == 2 and "invalid choice: 'tuesday'" in capsys.readouterr().err


def test_worktree_links_ignored_entries_and_is_removed_even_on_error(repo):
    with pytest.raises(RuntimeError):
        with program_at.worktree_at(repo.root, repo.a) as tree:
            assert (tree.project_dir / ".state").is_symlink() and tree.links == [".state"]
            assert git(tree.root, "rev-parse", "HEAD") == repo.a
            raise RuntimeError("engine failed")
    assert worktrees(repo) == [f"worktree {repo.root}"] and not tree.root.exists()
    assert (repo.root / ".state" / "render").is_dir()


def test_program_diff_covers_program_paths_only(repo):
    stat = program_at.program_diff_stat(repo.root, repo.a)
    assert "components/app.py" in stat and "Pulumi.local-production.yaml" not in stat
    assert program_at.has_commit(repo.root, repo.a) and not program_at.has_commit(repo.root, "0" * 40)


def test_preflight_rollback_drill_is_a_dry_run_of_the_previous_update(repo, monkeypatch):
    engine = FakeEngine(repo, [record(2, V2, repo.b), record(1, V1, repo.a)]).install(monkeypatch)
    stack = stacks.open_stack(STACK, repo.root)
    before = (repo.root / f"Pulumi.{STACK}.yaml").read_bytes()
    result = checks.check_rollback_drill(stack, repo.root)
    assert result.go and result.detail.endswith(f"at commit {repo.a[:12]}: preview passes (2 update)")
    assert engine.previews[0].component == 'READINESS = "/readyz"\n' and not engine.ups
    assert engine.writes == [Path(engine.previews[0].options["config_file"])]  # only the temp copy
    assert (repo.root / f"Pulumi.{STACK}.yaml").read_bytes() == before

    engine.history = [record(2, V2, repo.b), record(1, V1, repo.a, dirty=True)]
    [dirty] = checks._guarded(checks.DRILL_CHECK, lambda: [checks.check_rollback_drill(stack, repo.root)])
    assert not dirty.go and "uncommitted changes" in dirty.detail

    engine.history = [record(1, V1, repo.a)]
    only = checks.check_rollback_drill(stack, repo.root)
    assert only.go and only.detail.startswith("skipped: --steps 1: only 0 successful update(s)")
