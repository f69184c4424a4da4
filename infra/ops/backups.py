"""`backups list` and `restore`: Velero's Backups and Restores on a stack's cluster, through kubectl
with the stack's kubeconfig (infra/ops/kube.py), so nothing but the API server is needed.

A restore is a Velero `Restore` object: the app namespace (or `--namespace`) from one Backup
(`--backup`, default the newest Completed one that holds it), into the same namespace or, with
`--to-namespace`, a new one beside it. Restoring into a new cluster is the same command once the
stack's cluster is back (`pulumi up`): Velero re-reads the backups from the stack's bucket
(`backupSyncPeriod`, one minute) and they are listed and restorable again.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from components.addons.backups import BackupSettings, minutes
from infra.ops import console, stacks
from infra.ops.errors import BadUsage, Refused
from infra.ops.kube import Kubectl, KubectlError, cluster_of, format_duration, name_of
from infra.ops.stack_config import StackConfig, project_setting

BACKUPS, RESTORES = "backups.velero.io", "restores.velero.io"
SCHEDULE_LABEL = "velero.io/schedule-name"
DONE = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
DEFAULT_WAIT_S = 30 * 60
POLL_S = 5.0


@dataclass(frozen=True)
class StackBackups:
    settings: BackupSettings
    app_namespace: str


def stack_backups(config: StackConfig, stack_name: str) -> StackBackups:
    addons = project_setting(config, "addons", {}) or {}
    settings = BackupSettings.model_validate(addons.get("backups") or {})
    if not settings.enabled:
        raise Refused(
            f"addons.backups is off in {stack_name}: no Velero there; enable it (clipper:addons.backups.enabled true) "
            "and run `pulumi up`"
        )
    return StackBackups(settings, str(project_setting(config, "appNamespace", "")))


def _time(text: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def namespaces_of(backup: dict) -> list[str]:
    return list((backup.get("spec") or {}).get("includedNamespaces") or ["*"])


def holds(backup: dict, namespace: str) -> bool:
    return any(ns in ("*", namespace) for ns in namespaces_of(backup))


def newest_completed(backups: list[dict], namespace: str) -> Optional[dict]:
    done = [b for b in backups if (b.get("status") or {}).get("phase") == "Completed" and holds(b, namespace)]
    return max(done, key=lambda b: (b.get("status") or {}).get("completionTimestamp") or "", default=None)


def backup_rows(backups: list[dict]) -> list[list[str]]:
    rows = []
    for b in sorted(backups, key=lambda b: (b.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        status = b.get("status") or {}
        rows.append(
            [
                name_of(b),
                ((b.get("metadata") or {}).get("labels") or {}).get(SCHEDULE_LABEL, "-"),
                ",".join(namespaces_of(b)),
                status.get("phase", "New"),
                status.get("startTimestamp", ""),
                status.get("completionTimestamp", ""),
                status.get("expiration", ""),
                f"{status.get('errors', 0)}/{status.get('warnings', 0)}",
            ]
        )
    return rows


def rpo_line(backups: list[dict], namespace: str, rpo: str, now: datetime) -> tuple[bool, str]:
    """Whether the newest completed backup of `namespace` is within the RPO, said in one line."""
    newest = newest_completed(backups, namespace)
    if newest is None:
        return False, f"RPO {rpo}: NOT MET: no completed backup of {namespace}"
    age = (now - _time(newest["status"]["completionTimestamp"])).total_seconds()
    met = age <= minutes(rpo) * 60
    return met, f"RPO {rpo}: {'met' if met else 'NOT MET'}: newest completed backup of {namespace} is {name_of(newest)}, {format_duration(age)} old"


def restore_object(name: str, namespace: str, backup: str, source: str, target: Optional[str]) -> dict:
    """The Velero Restore of `source` from `backup`, into `target` (a new namespace) or in place."""
    spec: dict = {
        "backupName": backup,
        "includedNamespaces": [source],
        "restorePVs": True,
        # Objects that exist already (re-created by `pulumi up`) are left as they are.
        "existingResourcePolicy": "none",
    }
    if target and target != source:
        spec["namespaceMapping"] = {source: target}
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Restore",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "clipper-ops"}},
        "spec": spec,
    }


def create(kube: Kubectl, obj: dict) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(obj, handle)
    try:
        kube.run("create", "-f", handle.name)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def wait_for_restore(
    kube: Kubectl, namespace: str, name: str, timeout_s: float, clock: Callable[[], float] = time.monotonic, poll_s: float = POLL_S
) -> Optional[dict]:
    """The Restore once Velero has finished it; None when it has not within `timeout_s`."""
    start, last = clock(), None
    while True:
        restore = kube.get_or_none(RESTORES, name, namespace)
        phase = ((restore or {}).get("status") or {}).get("phase", "New")
        if phase != last:
            console.say(f"  {format_duration(clock() - start):>6}  restore {name}: {phase}")
            last = phase
        if phase in DONE:
            return restore
        if clock() - start >= timeout_s:
            return None
        time.sleep(poll_s)


def start_restore(kube: Kubectl, b: StackBackups, backup: Optional[str], source: str, target: Optional[str]) -> str:
    """Create the Restore; returns its name. The backup must exist and hold `source`."""
    velero = b.settings.namespace
    try:
        backups = kube.items(BACKUPS, velero)
    except KubectlError as error:
        raise Refused(f"cannot list Velero backups in {velero}: {error}") from None
    if backup:
        chosen = next((x for x in backups if name_of(x) == backup), None)
        if chosen is None:
            raise BadUsage(f"no backup {backup} in {velero} (`backups list` shows them)")
        if not holds(chosen, source):
            raise BadUsage(f"backup {backup} does not hold namespace {source} (it holds {', '.join(namespaces_of(chosen))})")
    else:
        chosen = newest_completed(backups, source)
        if chosen is None:
            raise Refused(f"no completed backup of {source} in {velero} (`backups list` shows what there is)")
    name = f"{name_of(chosen)}-{datetime.now(timezone.utc).strftime('%Y%m%d%H%M%S')}"[:63]
    try:
        create(kube, restore_object(name, velero, name_of(chosen), source, target))
    except KubectlError as error:
        raise Refused(f"the API server refused Restore {name}: {error}") from None
    where = f"into {target}" if target and target != source else "in place"
    console.say(f"Restore {name}: {source} from backup {name_of(chosen)}, {where}")
    return name


def run_list(stack_name: str, as_json: bool, work_dir: Path) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    config = stacks.read_config(stack)
    b = stack_backups(config, stack.name)
    with cluster_of(stack, config, work_dir, "list backups of") as kube:
        try:
            backups = kube.items(BACKUPS, b.settings.namespace)
        except KubectlError as error:
            raise Refused(f"cannot list Velero backups in {b.settings.namespace}: {error}") from None
    if as_json:
        console.say(json.dumps([{"name": r[0], "schedule": r[1], "namespaces": r[2].split(","), "phase": r[3], "started": r[4],
                                 "completed": r[5], "expires": r[6]} for r in backup_rows(backups)], indent=2))
        return 0
    console.say(console.table(["BACKUP", "SCHEDULE", "NAMESPACES", "PHASE", "STARTED", "COMPLETED", "EXPIRES", "ERR/WARN"], backup_rows(backups)))
    console.say()
    met, line = rpo_line(backups, b.app_namespace, b.settings.rpo, datetime.now(timezone.utc))
    console.say(line)
    return 0 if met else 1


def run_restore(
    stack_name: str, backup: Optional[str], namespace: Optional[str], to_namespace: Optional[str], wait_s: int, work_dir: Path
) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    config = stacks.read_config(stack)
    b = stack_backups(config, stack.name)
    source = namespace or b.app_namespace
    with cluster_of(stack, config, work_dir, "restore into") as kube:
        name = start_restore(kube, b, backup, source, to_namespace)
        if wait_s == 0:
            console.say(f"not waiting (--wait 0): `kubectl -n {b.settings.namespace} get restore {name}` shows its phase")
            return 0
        restore = wait_for_restore(kube, b.settings.namespace, name, wait_s)
    if restore is None:
        console.say(f"restore {name}: not finished within {format_duration(wait_s)} (is Velero running in {b.settings.namespace}?)")
        return 1
    phase = restore["status"]["phase"]
    console.say(f"restore {name}: {phase}")
    return 0 if phase == "Completed" else 1
