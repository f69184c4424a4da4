"""`rotate`: make an app pick up a rotated secret now, without kubectl.

The new value is written in the cloud secret manager first (that is the rotation); External
Secrets would sync it within its refreshInterval and Reloader would then roll the app. `rotate`
does not wait for the interval:

1. annotates the app's ExternalSecret with `force-sync=<unix time>` (External Secrets' documented
   way to ask for an immediate sync; the annotation changes the object, which the operator
   reconciles);
2. waits until the operator has synced it again (Ready, a newer `refreshTime`) and checks that the
   Secret's data changed (compared by a SHA-256 of its data, computed here and never shown): an
   unchanged Secret means the secret manager still holds the old value, and nothing is rolled;
3. waits for Reloader to roll the Deployment (a new revision) and for that rollout to complete,
   printing progress, then names the pods replaced.

Nothing here edits the Deployment: the roll is Reloader's (`addons.reloader`), so a rotation
behaves the same whether `rotate` or the refresh interval brings the new value.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

from infra.ops import console, stacks
from infra.ops.errors import BadUsage, Refused
from infra.ops.kube import (
    AppTarget,
    Kubectl,
    KubectlError,
    by_name,
    cluster_of,
    condition,
    current_replicaset,
    format_duration,
    name_of,
    pods_of,
    revision,
    stack_apps,
)
from infra.ops.verify import OK, check_pods, check_rollout

FORCE_SYNC = "force-sync"  # the annotation External Secrets documents for an immediate refresh
EXTERNAL_SECRET = "externalsecret.external-secrets.io"
DEFAULT_TIMEOUT_S = 300
POLL_S = 2

clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep
T = TypeVar("T")


def data_digest(secret: Optional[dict]) -> Optional[str]:
    """A digest of a Secret's data (keys and values): equal digests, equal data. None: no Secret."""
    if secret is None:
        return None
    return hashlib.sha256(json.dumps(secret.get("data") or {}, sort_keys=True).encode()).hexdigest()


def _wait(what: str, timeout_s: float, start: float, poll: Callable[[], Optional[T]]) -> T:
    """Call `poll` until it returns something; Refused naming `what` when the time is up."""
    while True:
        found = poll()
        if found is not None:
            return found
        if clock() - start >= timeout_s:
            raise Refused(f"timed out after {format_duration(timeout_s)} waiting for {what}")
        sleep(POLL_S)


