"""`recover`: bring a stack back after an update that died half-way (a killed CI runner, a closed laptop).

What such an update leaves, and what the engine does with it (pulumi v3.259.0's source):
- a lock (DIY backends: `.pulumi/locks/organization/<project>/<stack>/<uuid>.json` with the pid,
  user and host) that refuses every later update, refresh and destroy until `pulumi cancel`;
- pending operations in the state. A pending update or delete is dropped by the next operation
  and the refresh reconciles that resource with what is live. A pending *create* survives every
  operation (the engine keeps it for a human): its object may or may not exist. Cleared when it
  does, the object is orphaned (the next `up` meets it as a stranger); kept as a create, it
  blocks nothing but stays unresolved. So each one is looked up: one that exists is adopted into
  the state with its live id, one that does not is cleared.
Then `refresh` puts the state in line with the live objects, and the next `up` finishes the work.
"""
from __future__ import annotations

import json
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pulumi import automation as auto

from infra.ops import console, kube, stacks
from infra.ops.errors import Refused

KUBERNETES_PREFIX = "kubernetes:"
PROVIDER_PREFIX = "pulumi:providers:"
CREATING = "creating"


@dataclass(frozen=True)
class Pending:
    """One interrupted operation, and what recover does with it."""

    urn: str
    op: str
    action: str
    live_id: Optional[str] = None  # the object's id when a pending create exists live

    @property
    def name(self) -> str:
        parts = self.urn.split("::")
        return "::".join(parts[-2:]) if len(parts) >= 2 else self.urn


