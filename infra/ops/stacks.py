"""The Automation API side of ops: select stacks, read history and config, run engine operations.

One LocalWorkspace per stack on the real project directory (the repo root by default), so the
real Pulumi.yaml and Pulumi.<stack>.yaml are used, with whatever backend the environment selects
(`PULUMI_BACKEND_URL` for the file backend, or a Pulumi Cloud login). Every engine failure comes
back as `Refused` with the engine's own error lines; the full output was streamed already.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import yaml
from pulumi import automation as auto

from infra.ops import console, program_at
from infra.ops.config_diff import plan_restore
from infra.ops.errors import BadUsage, Refused
from infra.ops.history import PROGRAM_AS_COMMITTED, UpdateRecord, parse_history
from infra.ops.stack_config import (
    StackConfig,
    config_json,
    parse_config,
    project_defaults,
    project_setting,
    without_implicit_defaults,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY_PACK_DIR = "policies"
LOCAL_STACK_PREFIX = "local-"

EngineEvents = Callable[[auto.EngineEvent], None]


def _workspace(work_dir: Path, env: Optional[dict[str, str]] = None) -> auto.LocalWorkspace:
    try:
        return auto.LocalWorkspace(work_dir=str(work_dir), env_vars=env)
    except FileNotFoundError as error:
        raise Refused(
            "the pulumi CLI is not on PATH: build it with toolchain/build.sh and put its bin dir on PATH "
            "(the Makefile does both)"
        ) from error


def open_stack(name: str, work_dir: Path = REPO_ROOT, env: Optional[dict[str, str]] = None) -> auto.Stack:
    """Select an existing stack; an unknown name is bad usage (exit 2) listing the known ones.
    `env` is added to the environment of every CLI run of that workspace."""
    workspace = _workspace(work_dir, env)
    try:
        return auto.Stack.select(name, workspace)
    except auto.StackNotFoundError:
        known = ", ".join(sorted(s.name for s in workspace.list_stacks())) or "none"
        raise BadUsage(f"unknown stack {name!r} (stacks in this backend: {known})") from None
    except auto.CommandError as error:  # an unreachable backend, wrong credentials, an unreadable state
        raise engine_failure(f"opening stack {name}", error) from None


def workspace_of(work_dir: Path = REPO_ROOT) -> auto.LocalWorkspace:
    """The project's workspace, without selecting a stack (what must work when a stack cannot be read)."""
    return _workspace(work_dir)


def _cli(stack: auto.Stack, args: Sequence[str], stream: bool = False) -> str:
    """Run a pulumi subcommand for this stack with the workspace's environment; its stdout
    (with `stream`, also shown as it runs, for long operations)."""
    workspace = stack.workspace
    env = {"PULUMI_HOME": workspace.pulumi_home} if workspace.pulumi_home else {}
    env.update(workspace.env_vars or {})
    show = console.engine_output if stream else None
    result = workspace.pulumi_command.run([*args, "--stack", stack.name], workspace.work_dir, env,
                                          on_output=show, on_error=show)
    return result.stdout


def cli_streamed(stack: auto.Stack, args: Sequence[str]) -> str:
    """A pulumi subcommand of the stack with its output shown as it runs (refresh, cancel)."""
    return _cli(stack, args, stream=True)


def backend_url(stack: auto.Stack) -> str:
    """The backend the stack lives in, as `pulumi whoami` gives it (file://..., s3://..., https://...)."""
    return stack.workspace.who_am_i().url or ""


@dataclass(frozen=True)
class Lock:
    path: Path
    pid: int
    user: str
    host: str
    time: str

    @property
    def here_and_alive(self) -> bool:
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self) -> str:
        return f"{self.path.name}: {self.user}@{self.host} (pid {self.pid}) at {self.time}"


def file_backend_root(stack: auto.Stack) -> Optional[Path]:
    """The folder of a file:// backend, None for other backends."""
    url = backend_url(stack)
    return Path(url[len("file://"):]) if url.startswith("file://") else None


def locks(stack: auto.Stack) -> Optional[list[Lock]]:
    """The stack's lock files on a file:// backend; None on other backends (no read-only query:
    their lock shows when an operation meets it)."""
    root = file_backend_root(stack)
    if root is None:
        return None
    project = stack.workspace.project_settings().name
    folder = root / ".pulumi" / "locks" / "organization" / project / stack.name.rsplit("/", 1)[-1]
    found = []
    for path in sorted(folder.glob("*.json")):
        content = json.loads(path.read_text() or "{}")
        found.append(Lock(path, int(content.get("pid", 0)), content.get("username", "?"), content.get("hostname", "?"),
                          content.get("timestamp", "?")))
    return found


