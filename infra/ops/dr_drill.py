"""`dr-drill`: the runbook's disaster recovery, run for real against a disposable cluster and timed.

1. destroy: delete the app namespace (everything the apps had in the cluster goes with it);
2. re-up: `pulumi up --refresh` re-creates what the program declares (namespace, guard rails, apps);
3. restore: a Velero Restore of the namespace from its newest completed backup, in place (objects
   the re-up already made are left as they are: `existingResourcePolicy: none`);
4. verify: the apps' rollouts and pods, as `verify` checks them;
then the measured recovery time (RTO) against the runbook's 1-2 h.

What a local API server cannot do is said, not faked: no object storage and no volume snapshots
exist there, and nothing runs Velero's controller, so the Restore object is created (the API
server validates it against Velero's CRD) but reported as not processed unless Velero finishes it.
Refused on production stacks and on render-mode stacks; asks for confirmation unless --yes.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from pulumi import automation as auto

from infra.ops import console, stacks
from infra.ops.backups import DONE, stack_backups, start_restore, wait_for_restore
from infra.ops.errors import Refused
from infra.ops.kube import Kubectl, KubectlError, cluster_of, format_duration, stack_apps
from infra.ops.verify import verify_stack

RUNBOOK_RTO_S = (3600, 2 * 3600)  # the runbook's recovery time objective: 1-2 h
DEFAULT_RESTORE_WAIT_S = 60
DEFAULT_VERIFY_S = 60


def delete_namespace(kube: Kubectl, namespace: str, timeout_s: int = 300) -> None:
    try:
        kube.run("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", f"--timeout={timeout_s}s", timeout_s=timeout_s)
    except KubectlError as error:
        raise Refused(f"could not delete namespace {namespace}: {error}") from None


def rto_verdict(elapsed_s: float) -> str:
    low, high = RUNBOOK_RTO_S
    if elapsed_s <= low:
        verdict = "within the runbook's 1-2 h"
    elif elapsed_s <= high:
        verdict = "within the runbook's 2 h limit"
    else:
        verdict = "OVER the runbook's 2 h"
    return f"RTO measured: {format_duration(elapsed_s)} ({verdict})"


def run_dr_drill(
    stack_name: str,
    yes: bool,
    restore_wait_s: int,
    verify_s: int,
    work_dir: Path,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    config = stacks.read_config(stack)
    if stacks.environment_of(config) == "production":
        raise Refused(f"{stack.name} is a production stack: the drill deletes the app namespace; run it on a disposable stack")
    b = stack_backups(config, stack.name)
    namespace = stack_apps(config).namespace
    with cluster_of(stack, config, work_dir, "drill") as kube:
        console.confirm(f"dr-drill {stack.name}: delete namespace {namespace} and recover it", yes)
        start = clock()
        console.step(f"1/4 destroy: delete namespace {namespace}")
        delete_namespace(kube, namespace)
        console.say(f"namespace {namespace} deleted after {format_duration(clock() - start)}")

        console.step(f"2/4 re-up: pulumi up --refresh {stack.name}")
        try:
            stack.up(refresh=True, message=f"dr-drill: recover {namespace}", on_output=console.engine_output,
                     **stacks.policy_options(stack.name, config, work_dir))
        except auto.CommandError as error:
            raise stacks.engine_failure(f"re-up of {stack.name}", error) from None
        console.say(f"re-up done after {format_duration(clock() - start)}")

        console.step(f"3/4 restore: {namespace} from its newest completed backup")
        restore_note = ""
        try:
            name = start_restore(kube, b, None, namespace, None)
        except Refused as error:
            name, restore_note = None, f"restore NOT RUN: {error}"
        if name:
            restore = wait_for_restore(kube, b.settings.namespace, name, restore_wait_s)
            phase = ((restore or {}).get("status") or {}).get("phase")
            if phase in DONE:
                restore_note = f"restore {name}: {phase}"
            else:
                restore_note = (
                    f"restore {name}: accepted by the API server, NOT PROCESSED within {format_duration(restore_wait_s)} "
                    "(no Velero controller finished it: on a local API server nothing runs it, and there is no object storage)"
                )
        console.say(restore_note)

        console.step("4/4 verify: the apps are back")
    verified = verify_stack(stack, work_dir, None, verify_s, http=False)
    elapsed = clock() - start
    console.say()
    console.say(restore_note)
    console.say(rto_verdict(elapsed))
    console.say(f"dr-drill {stack.name}: {'PASS: the apps are back' if verified == 0 else 'FAIL: the apps are not back'}")
    return verified or (0 if elapsed <= RUNBOOK_RTO_S[1] else 1)
