"""Go/no-go checks: `preflight` (the runbook's pre-deployment checklist) and `drift`."""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pulumi
import yaml
from pulumi import automation as auto

from infra.ops import console, reach, stacks
from infra.ops.errors import OpsError, Refused
from infra.ops.stack_config import StackConfig, existing_kubeconfig, plain_project_settings, project_setting

# A refresh that would change a resource shows it as one of these operations.
DRIFT_OPS = {"update", "delete", "replace", "create", "create-replacement", "delete-replaced"}
LANGUAGE_HOST = "pulumi-language-python"
KUBERNETES_PROVIDER = "pulumi-resource-kubernetes"


@dataclass(frozen=True)
class DriftedResource:
    urn: str
    op: str
    properties: tuple[str, ...]

    @property
    def name(self) -> str:
        """`kubernetes:apps/v1:Deployment::backend-deployment` from the URN."""
        parts = self.urn.split("::")
        return "::".join(parts[-2:]) if len(parts) >= 2 else self.urn


class DriftCollector:
    """Engine-event handler that notes each resource a refresh would change."""

    def __init__(self) -> None:
        self.drifted: dict[str, DriftedResource] = {}

    def __call__(self, event: auto.EngineEvent) -> None:
        outputs = event.res_outputs_event
        if outputs is None:
            return
        metadata = outputs.metadata
        op = str(getattr(metadata.op, "value", metadata.op))
        diffs = tuple(metadata.diffs or ())
        if op in DRIFT_OPS or (op == "refresh" and diffs):
            self.drifted[metadata.urn] = DriftedResource(metadata.urn, op, diffs)


def renders_only(config: StackConfig) -> bool:
    """True for `existing.mode: render`: manifests are written to files, so no live state exists
    to drift (and a refresh cannot reach a cluster)."""
    existing = project_setting(config, "existing", {}) or {}
    return project_setting(config, "cloud", "existing") == "existing" and existing.get("mode") == "render"


def detect_drift(stack: auto.Stack) -> list[DriftedResource]:
    """Resources whose live state differs from the stack's state (a refresh preview: writes nothing)."""
    collector = DriftCollector()
    result = stacks.preview_refresh(stack, on_event=collector)
    drifted = list(collector.drifted.values())
    if not drifted:
        # Backends that send no per-resource events still count the changes in the summary.
        changed = {op: n for op, n in (result.change_summary or {}).items() if op in DRIFT_OPS and n}
        drifted = [DriftedResource(f"({n} resource(s))", op, ()) for op, n in sorted(changed.items())]
    return drifted


def drift_table(drifted: list[DriftedResource]) -> str:
    return console.table(
        ["resource", "change", "properties"], [(d.name, d.op, ", ".join(d.properties) or "-") for d in drifted]
    )


def run_drift(stack_name: str, work_dir: Path) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    if renders_only(stacks.read_config(stack)):
        console.say(f"{stack.name} is in render mode: it has no live state, so nothing can drift")
        return 0
    console.step(f"refresh preview of {stack.name} (reads live state, writes nothing)")
    drifted = detect_drift(stack)
    if not drifted:
        console.say(f"no drift: every resource of {stack.name} matches its recorded state")
        return 0
    console.say(f"{len(drifted)} resource(s) of {stack.name} changed outside Pulumi:")
    console.say(drift_table(drifted))
    console.say("`pulumi up` puts them back as declared; `pulumi refresh` adopts the live state instead.")
    return 1


@dataclass(frozen=True)
class CheckResult:
    check: str
    go: bool
    detail: str


class PolicyCollector:
    """Engine-event handler that keeps policy violations, mandatory ones apart."""

    def __init__(self) -> None:
        self.mandatory: list[str] = []
        self.advisory: list[str] = []

    def __call__(self, event: auto.EngineEvent) -> None:
        policy = event.policy_event
        if policy is None:
            return
        text = f"{policy.policy_name}: {policy.message.strip().splitlines()[0] if policy.message.strip() else ''}"
        (self.mandatory if policy.enforcement_level == "mandatory" else self.advisory).append(text)