def half_written_sidecars(workspace: auto.LocalWorkspace, stack_name: str) -> list[Path]:
    """Empty `.attrs` files of a file:// backend's stack: the blob store truncates one, then writes it,
    so a kill in between leaves it empty, and every later read of that object fails (`failed to load
    checkpoint: EOF`). The object itself is written to a temporary file and renamed: it is whole."""
    try:
        url = workspace.who_am_i().url or ""
    except auto.CommandError:  # an unreachable backend: opening the stack says so
        return []
    if not url.startswith("file://"):
        return []
    root, short_name = Path(url[len("file://"):]), stack_name.rsplit("/", 1)[-1]
    return sorted(path for path in (root / ".pulumi").rglob(f"*{short_name}*.attrs") if path.stat().st_size == 0)


def history(stack: auto.Stack) -> list[UpdateRecord]:
    """Every history entry, newest first, numbered, each with its config (secrets in plaintext).

    Read from `pulumi stack history --json --show-secrets` rather than `Stack.history()`, which
    flattens object-valued config to JSON text and would lose the shape a rollback must restore.
    """
    return parse_history(json.loads(_cli(stack, ["stack", "history", "--json", "--show-secrets"]) or "[]"))


def read_config(stack: auto.Stack) -> StackConfig:
    return parse_config(json.loads(_cli(stack, ["config", "--json", "--show-secrets"]) or "{}"))


def write_config(
    stack: auto.Stack, entries: StackConfig, remove: Sequence[str] = (), config_file: Optional[Path] = None
) -> None:
    """Remove `remove`, then set `entries` (secrets re-encrypted by the stack's secrets provider),
    in the stack file, or in `config_file` (`pulumi config --config-file`) when given.

    Entries that merely restate a Pulumi.yaml default the stack file does not set are skipped, and
    so are removals of keys the stack file does not set.
    """
    if config_file is None:
        explicit = set((stack.workspace.stack_settings(stack.name).config or {}).keys())
        into: list[str] = []
    else:
        document = yaml.safe_load(config_file.read_text()) if config_file.is_file() else None
        explicit = set(((document or {}).get("config") or {}).keys())
        into = ["--config-file", str(config_file)]
    remove = [key for key in remove if key in explicit]  # a default-only key has nothing to remove
    if remove:
        _cli(stack, ["config", "rm-all", *remove, *into])
    entries = without_implicit_defaults(entries, project_defaults(Path(stack.workspace.work_dir) / "Pulumi.yaml"), explicit)
    if entries:
        _cli(stack, ["config", "set-all", "--json", config_json(entries), *into])


@dataclass
class StagedConfig:
    """Config written for a preview; put back as it was unless `keep()` is called before leaving."""

    stack: auto.Stack
    kept: bool = field(default=False)

    def keep(self) -> None:
        self.kept = True


def stack_file(stack: auto.Stack) -> Optional[Path]:
    """The stack's settings file in the work dir (Pulumi.<stack>.yaml/.yml/.json), if there is one."""
    short_name = stack.name.rsplit("/", 1)[-1]
    for extension in (".yaml", ".yml", ".json"):
        path = Path(stack.workspace.work_dir) / f"Pulumi.{short_name}{extension}"
        if path.is_file():
            return path
    return None


@contextmanager
def staged_config(stack: auto.Stack, entries: StackConfig, remove: Sequence[str] = ()) -> Iterator[StagedConfig]:
    """Write config for a preview and a confirmation; on any way out but `keep()`, put the stack
    file back byte for byte (comments, layout and secret ciphertexts included), so a refused or
    declined operation leaves it as it found it."""
    path = stack_file(stack)
    saved_bytes = path.read_bytes() if path else None
    saved_config = None if path else read_config(stack)
    staged = StagedConfig(stack)
    write_config(stack, entries, remove)
    try:
        yield staged
    finally:
        if not staged.kept:
            if path is not None and saved_bytes is not None:
                path.write_bytes(saved_bytes)
            elif saved_config is not None:
                restore = plan_restore(read_config(stack), saved_config)
                write_config(stack, restore.wanted, restore.remove)


