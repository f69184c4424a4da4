"""One measured run in a fresh process (so peak RSS is this run's): either the platform program
for the production stack with N apps, or the floor — the same Kubernetes objects registered as
plain pulumi_kubernetes resources, no components, no config models.

    python -m bench.mock_run platform N OUT.json   # also writes the objects for the floor run
    python -m bench.mock_run floor IN.json
Prints one JSON line: seconds (program run only), peak_rss_mib, resources.
"""
from __future__ import annotations

import copy
import json
import resource
import sys
import time

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.simulate import simulate, stack_config


def apps_override(n: int) -> dict:
    """The production stack with N copies of its backend app (config override, no file edits)."""
    backend = stack_config("production")["apps"]["backend"]
    apps = {f"app-{i:03d}": {**copy.deepcopy(backend), "host": f"app-{i:03d}.clpr.tv"} for i in range(n)}
    return {"apps": apps, "network.appTraffic": [], "network.egress": [
        {"name": "database", "cidr": "10.20.0.0/24", "ports": [5432]}]}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _plain_class(type_token: str):
    """kubernetes:apps/v1:Deployment -> k8s.apps.v1.Deployment; None for CRD kinds."""
    _, group_version, kind = type_token.split(":")
    group, version = group_version.split("/")
    package = getattr(k8s, group.split(".")[0], None)
    return getattr(getattr(package, version, None), kind, None)


def platform(n: int, out: str) -> dict:
    start = time.perf_counter()
    sim = simulate("production", apps_override(n))
    seconds = time.perf_counter() - start
    # The floor is the Kubernetes layer; cloud resources (cloud: gke in the stack file) are not in it.
    objects = [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in sim.resources
               if r.type.startswith(("kubernetes:", "pulumi:providers:kubernetes"))]
    with open(out, "w") as handle:
        json.dump(objects, handle)
    return {"seconds": seconds, "peak_rss_mib": _peak_rss_mib(), "resources": len(sim.resources)}


class _EchoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args):
        return {}


def floor(path: str) -> dict:
    with open(path) as handle:
        objects = json.load(handle)
    settings.ROOT.set(None)
    mocks.set_mocks(_EchoMocks(), project="clipper", stack="production", preview=False)

    def program():
        for obj in objects:
            inputs = {k: v for k, v in obj["inputs"].items() if k not in ("apiVersion", "kind")}
            if obj["type"].startswith("pulumi:providers:"):
                k8s.Provider(obj["name"], render_yaml_to_directory="/tmp/unused")
                continue
            cls = _plain_class(obj["type"])
            if cls is None:
                _, api_version, kind = obj["type"].split(":")
                k8s.apiextensions.CustomResource(obj["name"], api_version=api_version, kind=kind, **inputs)
            else:
                cls(obj["name"], **{pulumi_name(k): v for k, v in inputs.items()})

    start = time.perf_counter()
    _sync_await(run_pulumi_func(program))
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib(), "resources": len(objects)}


def pulumi_name(wire: str) -> str:
    """camelCase wire name -> the SDK's snake_case argument name."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in wire)


if __name__ == "__main__":
    mode = sys.argv[1]
    result = platform(int(sys.argv[2]), sys.argv[3]) if mode == "platform" else floor(sys.argv[2])
    print(json.dumps(result))
