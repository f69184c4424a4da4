"""An update that dies half-way, on a local API server: `pulumi up` of the local stack in cluster
mode, SIGKILLed with its whole process group (the CLI, the Python language host and program, the
Kubernetes provider) once the state holds a random number of resources; then `preflight` says
NO-GO naming the recovery step, `python -m infra.ops recover --stack local --yes` cleans up, and
a following `up` and `preview` show that nothing was lost, duplicated or orphaned: every
Kubernetes object in the state exists on the API server, no object is in the state twice, and
every object of the kinds the program manages in its namespaces is in the state.

The kill points are chosen at random on each run and printed (`-s`); CLIPPER_KILL_SEEDS=7,42
replays given ones. Each case starts from a fresh stack and ends with `pulumi destroy`.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from infra.ops.recover import kubectl_kind
from tests.engine.engine import ROOT, Project, kubectl

STACK = "local"
SYSTEM_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
DEFAULT_OBJECTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}


def _seeds() -> list[int]:
    given = os.environ.get("CLIPPER_KILL_SEEDS")
    if given:
        return [int(seed) for seed in given.split(",")]
    return [random.SystemRandom().randrange(10_000) for _ in range(2)]


def checkpoint(project: Project) -> dict:
    """The deployment the file backend holds now (it is rewritten at every step of an update)."""
    path = Path(project.env["PULUMI_BACKEND_URL"][len("file://"):]) / ".pulumi" / "stacks" / "clipper" / f"{STACK}.json"
    try:
        return json.loads(path.read_text())["checkpoint"].get("latest") or {}
    except (OSError, ValueError, KeyError):
        return {}  # not written yet, or caught mid-write


def up_killed_after(project: Project, resources: int, extra_delay: float) -> dict:
    """Start `pulumi up`, SIGKILL its process group once the state holds `resources` resources
    (plus `extra_delay` seconds); the checkpoint as the kill left it."""
    command = ["pulumi", "up", "--stack", STACK, "--yes", "--skip-preview", "--non-interactive"]
    up = subprocess.Popen(command, cwd=project.dir, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while len(checkpoint(project).get("resources") or []) < resources:
        assert up.poll() is None, f"the up ended before {resources} resources were in the state:\n{up.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "the up never got that far"
        time.sleep(0.05)
    time.sleep(extra_delay)
    assert up.poll() is None, "the up finished before the kill"
    os.killpg(up.pid, signal.SIGKILL)
    up.wait(timeout=30)
    left = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes of the killed up still run: {left.stdout}"
    return checkpoint(project)


def state_objects(project: Project) -> list[tuple[str, str]]:
    """(type token, id) of every Kubernetes object the state manages."""
    deployment = project.ok("stack", "export", "--stack", STACK).json()["deployment"]
    return [(r["type"], r["id"]) for r in deployment.get("resources") or []
            if r["type"].startswith("kubernetes:") and r.get("custom") and r.get("id")]


def cluster_objects(kubeconfig: Path, tokens: set[str], namespaces: set[str]) -> set[tuple[str, str]]:
    """(type token, id) of every object of these kinds in these namespaces (and cluster-wide for
    cluster-scoped kinds), bar those a controller owns and those Kubernetes makes itself."""
    found = set()
    for token in tokens:
        items = json.loads(kubectl(kubeconfig, "get", kubectl_kind(token), "-A", "-o", "json"))["items"]
        for item in items:
            metadata = item["metadata"]
            namespace = metadata.get("namespace")
            if metadata.get("ownerReferences") or (item["kind"], metadata["name"]) in DEFAULT_OBJECTS:
                continue
            if namespace and namespace not in namespaces:
                continue
            if not namespace and (metadata["name"] in SYSTEM_NAMESPACES or metadata["name"].startswith(("kube-", "system:"))):
                continue  # what the API server makes for itself
            found.add((token, f"{namespace}/{metadata['name']}" if namespace else metadata["name"]))
    return found


@pytest.mark.parametrize("seed", _seeds())
def test_up_killed_half_way_is_recovered_without_loss_duplicates_or_orphans(own_cluster, bin_dir, tmp_path, seed):
    project = Project.copy_of(ROOT, tmp_path, bin_dir, with_policies=False)
    project.init(STACK)
    project.set(STACK, "existing", {"mode": "cluster", "kubeconfig": str(own_cluster)})
    rng = random.Random(seed)
    resources, extra_delay = rng.randint(2, 30), round(rng.uniform(0, 0.5), 2)
    print(f"\nkill point (seed {seed}): SIGKILL once the state holds {resources} resources, + {extra_delay}s")
    killed = up_killed_after(project, resources, extra_delay)
    pending = [(op["type"], op["resource"]["urn"].split("::")[-1]) for op in killed.get("pending_operations") or []]
    print(f"killed with {len(killed.get('resources') or [])} resources in the state, pending: {pending}")

    preflight = project.ops("preflight", "--stack", STACK)
    print(preflight.output)
    assert preflight.returncode == 1 and f"{STACK}: NO-GO" in preflight.stdout
    assert f"run `python -m infra.ops recover --stack {STACK}`" in preflight.stdout
    assert "left by a process that is gone" in preflight.stdout or "NO-GO: state half-written" in preflight.stdout

    recovered = project.ops("recover", "--stack", STACK, "--yes")
    print(recovered.output)
    assert recovered.returncode == 0, recovered.output
    assert f"recovered {STACK}: 1 stale lock(s) removed" in recovered.stdout  # the killed up's lock
    after = checkpoint(project)
    assert after.get("pending_operations") in (None, [])
    imported = [line.split()[0] for line in recovered.stdout.splitlines() if " adopt: " in line]
    in_state_now = {r["urn"].split("::")[-1] for r in after.get("resources") or []}
    assert {urn.split("::")[-1] for urn in imported} <= in_state_now, "an existing object's pending create was not imported"
    assert project.ops("recover", "--stack", STACK).stdout.startswith("nothing to recover")

    project.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=900)
    project.ok("preview", "--stack", STACK, "--expect-no-changes")

    in_state = state_objects(project)
    assert len(in_state) == len(set(in_state)), "an object is in the state twice"
    tokens = {token for token, _ in in_state}
    namespaces = {object_id.split("/")[0] for _, object_id in in_state if "/" in object_id}
    live = cluster_objects(own_cluster, tokens, namespaces)
    assert set(in_state) - live == set(), "in the state, not on the API server (lost)"
    assert live - set(in_state) == set(), "on the API server, not in the state (orphaned)"
    print(f"after recover + up: {len(in_state)} objects in the state, all live, none orphaned")
    project.ok("destroy", "--stack", STACK, "--yes", "--skip-preview", timeout=900)


UNREACHABLE = "s3://clipper-state?endpoint=http://127.0.0.1:9&region=us-east-1&use_path_style=true"


def test_recover_bad_input_and_nothing_to_do(project):
    """No cluster needed: the local stack in render mode, deployed once, with nothing interrupted."""
    project.init(STACK)
    project.ok("up", "--stack", STACK, "--yes", "--skip-preview")

    clean = project.ops("recover", "--stack", STACK)
    assert clean.returncode == 0 and clean.stdout.strip() == f"nothing to recover: {STACK} has no pending operations and no lock"
    unknown = project.ops("recover", "--stack", "nope", "--yes")
    assert unknown.returncode == 2 and "recover: error: unknown stack 'nope'" in unknown.stderr, unknown.output

    project.env.update(PULUMI_BACKEND_URL=UNREACHABLE, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                       AWS_EC2_METADATA_DISABLED="true")
    unreachable = project.ops("recover", "--stack", STACK, "--yes", timeout=300)
    print(unreachable.output)
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.output, unreachable.output
    assert unreachable.stderr.startswith(f"python -m infra.ops recover: refused: opening stack {STACK} failed:")