def _binary_beside_cli(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    cli = shutil.which("pulumi")
    beside = Path(cli).resolve().parent / name if cli else None
    return str(beside) if beside and beside.is_file() and os.access(beside, os.X_OK) else None


def check_toolchain(stack: auto.Stack) -> list[CheckResult]:
    cli = shutil.which("pulumi")
    results = [CheckResult("pulumi CLI", bool(cli), f"{cli} ({stack.workspace.pulumi_version})" if cli else "not on PATH")]
    host = _binary_beside_cli(LANGUAGE_HOST)
    results.append(CheckResult("Python language host", bool(host), host or f"{LANGUAGE_HOST} not on PATH or beside pulumi"))
    provider = _binary_beside_cli(KUBERNETES_PROVIDER)
    if not provider:
        installed = [p for p in stack.workspace.list_plugins() if p.name == "kubernetes" and p.kind == "resource"]
        provider = f"plugin kubernetes {installed[0].version}" if installed else None
    results.append(
        CheckResult("Kubernetes provider", bool(provider), provider or f"{KUBERNETES_PROVIDER} not on PATH nor installed")
    )
    return results


def check_config(stack: auto.Stack, work_dir: Path) -> CheckResult:
    """Run the program under mocks with the stack's config: what `pulumi up` would reject first."""
    from infra.simulate import simulate  # imports the whole program: only when this check runs

    config = plain_project_settings(stacks.read_config(stack))
    program_dir = work_dir / (yaml.safe_load((work_dir / "Pulumi.yaml").read_text()).get("main") or ".")
    try:
        with contextlib.chdir(program_dir):  # the engine runs the program there: relative paths resolve alike
            simulation = simulate(stack.name.rsplit("/", 1)[-1], config=config)
    except pulumi.RunError as error:
        return CheckResult("config validates", False, str(error).strip())
    return CheckResult("config validates", True, f"{len(simulation.resources)} resources declared under mocks")


def check_preview(stack: auto.Stack, policies: dict) -> list[CheckResult]:
    collector = PolicyCollector()
    try:
        result = stacks.preview(stack, policies, on_event=collector)
        preview = CheckResult("preview", True, _summary(result.change_summary))
    except Refused as refused:
        detail = "blocked by mandatory policy violations" if collector.mandatory else str(refused)
        preview = CheckResult("preview", False, detail)
    if not policies:
        policy = CheckResult("policy pack", True, "skipped: no policies/PulumiPolicy.yaml")
    elif collector.mandatory:
        policy = CheckResult("policy pack", False, "; ".join(collector.mandatory))
    elif not preview.go:
        policy = CheckResult("policy pack", False, "not evaluated: the preview failed")
    else:
        config_file = (policies.get("policy_pack_configs") or ["defaults"])[0]
        policy = CheckResult("policy pack", True, f"passed ({config_file}; {len(collector.advisory)} advisory)")
    return [preview, policy]


def _summary(change_summary: Optional[dict]) -> str:
    changes = {op: n for op, n in (change_summary or {}).items() if n}
    return ", ".join(f"{n} {op}" for op, n in sorted(changes.items())) or "no changes"


def check_pending_operations(stack: auto.Stack) -> list[CheckResult]:
    """Pending operations and a lock, both left by an update that died half-way."""
    recovery = f"run `python -m infra.ops recover --stack {stack.name}`"
    pending = stacks.pending_operations(stack)
    if not pending:
        state = CheckResult("no pending operations", True, "state is clean")
    else:
        names = ", ".join(str((p.get("resource") or {}).get("urn", "?")).split("::")[-1] for p in pending[:5])
        state = CheckResult("no pending operations", False,
                            f"{len(pending)} interrupted operation(s) ({names}{', ...' if len(pending) > 5 else ''}): {recovery}")
    held = stacks.locks(stack)
    if held is None:
        lock = CheckResult("not locked", True, "not readable on this backend: an update would name a lock it meets")
    elif not held:
        lock = CheckResult("not locked", True, "no lock")
    else:
        running = [h for h in held if h.here_and_alive]
        what = "; ".join(h.describe() for h in held)
        step = "an update is running: wait for it" if running else f"left by a process that is gone: {recovery}"
        lock = CheckResult("not locked", False, f"locked by {what}: {step}")
    return [state, lock]


API_CHECK = "Kubernetes API"


def kubernetes_endpoint(stack: auto.Stack, config: StackConfig, work_dir: Path) -> tuple[Optional[reach.Endpoint], str]:
    """The API server this stack deploys to and where that came from, or (None, why there is none).
    Raises reach.EndpointError when the stack names an endpoint that cannot be worked out."""
    cloud = project_setting(config, "cloud", "existing")
    path = stacks.stack_file(stack)
    stack_file = path.name if path else f"the config of stack {stack.name}"
    if cloud == "existing":
        existing = project_setting(config, "existing", {}) or {}
        if existing.get("mode", "cluster") == "render":
            return None, "none: render mode writes manifests and reaches no cluster"
        kubeconfig, source = existing_kubeconfig(existing, work_dir)
        origin = {
            "config": f"clipper:existing.kubeconfig in {stack_file}",
            "env": f"$KUBECONFIG: {stack_file} sets no clipper:existing.kubeconfig",
            "default": f"the default: {stack_file} sets no clipper:existing.kubeconfig, $KUBECONFIG is unset",
        }[source]
        return reach.read_kubeconfig(kubeconfig, existing.get("context"), origin), ""
    kubeconfig_output = stacks.outputs(stack).get("kubeconfig")
    if not kubeconfig_output:
        return None, (f"none yet: {cloud} stack with no deployed cluster; its first `pulumi up` creates one "
                      "(docs/clouds.md says how that up reaches the API)")
    try:
        document = yaml.safe_load(kubeconfig_output) if isinstance(kubeconfig_output, str) else kubeconfig_output
    except yaml.YAMLError as error:
        raise reach.EndpointError(f"output kubeconfig of stack {stack.name} is not YAML: {error}") from None
    return reach.from_kubeconfig(document, None, f"output kubeconfig of stack {stack.name}, from its last update"), ""


def check_reachable(stack: auto.Stack, config: StackConfig, work_dir: Path, timeout: float = reach.TIMEOUT_S) -> CheckResult:
    try:
        endpoint, none_because = kubernetes_endpoint(stack, config, work_dir)
    except reach.EndpointError as error:
        return CheckResult(API_CHECK, False, f"cannot be located: {error}")
    if endpoint is None:
        return CheckResult(API_CHECK, True, none_because)
    probe = reach.probe(endpoint, timeout)
    if probe.reachable is None:  # behind a proxy the probe cannot use: the preview will tell
        return CheckResult(API_CHECK, True, f"{endpoint.server} {probe.detail} ({endpoint.source})")
    if probe.reachable:
        return CheckResult(API_CHECK, True, f"{endpoint.server} answers: {probe.detail} in {probe.seconds:.2f} s ({endpoint.source})")
    return CheckResult(
        API_CHECK, False,
        f"{endpoint.server} unreachable: {probe.detail} (after {probe.seconds:.1f} s; endpoint from {endpoint.source})",
    )


DRILL_CHECK = "rollback drill"


def check_rollback_drill(stack: auto.Stack, work_dir: Path) -> CheckResult:
    """`rollback --steps 1 --dry-run`: the previous successful update can be deployed again as it ran
    (its commit is in the repository, its tree was clean, the preview passes). Writes nothing."""
    from infra.ops import rollback  # only when the drill is asked for

    return CheckResult(DRILL_CHECK, True, rollback.drill(stack, work_dir))


def _guarded(check: str, run: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    try:
        return run()
    except OpsError as error:
        return [CheckResult(check, False, str(error))]
    except auto.CommandError as error:
        return [CheckResult(check, False, str(stacks.engine_failure(check, error)))]


def run_preflight(stack_name: str, work_dir: Path, rollback_drill: bool = False) -> int:
    damaged = stacks.half_written_sidecars(stacks.workspace_of(work_dir), stack_name)
    if damaged:  # the CLI cannot read the stack at all: nothing else can run
        console.say(f"{stack_name}: NO-GO: state half-written by an interrupted update ({', '.join(p.name for p in damaged)} "
                    f"empty): run `python -m infra.ops recover --stack {stack_name}`")
        return 1
    stack = stacks.open_stack(stack_name, work_dir)
    config = stacks.read_config(stack)
    # First and alone: against an API server that does not answer, the preview would only wait
    # on it and fail later, at length. So one NO-GO line, now, and nothing else runs.
    console.step(f"Kubernetes API of {stack.name} (TCP, TLS, /readyz; {reach.TIMEOUT_S:g} s timeout each)")
    api = _guarded(API_CHECK, lambda: [check_reachable(stack, config, work_dir)])
    if not api[0].go:
        console.say(f"{stack.name}: NO-GO: {api[0].check} {api[0].detail}; no other check run")
        return 1
    results: list[CheckResult] = list(api)
    console.step("toolchain")
    results += _guarded("toolchain", lambda: check_toolchain(stack))
    console.step(f"config of {stack.name} under mocks")
    results += _guarded("config validates", lambda: [check_config(stack, work_dir)])
    console.step(f"preview of {stack.name} with the policy pack")
    policies = stacks.policy_options(stack.name, config, work_dir)
    results += _guarded("preview", lambda: check_preview(stack, policies))
    console.step(f"state of {stack.name}")
    results += _guarded("no pending operations", lambda: check_pending_operations(stack))
    if rollback_drill:
        console.step(f"rollback drill of {stack.name} (rollback --steps 1 --dry-run)")
        results += _guarded(DRILL_CHECK, lambda: [check_rollback_drill(stack, work_dir)])
    go = all(r.go for r in results)
    console.say()
    console.say(console.table(["check", "result", "detail"], [(r.check, "GO" if r.go else "NO-GO", r.detail) for r in results]))
    console.say()
    console.say(f"{stack.name}: {'GO' if go else 'NO-GO'}")
    return 0 if go else 1
