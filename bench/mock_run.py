"""One measured run in a fresh process (so peak RSS is this run's): either the platform program
for the production stack with N apps, or the floor — the very same custom resources (Kubernetes
objects, Helm charts, the cloud's resources, providers) registered as plain SDK resources with
their recorded inputs: no components, no config models, no Outputs between them.

Both run under the same mock monitor (infra.simulate's, which records every registration), so
the difference between them is the program's own cost, not the mocks'.

    python -m bench.mock_run platform N OUT.json   # also writes the resources for the floor run
    python -m bench.mock_run floor IN.json
Prints one JSON line: seconds (wall time of the program run only), cpu_seconds (this process's CPU
time over the same span: what the run cost, whatever else the machine was doing), peak_rss_mib,
resources, custom (resources that are not components: what the floor registers).
"""
from __future__ import annotations

import copy
import importlib
import json
import resource
import sys
import time

import pulumi
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.simulate import _Mocks, _RecordingMonitor, simulate, stack_config

# Pulumi package name in a type token -> its Python SDK module.
SDKS = {"kubernetes": "pulumi_kubernetes", "gcp": "pulumi_gcp", "aws": "pulumi_aws",
        "azure-native": "pulumi_azure_native"}


def apps_override(n: int) -> dict:
    """The production stack with N copies of its backend app (config override, no file edits)."""
    backend = stack_config("production")["apps"]["backend"]
    apps = {f"app-{i:03d}": {**copy.deepcopy(backend), "host": f"app-{i:03d}.clpr.tv"} for i in range(n)}
    return {"apps": apps, "network.appTraffic": [], "network.egress": [
        {"name": "database", "cidr": "10.20.0.0/24", "ports": [5432]}]}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_floor(type_token: str) -> bool:
    """Everything the floor registers: every SDK resource, i.e. all but our own components."""
    return type_token.split(":", 1)[0] in SDKS or type_token.startswith("pulumi:providers:")


def sdk_class(type_token: str):
    """The plain SDK class of a type token, or None for a Kubernetes kind the SDK has no class for
    (CRD kinds: registered as CustomResource). Examples:
    kubernetes:apps/v1:Deployment -> pulumi_kubernetes.apps.v1.Deployment,
    kubernetes:helm.sh/v4:Chart -> pulumi_kubernetes.helm.v4.Chart,
    gcp:compute/network:Network -> pulumi_gcp.compute.Network,
    azure-native:keyvault:Vault -> pulumi_azure_native.keyvault.Vault,
    pulumi:providers:gcp -> pulumi_gcp.Provider."""
    if type_token.startswith("pulumi:providers:"):
        return importlib.import_module(SDKS[type_token.rsplit(":", 1)[1]]).Provider
    package, module, kind = type_token.split(":")
    sdk = importlib.import_module(SDKS[package])
    if package == "kubernetes":
        group, version = module.split("/")
        return getattr(getattr(getattr(sdk, group.split(".")[0].replace("-", "_"), None), version, None), kind, None)
    return getattr(getattr(sdk, module.split("/")[0]), kind)


def platform(n: int, out: str) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    sim = simulate("production", apps_override(n))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    objects = [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in sim.resources if in_floor(r.type)]
    with open(out, "w") as handle:
        json.dump(objects, handle)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": _peak_rss_mib(), "resources": len(sim.resources),
            "custom": len(objects)}


def floor(path: str) -> dict:
    with open(path) as handle:
        objects = json.load(handle)
    settings.ROOT.set(None)
    monitor = _RecordingMonitor(_Mocks())
    mocks.set_mocks(monitor.mocks, project="clipper", stack="production", preview=False, monitor=monitor)

    def program():
        for obj in objects:
            cls = sdk_class(obj["type"])
            if cls is None:  # a custom resource's kind: registered by its type token with its fields as they are
                pulumi.CustomResource(obj["type"], obj["name"], obj["inputs"])
            else:
                inputs = {k: v for k, v in obj["inputs"].items() if k not in ("apiVersion", "kind")}
                cls(obj["name"], **{pulumi_name(k): v for k, v in inputs.items()})

    start, cpu = time.perf_counter(), time.process_time()
    _sync_await(run_pulumi_func(program))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if len(monitor.recorded) != len(objects):
        raise SystemExit(f"floor registered {len(monitor.recorded)} resources, expected {len(objects)}")
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": _peak_rss_mib(), "resources": len(objects),
            "custom": len(objects)}


def pulumi_name(wire: str) -> str:
    """camelCase wire name -> the SDK's snake_case argument name."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in wire)


if __name__ == "__main__":
    mode = sys.argv[1]
    result = platform(int(sys.argv[2]), sys.argv[3]) if mode == "platform" else floor(sys.argv[2])
    print(json.dumps(result))
