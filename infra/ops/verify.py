"""`verify`: does what the stack deployed actually run? Checked on the live cluster, over a watch window.

Per app (from the stack's config):
- rollout: the Deployment runs the configured image, its controller observed the latest
  generation, every replica is updated and available, no old pods are left, and the rollout is not
  stuck (ProgressDeadlineExceeded);
- pods: every pod of the current revision is Ready (a pending or crashing pod says why);
- restarts: no container of the current revision's pods has restarted (they were all created by
  the update, so any restart happened since it);
- secrets: the app's ExternalSecret is synced (Ready), where External Secrets is on;
- certificate: the app's Certificate is Ready, where cert-manager is on and the app has a host;
- http (with --http): the app's readiness path answers 2xx through the API server's service proxy
  (`/api/v1/namespaces/<ns>/services/<app>:http/proxy/<path>`). Opt-in: the app namespace's
  default-deny admits nobody but the ingress controller and declared app traffic, so on our
  clusters the API server cannot reach the pods unless an allowance for the control plane is
  added; and on the local API server (kwok) no container runs to answer.

Each check is OK, WAIT (not there yet) or FAIL. The watch polls until the window ends: a FAIL stops
it at once (exit 1); a WAIT still open when the window ends is a FAIL ("did not settle"). So
`--watch 30m` soaks the release for 30 minutes, and `--watch 0` looks once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from infra.ops import console, stacks
from infra.ops.checks import renders_only
from infra.ops.errors import Refused
from infra.ops.kube import (
    AppTarget,
    Kubectl,
    KubectlError,
    StackApps,
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
from infra.ops.promotion import parse_app_list

OK, WAIT, FAIL, SKIP = "OK", "WAIT", "FAIL", "SKIP"
DEFAULT_WATCH_S = 30
POLL_S = 5
HTTP_TIMEOUT_S = 5
# Container states that do not fix themselves: the rollout fails now, not at the end of the window.
BROKEN_WAITING = {
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "RunContainerError",
}
CHECKS = ("rollout", "pods", "restarts", "secrets", "certificate", "http")

# The clock and the pause between polls, replaced by the unit tests.
clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Check:
    app: str
    check: str
    status: str
    detail: str


@dataclass
class Snapshot:
    """What the cluster showed at one poll, by kind and name."""

    deployments: dict[str, dict]
    replicasets: list[dict]
    pods: list[dict]
    external_secrets: Optional[dict[str, dict]] = None  # None: not read (off), or unreadable (see errors)
    certificates: Optional[dict[str, dict]] = None
    http: Optional[dict[str, Optional[str]]] = None  # app -> None (answered) or the error
    errors: Optional[dict[str, str]] = None  # "secrets"/"certificate" -> why they could not be read


# --- one look at one app ----------------------------------------------------------------------------


def check_rollout(app: AppTarget, deployment: Optional[dict]) -> Check:
    def result(status: str, detail: str) -> Check:
        return Check(app.name, "rollout", status, detail)

    if deployment is None:
        return result(WAIT, f"no Deployment {app.name} in {app.namespace}")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    images = [c.get("image") for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []]
    if app.image not in images:
        return result(FAIL, f"runs {', '.join(map(str, images)) or 'no image'}, the stack's config says {app.image}")
    progressing = condition(deployment, "Progressing")
    if progressing and progressing.get("status") == "False":
        return result(FAIL, f"rollout stuck: {progressing.get('reason')}: {progressing.get('message', '')}".strip())
    generation, observed = deployment["metadata"].get("generation", 0), status.get("observedGeneration", 0)
    if observed < generation:
        return result(WAIT, f"generation {generation} not yet observed by the controller (at {observed})")
    desired = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    where = f"revision {revision(deployment) or '?'}"
    if updated < desired:
        return result(WAIT, f"{where}: {updated}/{desired} pods updated")
    if total > updated:
        return result(WAIT, f"{where}: {total - updated} old pod(s) still running")
    if available < updated:
        return result(WAIT, f"{where}: {available}/{desired} available")
    return result(OK, f"{where}: {desired}/{desired} updated and available, {app.image.rsplit('/', 1)[-1]}")


def _pod_problem(pod: dict) -> tuple[Optional[str], str]:
    """(FAIL or WAIT or None, why) for one pod of the current revision."""
    name = name_of(pod)
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in BROKEN_WAITING:
            message = f": {waiting['message']}" if waiting.get("message") else ""
            return FAIL, f"{name}: container {container.get('name')} {waiting['reason']}{message}"
    ready = condition(pod, "Ready")
    if ready and ready.get("status") == "True":
        return None, ""
    scheduled = condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return WAIT, f"{name}: not scheduled: {scheduled.get('reason')}: {scheduled.get('message', '')}".strip()
    reason = (ready or {}).get("message") or (ready or {}).get("reason") or status.get("phase", "not ready")
    return WAIT, f"{name}: {reason}"


def check_pods(app: AppTarget, deployment: Optional[dict], pods: list[dict]) -> Check:
    if deployment is None:
        return Check(app.name, "pods", WAIT, "no Deployment")
    desired = (deployment.get("spec") or {}).get("replicas", 1)
    problems = [found for found in (_pod_problem(pod) for pod in pods) if found[0]]
    failed = [why for status, why in problems if status == FAIL]
    if failed:
        return Check(app.name, "pods", FAIL, "; ".join(failed))
    ready = len(pods) - len(problems)
    if problems or ready < desired:
        detail = f"{ready}/{desired} Ready" + (f"; {'; '.join(why for _, why in problems[:3])}" if problems else "")
        return Check(app.name, "pods", WAIT, detail)
    return Check(app.name, "pods", OK, f"{ready}/{desired} Ready: {', '.join(name_of(pod) for pod in pods)}")


def check_restarts(app: AppTarget, deployment: Optional[dict], pods: list[dict]) -> Check:
    restarted = []
    for pod in pods:
        status = pod.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            count = container.get("restartCount", 0)
            if count:
                last = ((container.get("lastState") or {}).get("terminated") or {})
                why = f" (last: {last.get('reason', '?')}, exit {last.get('exitCode', '?')})" if last else ""
                restarted.append(f"{name_of(pod)}/{container.get('name')} restarted {count}x{why}")
    if restarted:
        return Check(app.name, "restarts", FAIL, "; ".join(restarted))
    where = f"revision {revision(deployment)}" if deployment else "the current revision"
    return Check(app.name, "restarts", OK, f"none in the {len(pods)} pod(s) of {where}")


@dataclass(frozen=True)
class ReadyKind:
    """A custom resource whose Ready condition a check reads: ExternalSecret, Certificate."""

    check: str
    kind: str
    not_ready: str  # "not synced", "not Ready"
    no_status: str  # what a missing status most likely means
    ready: str  # "synced", "Ready"
    when_field: str  # the status field worth showing when Ready (refreshTime, notAfter)
    when_word: str


EXTERNAL_SECRET = ReadyKind("secrets", "ExternalSecret", "not synced", "not synced yet (no status: is External Secrets running?)",
                            "synced", "refreshTime", " at")
CERTIFICATE = ReadyKind("certificate", "Certificate", "not Ready", "not Ready: no status yet", "Ready", "notAfter", ", expires")


def check_ready(app: AppTarget, what: ReadyKind, name: str, found: Optional[dict[str, dict]], error: Optional[str]) -> Check:
    def result(status: str, detail: str) -> Check:
        return Check(app.name, what.check, status, detail)

    if error:
        return result(WAIT, f"cannot read {what.kind}s: {error}")
    obj = (found or {}).get(name)
    if obj is None:
        return result(WAIT, f"no {what.kind} {name}")
    ready = condition(obj, "Ready")
    if ready is None:
        return result(WAIT, f"{name} {what.no_status}")
    if ready.get("status") != "True":
        return result(WAIT, f"{name} {what.not_ready}: {ready.get('reason')}: {ready.get('message', '')}".strip())
    when = (obj.get("status") or {}).get(what.when_field)
    return result(OK, f"{name} {what.ready}" + (f"{what.when_word} {when}" if when else ""))


def check_external_secret(app: AppTarget, found: Optional[dict[str, dict]], error: Optional[str]) -> Check:
    if not app.secrets:
        return Check(app.name, EXTERNAL_SECRET.check, SKIP, "no synced secrets")
    return check_ready(app, EXTERNAL_SECRET, app.secret_name, found, error)


def check_certificate(app: AppTarget, found: Optional[dict[str, dict]], error: Optional[str]) -> Check:
    if not app.certificate:
        return Check(app.name, CERTIFICATE.check, SKIP, "no host, or cert-manager off")
    return check_ready(app, CERTIFICATE, app.name, found, error)


def proxy_path(app: AppTarget) -> str:
    return f"/api/v1/namespaces/{app.namespace}/services/{app.name}:http/proxy{app.health_path}"


def check_http(app: AppTarget, answers: Optional[dict[str, Optional[str]]]) -> Check:
    if answers is None:
        return Check(app.name, "http", SKIP, f"{app.health_path} not probed (--http probes it through the API server)")
    error = answers.get(app.name)
    if error is None:
        return Check(app.name, "http", OK, f"{app.health_path} answered 2xx through the service proxy")
    return Check(app.name, "http", WAIT, f"{app.health_path} through the service proxy: {error}")


def evaluate(apps: Sequence[AppTarget], snapshot: Snapshot) -> list[Check]:
    errors = snapshot.errors or {}
    checks = []
    for app in apps:
        deployment = snapshot.deployments.get(app.name)
        pods = pods_of(current_replicaset(deployment, snapshot.replicasets), snapshot.pods) if deployment else []
        checks += [
            check_rollout(app, deployment),
            check_pods(app, deployment, pods),
            check_restarts(app, deployment, pods),
            check_external_secret(app, snapshot.external_secrets, errors.get("secrets")),
            check_certificate(app, snapshot.certificates, errors.get("certificate")),
            check_http(app, snapshot.http),
        ]
    return checks


# --- reading the cluster ---------------------------------------------------------------------------------


def _probe(kube: Kubectl, app: AppTarget) -> Optional[str]:
    try:
        kube.run("get", "--raw", proxy_path(app), timeout_s=HTTP_TIMEOUT_S)
        return None
    except KubectlError as error:
        return str(error)


def snapshot(kube: Kubectl, stack: StackApps, http: bool) -> Snapshot:
    """One read of everything the checks look at. An API server that does not answer is Refused."""
    try:
        items = kube.items("deployments.apps,replicasets.apps,pods", stack.namespace)
    except KubectlError as error:
        raise Refused(f"cannot read namespace {stack.namespace}: {error}") from None
    shot = Snapshot(
        deployments=by_name(items, "Deployment"),
        replicasets=[i for i in items if i.get("kind") == "ReplicaSet"],
        pods=[i for i in items if i.get("kind") == "Pod"],
        errors={},
    )
    if any(app.secrets for app in stack.apps):
        try:
            shot.external_secrets = by_name(kube.items("externalsecrets.external-secrets.io", stack.namespace), "ExternalSecret")
        except KubectlError as error:
            shot.errors["secrets"] = str(error)
    if any(app.certificate for app in stack.apps):
        try:
            shot.certificates = by_name(kube.items("certificates.cert-manager.io", stack.namespace), "Certificate")
        except KubectlError as error:
            shot.errors["certificate"] = str(error)
    if http:
        shot.http = {app.name: _probe(kube, app) for app in stack.apps}
    return shot


# --- the watch ---------------------------------------------------------------------------------------------


def settle(checks: list[Check], window_s: int) -> list[Check]:
    """At the end of the window, what is still on its way failed."""
    when = f"still, after {format_duration(window_s)}" if window_s else "looked once: --watch 0"
    return [replace(c, status=FAIL, detail=f"{c.detail} ({when})") if c.status == WAIT else c for c in checks]


def results_table(checks: list[Check]) -> str:
    return console.table(["app", "check", "result", "detail"], [(c.app, c.check, c.status, c.detail) for c in checks])


def watch(read: Callable[[], Snapshot], apps: Sequence[AppTarget], window_s: int, poll_s: int = POLL_S) -> list[Check]:
    """Poll until the window ends or something fails; print each check when its result changes."""
    start = clock()
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    while True:
        checks = evaluate(apps, read())
        elapsed = clock() - start
        for c in checks:
            if seen.get((c.app, c.check)) != (c.status, c.detail):
                seen[(c.app, c.check)] = (c.status, c.detail)
                console.say(f"  {format_duration(elapsed):>6}  {c.app}  {c.check}  {c.status}  {c.detail}")
        if any(c.status == FAIL for c in checks) or elapsed >= window_s:
            return settle(checks, window_s)
        sleep(max(0.0, min(poll_s, window_s - elapsed)))


def verify_stack(stack, work_dir: Path, apps: Optional[Sequence[str]], window_s: int, http: bool) -> int:
    config = stacks.read_config(stack)
    declared = stack_apps(config, apps)
    with cluster_of(stack, config, work_dir, "verify") as kube:
        names = ", ".join(app.name for app in declared.apps)
        console.step(
            f"verify {stack.name}: {names} in {declared.namespace}, watching {format_duration(window_s)}"
            + ("" if http else " (no HTTP probe: --http adds it)")
        )
        checks = watch(lambda: snapshot(kube, declared, http), declared.apps, window_s)
    console.say()
    console.say(results_table(checks))
    console.say()
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        console.say(f"{stack.name}: FAIL: {len(failed)} check(s) failed: " + ", ".join(f"{c.app} {c.check}" for c in failed))
        return 1
    console.say(f"{stack.name}: PASS: every check held for {format_duration(window_s)}")
    return 0


def run_verify(stack_name: str, apps: Optional[str], window_s: int, http: bool, work_dir: Path) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    return verify_stack(stack, work_dir, parse_app_list(apps), window_s, http)


def verify_after_update(stack_name: str, work_dir: Path, skip: bool) -> int:
    """The end of `promote` and `rollback`: verify what was just deployed, unless --no-verify or render mode."""
    if skip:
        console.say("verify skipped (--no-verify)")
        return 0
    stack = stacks.open_stack(stack_name, work_dir)
    if renders_only(stacks.read_config(stack)):
        console.say(f"verify skipped: {stack.name} is in render mode (no cluster to look at)")
        return 0
    return verify_stack(stack, work_dir, None, DEFAULT_WATCH_S, http=False)