class Rotation:
    """One app's rotation against one cluster."""

    def __init__(self, kube: Kubectl, app: AppTarget, timeout_s: int):
        self.kube, self.app, self.timeout_s = kube, app, timeout_s
        self.start = clock()

    def elapsed(self) -> str:
        return format_duration(clock() - self.start)

    def progress(self, text: str) -> None:
        console.say(f"  {self.elapsed():>6}  {text}")

    def get(self, kind: str, name: str) -> Optional[dict]:
        try:
            return self.kube.get_or_none(kind, name, self.app.namespace)
        except KubectlError as error:
            raise Refused(f"cannot read {kind} {self.app.namespace}/{name}: {error}") from None

    def deployment_and_pods(self) -> tuple[Optional[dict], list[dict]]:
        try:
            items = self.kube.items("deployments.apps,replicasets.apps,pods", self.app.namespace)
        except KubectlError as error:
            raise Refused(f"cannot read namespace {self.app.namespace}: {error}") from None
        deployment = by_name(items, "Deployment").get(self.app.name)
        replicasets = [i for i in items if i.get("kind") == "ReplicaSet"]
        pods = [i for i in items if i.get("kind") == "Pod"]
        return deployment, pods_of(current_replicaset(deployment, replicasets), pods) if deployment else []

    def force_sync(self) -> str:
        """Annotate the ExternalSecret; wait for the operator's next successful sync; its refreshTime."""
        name = self.app.secret_name
        before = self.get(EXTERNAL_SECRET, name)
        if before is None:
            raise Refused(f"no ExternalSecret {self.app.namespace}/{name}: deploy the stack first")
        refreshed_before = (before.get("status") or {}).get("refreshTime")
        stamp = str(int(time.time()))
        console.step(f"force-sync of ExternalSecret {self.app.namespace}/{name} ({FORCE_SYNC}={stamp})")
        try:
            self.kube.run("annotate", EXTERNAL_SECRET, name, "-n", self.app.namespace, f"{FORCE_SYNC}={stamp}", "--overwrite")
        except KubectlError as error:
            raise Refused(f"cannot annotate ExternalSecret {name}: {error}") from None

        def synced() -> Optional[str]:
            current = self.get(EXTERNAL_SECRET, name) or {}
            ready = condition(current, "Ready")
            refreshed = (current.get("status") or {}).get("refreshTime")
            if ready and ready.get("status") == "False" and refreshed != refreshed_before:
                raise Refused(f"External Secrets could not sync {name}: {ready.get('reason')}: {ready.get('message', '')}")
            if ready and ready.get("status") == "True" and refreshed and refreshed != refreshed_before:
                return refreshed
            return None

        refreshed = _wait(f"External Secrets to sync {name} (is its operator running?)", self.timeout_s, self.start, synced)
        self.progress(f"synced at {refreshed}")
        return refreshed

    def wait_for_roll(self, revision_before: Optional[str]) -> dict:
        """Wait for Reloader to start a new revision of the Deployment; return that Deployment."""
        console.step(f"rollout of deployment {self.app.namespace}/{self.app.name} by Reloader")

        def rolled() -> Optional[dict]:
            deployment, _ = self.deployment_and_pods()
            return deployment if deployment and revision(deployment) != revision_before else None

        deployment = _wait(
            f"Reloader to roll deployment {self.app.name} after its Secret changed (is Reloader running, and does the "
            f"Deployment carry the secret.reloader.stakater.com/reload annotation?)",
            self.timeout_s, self.start, rolled,
        )
        self.progress(f"revision {revision(deployment)} started")
        return deployment

    def wait_for_rollout(self) -> list[dict]:
        """Wait until every pod of the new revision is Ready and the old ones are gone; the new pods."""
        last: list[str] = []

        def done() -> Optional[list[dict]]:
            deployment, pods = self.deployment_and_pods()
            rollout, ready = check_rollout(self.app, deployment), check_pods(self.app, deployment, pods)
            for check in (rollout, ready):
                if check.status not in (OK, "WAIT"):
                    raise Refused(f"the rollout of {self.app.name} failed: {check.check}: {check.detail}")
            line = f"{rollout.detail}; {ready.detail}"
            if line not in last:
                last.append(line)
                self.progress(line)
            return pods if rollout.status == OK and ready.status == OK else None

        return _wait(f"the rollout of {self.app.name} to complete", self.timeout_s, self.start, done)

    def run(self) -> int:
        deployment, old_pods = self.deployment_and_pods()
        if deployment is None:
            raise Refused(f"no Deployment {self.app.namespace}/{self.app.name}: deploy the stack first")
        annotations = deployment["metadata"].get("annotations") or {}
        if not any(key.startswith("secret.reloader.stakater.com/") for key in annotations):
            raise Refused(
                f"deployment {self.app.name} has no Reloader annotation: nothing would roll it when its Secret changes "
                "(addons.reloader.enabled: false in the stack? Reloader is on by default with External Secrets; run `pulumi up` first)"
            )
        digest_before = data_digest(self.get("secret", self.app.secret_name))
        self.force_sync()
        if data_digest(self.get("secret", self.app.secret_name)) == digest_before:
            raise Refused(
                f"External Secrets synced {self.app.secret_name}, but its data did not change: the secret manager still "
                "holds the values the app runs with. Write the new version there first; nothing was restarted"
            )
        self.progress(f"Secret {self.app.secret_name} changed")
        self.wait_for_roll(revision(deployment))
        new_pods = self.wait_for_rollout()
        old = ", ".join(name_of(pod) for pod in old_pods) or "none"
        console.say(
            f"done in {self.elapsed()}: {self.app.name} runs with the rotated secret; pods {old} replaced by "
            + ", ".join(name_of(pod) for pod in new_pods)
        )
        return 0


def run_rotate(stack_name: str, app: str, timeout_s: int, work_dir: Path) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    config = stacks.read_config(stack)
    declared = stack_apps(config, [app])
    target = declared.apps[0]
    if not target.secrets:
        why = "External Secrets is off in this stack" if not declared.external_secrets else f"apps.{app}.secrets is empty"
        raise BadUsage(f"app {app} has no synced secrets to rotate ({why})")
    if not declared.reloader:
        raise Refused(
            f"addons.reloader is off in {stack.name}: nothing rolls {app} when its Secret changes; enable it "
            "(clipper:addons.reloader.enabled true) and run `pulumi up`"
        )
    with cluster_of(stack, config, work_dir, "rotate") as kube:
        return Rotation(kube, target, timeout_s).run()