@contextmanager
def config_copy(stack: auto.Stack, entries: StackConfig, remove: Sequence[str] = ()) -> Iterator[Path]:
    """A temporary copy of the stack file with `entries` set and `remove` removed, for a preview
    with `config_file=`: the stack file itself is never written."""
    path = stack_file(stack)
    with tempfile.TemporaryDirectory(prefix="clipper-config-") as directory:
        copy = Path(directory) / (path.name if path else f"Pulumi.{stack.name.rsplit('/', 1)[-1]}.yaml")
        if path is not None:
            shutil.copyfile(path, copy)
        write_config(stack, entries, remove, config_file=copy)
        yield copy


def environment_of(config: StackConfig) -> str:
    return str(project_setting(config, "environment", "") or "")


def policy_options(stack_name: str, config: StackConfig, work_dir: Path = REPO_ROOT) -> dict:
    """`policy_packs`/`policy_pack_configs` for previews and updates, or {} when there is no pack.

    Local stacks (`local-*`) use config/local.json when it exists; otherwise production uses
    production.json and every other environment staging.json.
    """
    pack = work_dir / POLICY_PACK_DIR
    if not (pack / "PulumiPolicy.yaml").is_file():
        return {}
    short_name = stack_name.rsplit("/", 1)[-1]
    candidates = []
    if short_name.startswith(LOCAL_STACK_PREFIX):
        candidates.append("local.json")
    candidates.append("production.json" if environment_of(config) == "production" else "staging.json")
    for candidate in candidates:
        if (pack / "config" / candidate).is_file():
            return {
                "policy_packs": [POLICY_PACK_DIR],
                "policy_pack_configs": [f"{POLICY_PACK_DIR}/config/{candidate}"],
            }
    return {"policy_packs": [POLICY_PACK_DIR]}


def engine_failure(what: str, error: auto.CommandError) -> Refused:
    """A Refused carrying the engine's error lines (its full output was streamed already)."""
    text = str(error)
    stdout, _, stderr = text.partition("\n stderr: ")
    errors = [line.strip() for line in stdout.splitlines() if line.strip().startswith("error:")]
    errors += [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = "\n".join(list(dict.fromkeys(errors))[-6:]) or "see the output above"
    return Refused(f"{what} failed:\n{detail}")


def preview(
    stack: auto.Stack, policies: dict, on_event: Optional[EngineEvents] = None
) -> auto.PreviewResult:
    """`policies`: keyword arguments for the engine (`policy_options`, and `config_file` for config
    read from another file than the stack file)."""
    try:
        return stack.preview(on_output=console.engine_output, on_event=on_event, diff=False, **policies)
    except auto.CommandError as error:
        raise engine_failure(f"preview of {stack.name}", error) from None


def up(stack: auto.Stack, message: str, policies: dict) -> auto.UpResult:
    work_dir = Path(stack.workspace.work_dir)
    if program_at.in_checkout(work_dir) and not program_at.uncommitted_program_changes(work_dir):
        # Pulumi's git.dirty counts the stack file we just wrote; a later rollback needs to know
        # the program itself was committed.
        message = f"{message} {PROGRAM_AS_COMMITTED}"
    try:
        return stack.up(message=message, on_output=console.engine_output, **policies)
    except auto.CommandError as error:
        raise engine_failure(f"update of {stack.name}", error) from None


def preview_refresh(stack: auto.Stack, on_event: Optional[EngineEvents] = None) -> auto.PreviewResult:
    """What a refresh would change: the live state against the recorded state, writing nothing."""
    try:
        return stack.preview_refresh(on_output=console.engine_output, on_event=on_event)
    except auto.CommandError as error:
        raise engine_failure(f"refresh preview of {stack.name}", error) from None


def pending_operations(stack: auto.Stack) -> list[dict]:
    """Operations the engine started and never finished (an interrupted update leaves them)."""
    deployment = stack.export_stack().deployment or {}
    return list(deployment.get("pending_operations") or [])


def export_state(stack: auto.Stack, show_secrets: bool = False) -> str:
    """`pulumi stack export`: the latest state as JSON text (secrets in plaintext with show_secrets;
    that fails when the stack's secrets provider cannot decrypt one)."""
    return _cli(stack, ["stack", "export", *(["--show-secrets"] if show_secrets else [])])


def import_state(stack: auto.Stack, path: Path) -> None:
    """`pulumi stack import`: replace the latest state with an export (only to undo an operation
    of ours that failed half-way, never to roll back: pulumi/pulumi#96)."""
    _cli(stack, ["stack", "import", "--file", str(path)])


def outputs(stack: auto.Stack) -> dict:
    return {key: value.value for key, value in stack.outputs().items()}


def git_head(work_dir: Path = REPO_ROOT) -> Optional[str]:
    """The commit the program is at now, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work_dir, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None