def kubectl_kind(type_token: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `deployment.v1.apps`; core kinds by name alone."""
    _, group_version, kind = type_token.split(":", 2)
    group, _, version = group_version.rpartition("/")
    return kind.lower() if group in ("core", "") else f"{kind.lower()}.{version}.{group}"


def look_up(operation: dict, kubectl: Optional[kube.Kubectl]) -> Pending:
    """Decide what to do with one pending operation; Refused when its object cannot be looked up."""
    resource = operation.get("resource") or {}
    urn, op, token = str(resource.get("urn", "?")), str(operation.get("type", "?")), str(resource.get("type", ""))
    if op != CREATING:
        return Pending(urn, op, "refresh reconciles it with the live object")
    if not resource.get("custom") or token.startswith(PROVIDER_PREFIX):
        return Pending(urn, op, "clear: nothing of it exists outside the state")
    if not token.startswith(KUBERNETES_PREFIX) or kubectl is None:
        raise Refused(f"pending create of {urn}: recover looks up Kubernetes objects only; find out whether it exists, "
                      "then `pulumi refresh --import-pending-creates URN ID` (it does) or `--clear-pending-creates`")
    metadata = (resource.get("inputs") or {}).get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace") or "default"
    if not name:
        raise Refused(f"pending create of {urn} has no metadata.name in its inputs: look it up by hand")
    try:
        live = kubectl.get_or_none(kubectl_kind(token), name, namespace)
    except kube.KubectlError as error:
        raise Refused(f"cannot look up {urn} on the cluster: {error}") from None
    if live is None:
        return Pending(urn, op, "clear: the object does not exist")
    live_namespace = (live.get("metadata") or {}).get("namespace")
    live_id = f"{live_namespace}/{name}" if live_namespace else name
    return Pending(urn, op, f"adopt: {live_id} exists", live_id)


def _table(pending: list[Pending]) -> str:
    return console.table(["resource", "interrupted while", "recover"], [(p.name, p.op, p.action) for p in pending])


def _adopt(stack: auto.Stack, plan: list[Pending], directory: Path) -> None:
    """Move each pending create whose object exists into the state's resources, with the live id
    (what `refresh --import-pending-creates` is for; its pending import is dropped unread by the
    engine of v3.259.0, found by tests/engine/test_recover_killed_up.py). The refresh that follows
    reads each one's live outputs. Appended last: what it depends on was created before it."""
    live = {item.urn: item.live_id for item in plan if item.live_id}
    if not live:
        return
    document = json.loads(stacks.export_state(stack))
    deployment = document["deployment"]
    kept = []
    for operation in deployment.get("pending_operations") or []:
        urn = (operation.get("resource") or {}).get("urn")
        if operation.get("type") == CREATING and urn in live:
            deployment.setdefault("resources", []).append({**operation["resource"], "id": live[urn]})
        else:
            kept.append(operation)
    deployment["pending_operations"] = kept
    path = directory / "state.json"
    path.write_text(json.dumps(document))
    stacks.import_state(stack, path)


def _refresh(stack: auto.Stack, plan: list[Pending]) -> None:
    args = ["refresh", "--yes", "--skip-preview", "--message", "recover: refresh after an interrupted update"]
    if any(item.op == CREATING and not item.live_id for item in plan):
        args.append("--clear-pending-creates")
    try:
        stacks.cli_streamed(stack, args)
    except auto.CommandError as error:
        raise stacks.engine_failure(f"refresh of {stack.name}", error) from None


def run_recover(stack_name: str, dry_run: bool, assume_yes: bool, break_lock: bool, work_dir: Path) -> int:
    # Before the stack is opened: a half-written state keeps the CLI from selecting it.
    damaged = stacks.half_written_sidecars(stacks.workspace_of(work_dir), stack_name)
    if damaged and dry_run:
        console.say(f"would remove {len(damaged)} half-written (empty) state attribute file(s): "
                    + ", ".join(str(path) for path in damaged))
        return 0
    for path in damaged:
        path.unlink()  # missing, the store gives the object its default attributes
    if damaged:
        console.say(f"removed {len(damaged)} half-written (empty) state attribute file(s): "
                    + ", ".join(str(path) for path in damaged))
    stack = stacks.open_stack(stack_name, work_dir)
    held = stacks.locks(stack)
    try:
        operations = stacks.pending_operations(stack)
    except auto.CommandError as error:
        raise stacks.engine_failure(f"reading the state of {stack.name}", error) from None
    if not operations and not held:
        console.say(f"nothing to recover: {stack.name} has no pending operations"
                    + (" and no lock" if held is not None else " (locks are not readable on this backend)"))
        return 0
    for lock in held or []:
        if lock.here_and_alive:
            raise Refused(f"{stack.name} is locked by a running process ({lock.describe()}): an update is in "
                          "progress; wait for it, or stop it, then run recover")
        if lock.host != socket.gethostname() and not break_lock:
            raise Refused(f"{stack.name} is locked from another host ({lock.describe()}); make sure nothing runs "
                          "there, then run recover again with --break-lock")
    config = stacks.read_config(stack)
    plan = _plan(stack, operations, config, work_dir)
    if held:
        console.say(f"lock(s) of {stack.name} left by a process that is gone:")
        console.say("\n".join(f"  {lock.describe()}" for lock in held))
    if plan:
        console.say(f"{len(plan)} pending operation(s) in the state of {stack.name}:")
        console.say(_table(plan))
    if dry_run:
        console.say("dry run: nothing was changed")
        return 0
    console.confirm(f"Recover {stack.name}", assume_yes)
    if held:
        console.step(f"pulumi cancel --stack {stack.name} (removes the stale lock)")
        stacks.cli_streamed(stack, ["cancel", "--yes"])
    if any(item.live_id for item in plan):
        console.step(f"state of {stack.name}: the pending creates whose objects exist become resources")
        with tempfile.TemporaryDirectory(prefix="clipper-recover-") as directory:
            _adopt(stack, plan, Path(directory))
    console.step(f"refresh of {stack.name}" + (" (clears the pending creates whose objects do not exist)" if plan else ""))
    _refresh(stack, plan)
    left = stacks.pending_operations(stack)
    if left:
        raise Refused(f"{len(left)} pending operation(s) are still in the state of {stack.name} after the refresh")
    console.say()
    console.say(f"recovered {stack.name}: " + ", ".join(part for part in (
        f"{len(held)} stale lock(s) removed" if held else "",
        f"{sum(1 for p in plan if p.live_id)} pending create(s) adopted (the object exists)" if plan else "",
        f"{sum(1 for p in plan if p.op == CREATING and not p.live_id)} cleared" if plan else "",
        f"{sum(1 for p in plan if p.op != CREATING)} other(s) reconciled" if plan else "",
    ) if part))
    console.say(f"next: `pulumi up --stack {stack.name}` finishes what the interrupted update started "
                "(preflight first)")
    return 0


def _plan(stack: auto.Stack, operations: list[dict], config, work_dir: Path) -> list[Pending]:
    if not any((op.get("resource") or {}).get("type", "").startswith(KUBERNETES_PREFIX) and op.get("type") == CREATING
               for op in operations):
        return [look_up(op, None) for op in operations]
    with kube.cluster_of(stack, config, work_dir, "recover") as kubectl:
        return [look_up(op, kubectl) for op in operations]
