"""The program as of an earlier git commit, for `rollback`: a temporary `git worktree` of that commit.

Pulumi records the commit an update ran (`git.head`) and whether the tree had uncommitted changes
(`git.dirty`, from `git status --porcelain`: untracked files count) in the update's environment,
when the project is in a git checkout. A rollback runs the program of that commit from a worktree
of it, against the same stack and backend, so what it deploys is what that update deployed.

The worktree gets the checkout's ignored top-level entries (`.venv`, `.state`, ...) as symlinks,
so the project's virtualenv is there and relative paths in config (`existing.renderDir`,
`existing.kubeconfig`) name the same files as from the checkout. The links are listed in an
excludes file git is pointed at (`core.excludesFile`, through `GIT_CONFIG_*` in the environment
the engine runs with), so the worktree is clean for git and the update records `git.dirty: false`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional

from infra.ops.errors import Refused

# What the program is, in the project dir: a change to any of these changes what `up` does.
# The stack files are not: a rollback brings the config from history.
PROGRAM_PATHS = ("Pulumi.yaml", "requirements.txt", "infra", "components", "policies")
SHORT = 12


def git(work_dir: Path, *args: str, env: Optional[Mapping[str, str]] = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", *args], cwd=work_dir, capture_output=True, text=True, check=check,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        if not check:
            return subprocess.CompletedProcess(["git", *args], 127, "", "git is not on PATH")
        raise Refused("git is not on PATH: rolling back to an earlier commit's program needs it") from None
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or error.stdout or "").strip().splitlines()
        raise Refused(f"git {' '.join(args)} failed in {work_dir}: {detail[-1] if detail else error}") from None


def in_checkout(work_dir: Path) -> bool:
    return git(work_dir, "rev-parse", "--is-inside-work-tree", check=False).stdout.strip() == "true"


def has_commit(work_dir: Path, commit: str) -> bool:
    """True when `commit` names a commit object of the repository `work_dir` is in."""
    return git(work_dir, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def program_diff_stat(work_dir: Path, commit: str) -> str:
    """`git diff --stat <commit> HEAD` over the program paths: what changed in the program since."""
    return git(work_dir, "diff", "--stat", commit, "HEAD", "--", *PROGRAM_PATHS).stdout.rstrip()


def uncommitted_program_changes(work_dir: Path) -> list[str]:
    """`git status --porcelain` lines for the program paths (untracked files included)."""
    lines = git(work_dir, "status", "--porcelain", "--", *PROGRAM_PATHS).stdout.splitlines()
    return [line for line in lines if line.strip()]


def _ignored_top_level(work_dir: Path) -> list[str]:
    """Names of the entries directly in the project dir that git ignores there (`.venv`, `.state`)."""
    listed = git(work_dir, "ls-files", "--others", "--ignored", "--exclude-standard", "--directory").stdout
    names = {line.rstrip("/") for line in listed.splitlines() if line.strip()}
    return sorted(name for name in names if "/" not in name)


@dataclass
class ProgramTree:
    """A worktree of one commit: run the project in `project_dir` with `env` (git's excludes)."""

    commit: str
    root: Path
    project_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)


def _excludes_env(excludes_file: Path) -> dict[str, str]:
    """Git config from the environment (git >= 2.31): `core.excludesFile`, after any the caller set."""
    count = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": "core.excludesFile",
        f"GIT_CONFIG_VALUE_{count}": str(excludes_file),
    }


@contextmanager
def worktree_at(work_dir: Path, commit: str) -> Iterator[ProgramTree]:
    """A detached worktree of `commit`, removed again (with its admin entry) on the way out."""
    work_dir = work_dir.resolve()
    top = Path(git(work_dir, "rev-parse", "--show-toplevel").stdout.strip()).resolve()
    project = work_dir.relative_to(top)
    base = Path(tempfile.mkdtemp(prefix="clipper-rollback-"))
    tree = ProgramTree(commit, base / "tree", base / "tree" / project)
    try:
        git(work_dir, "worktree", "add", "--detach", "--quiet", str(tree.root), commit)
        if not (tree.project_dir / "Pulumi.yaml").is_file():
            raise Refused(f"commit {commit[:SHORT]} has no Pulumi.yaml in {project.as_posix()}: the project was elsewhere then")
        for name in _ignored_top_level(work_dir):
            if not os.path.lexists(tree.project_dir / name):
                (tree.project_dir / name).symlink_to(work_dir / name)
                tree.links.append(name)
        excludes = base / "excludes"
        prefix = "" if project == Path(".") else f"{project.as_posix()}/"
        excludes.write_text("".join(f"/{prefix}{name}\n" for name in tree.links))  # patterns from the repo root
        tree.env = _excludes_env(excludes)
        status = git(tree.root, "status", "--porcelain", env=tree.env).stdout.strip()
        if status:
            raise Refused(f"the worktree of {commit[:SHORT]} is not clean, so its update would record a dirty tree:\n{status}")
        yield tree
    finally:
        for name in tree.links:  # the links only, never what they point to
            (tree.project_dir / name).unlink(missing_ok=True)
        if tree.root.exists() and git(work_dir, "worktree", "remove", "--force", str(tree.root), check=False).returncode:
            shutil.rmtree(tree.root, ignore_errors=True)
            git(work_dir, "worktree", "prune", check=False)  # drops the admin entry of the folder just removed
        shutil.rmtree(base, ignore_errors=True)
