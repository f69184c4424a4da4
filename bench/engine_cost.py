"""Engine cost: the real Pulumi CLI on the local stack, in render mode and against a local API
server, versus `kubectl apply --server-side` of the same manifests; and make test's parts, warm.

Everything runs on throwaway copies of the project (tests.engine.engine.Project, each with its
own file backend), so the repo's stack files and state are never touched. Every local cluster
started here is fresh, private to one measured run, and stopped in a `finally`.

Each engine figure is the median of several runs, with min and max. Fairness of the cluster
comparison: each measured `pulumi up` and each measured `kubectl apply` gets a fresh cluster
(starting one takes a few seconds and is not part of any figure), and the two alternate within a
repeat, so machine noise hits both alike. Pulumi waits for Deployments to be Ready, the migration
Job to complete and Services to have endpoints; `kubectl apply` waits for nothing, so it is
reported both alone and followed by `kubectl wait` for the Deployments and the Job.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from infra.rendered import rendered_objects
from tests.engine.engine import Project, toolchain_bin

ROOT = Path(__file__).resolve().parent.parent
STACK = "local"
APP_NAMESPACE = "clipper-local"
RENDER_DIR = Path(".state/render/local")  # existing.renderDir of Pulumi.local.yaml

# Targets from the issue.
NOOP_PREVIEW_TARGET_S = 10.0
CLUSTER_RATIO_TARGET = 3.0
UNIT_POLICY_TARGET_S = 120.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _summary(seconds: list[float]) -> dict:
    return {"seconds": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
            "runs": len(seconds), "all": [round(s, 3) for s in seconds]}


def _full_bin() -> Path:
    """The toolchain bin dir with the engine and the cluster binaries (what `make test` puts on PATH)."""
    found = subprocess.run(["bash", str(ROOT / "toolchain" / "build.sh"), "--print-bin"],
                           capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip():
        return Path(found.stdout.strip())
    engine = toolchain_bin()
    if engine is None:
        raise SystemExit("bench engine: the Pulumi toolchain is not built: run `make toolchain`")
    return engine


def _timed(project: Project, *args: str, timeout: int = 900) -> float:
    start = time.perf_counter()
    result = project.pulumi(*args, timeout=timeout)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"pulumi {' '.join(args)} failed (exit {result.returncode}):\n{result.output[-4000:]}")
    return seconds


def _new_project(base: Path, bin_dir: Path) -> Project:
    project = Project.copy_of(ROOT, base, bin_dir, with_policies=False)
    project.init(STACK)
    return project


def _k8s_resource_count(project: Project) -> int:
    state = json.loads(project.ok("stack", "export", "--stack", STACK).stdout)["deployment"]
    return sum(1 for r in state.get("resources") or []
               if r["type"].startswith("kubernetes:") and not r["type"].startswith("pulumi:providers:"))


# ---- section 2: render mode --------------------------------------------------------------

def render_mode(bin_dir: Path, repeats: int, keep_rendered: Path) -> dict:
    """preview and up of the local stack in render mode (no cluster): first run and no-op."""
    times: dict[str, list[float]] = {"first_preview": [], "first_up": [], "noop_up": [], "noop_preview": []}
    objects = resources = None
    for i in range(repeats):
        log(f"render mode, run {i + 1}/{repeats}: preview, up, no-op up, no-op preview on a fresh stack")
        with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
            project = _new_project(Path(tmp), bin_dir)
            times["first_preview"].append(_timed(project, "preview", "--stack", STACK))
            times["first_up"].append(_timed(project, "up", "--stack", STACK, "--yes", "--skip-preview"))
            times["noop_up"].append(_timed(project, "up", "--stack", STACK, "--yes", "--skip-preview",
                                           "--expect-no-changes"))
            times["noop_preview"].append(_timed(project, "preview", "--stack", STACK, "--expect-no-changes"))
            if i == 0:
                rendered = project.dir / RENDER_DIR
                shutil.copytree(rendered, keep_rendered)
                objects = len(rendered_objects(rendered))
                resources = _k8s_resource_count(project)
    result = {name: _summary(values) for name, values in times.items()}
    result.update({"rendered_objects": objects, "kubernetes_resources": resources})
    return result


# ---- section 3: local cluster ------------------------------------------------------------

@contextmanager
def local_cluster(base: Path, bin_dir: Path) -> Iterator[tuple[Path, float]]:
    """A fresh local API server (etcd, kube-apiserver, controllers, kwok) in base; always stopped."""
    cluster_dir = base / "cluster"
    env = {**os.environ, "CLIPPER_CLUSTER_DIR": str(cluster_dir)}
    # A user's own pulumi has no cluster binaries beside it: cluster.sh then finds ours itself
    # (`make bench` builds only the cluster part of the toolchain for such users).
    if (bin_dir / "kube-apiserver").is_file():
        env["CLIPPER_TOOLCHAIN_BIN"] = str(bin_dir)
    script = ROOT / "toolchain" / "cluster.sh"
    start = time.perf_counter()
    try:
        up = subprocess.run(["bash", str(script), "up"], env=env, capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            raise RuntimeError(f"local cluster did not start:\n{up.stderr[-3000:]}")
        yield cluster_dir / "kubeconfig", time.perf_counter() - start
    finally:
        subprocess.run(["bash", str(script), "down"], env=env, capture_output=True, text=True, timeout=120)


def _kubectl(kubeconfig: Path, *args: str, timeout: int = 300) -> None:
    done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def _apply_plan(rendered: Path) -> tuple[list[Path], list[Path], bool]:
    """(files to apply first: CRDs and Namespaces, the rest, whether there are CRDs)."""
    crds = sorted((rendered / "0-crd").rglob("*.yaml")) if (rendered / "0-crd").is_dir() else []
    first, rest = list(crds), []
    for path in sorted((rendered / "1-manifest").rglob("*.yaml")):
        kinds = {d.get("kind") for d in yaml.safe_load_all(path.read_text()) if d}
        (first if kinds == {"Namespace"} else rest).append(path)
    return first, rest, bool(crds)


def kubectl_apply(kubeconfig: Path, rendered: Path) -> tuple[float, float]:
    """`kubectl apply --server-side` of the rendered manifests (CRDs and Namespaces first), then
    `kubectl wait` for what Pulumi waits for. Returns (apply seconds, apply + wait seconds)."""
    first, rest, has_crds = _apply_plan(rendered)
    start = time.perf_counter()
    _kubectl(kubeconfig, "apply", "--server-side", *(a for p in first for a in ("-f", str(p))))
    if has_crds:
        _kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    _kubectl(kubeconfig, "apply", "--server-side", *(a for p in rest for a in ("-f", str(p))))
    applied = time.perf_counter() - start
    _kubectl(kubeconfig, "wait", "--for=condition=Available", "deployment", "--all", "-n", APP_NAMESPACE,
             "--timeout=300s")
    _kubectl(kubeconfig, "wait", "--for=condition=Complete", "job", "--all", "-n", APP_NAMESPACE, "--timeout=300s")
    return applied, time.perf_counter() - start


def _cluster_project(base: Path, bin_dir: Path, kubeconfig: Path) -> Project:
    project = _new_project(base, bin_dir)
    project.set(STACK, "existing", {"mode": "cluster", "kubeconfig": str(kubeconfig)})
    return project


def profile_up(bin_dir: Path) -> dict:
    """One extra `pulumi up --json` on a fresh cluster, engine events timed as they arrive: where
    the wall time goes (startup before the first resource, each resource, the tail)."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp, \
            local_cluster(Path(tmp), bin_dir) as (kubeconfig, _):
        project = _cluster_project(Path(tmp), bin_dir, kubeconfig)
        command = ["pulumi", "up", "--stack", STACK, "--yes", "--skip-preview", "--json", "--non-interactive"]
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=project.dir, env=project.env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        began: dict[str, float] = {}
        spans: list[dict] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - start
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "resourcePreEvent" in event:
                began.setdefault(event["resourcePreEvent"]["metadata"]["urn"], now)
            elif "resOutputsEvent" in event:
                meta = event["resOutputsEvent"]["metadata"]
                urn = meta["urn"]
                if urn in began:
                    spans.append({"type": meta["type"], "name": urn.split("::")[-1], "start": round(began[urn], 2),
                                  "end": round(now, 2), "seconds": round(now - began[urn], 2)})
        code = proc.wait(timeout=900)
        total = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"profiled pulumi up failed (exit {code})")
    leaves = [s for s in spans if s["type"].startswith("kubernetes:") and not s["type"].startswith("pulumi:")]
    first = min((s["start"] for s in spans), default=0.0)
    last = max((s["end"] for s in leaves), default=total)
    return {
        "seconds": round(total, 2),
        "to_first_resource": round(first, 2),
        "last_kubernetes_resource_done": round(last, 2),
        "tail_after_last_resource": round(total - last, 2),
        "slowest": sorted(leaves, key=lambda s: -s["seconds"])[:8],
        "spans": spans,
    }


def cluster_mode(bin_dir: Path, repeats: int, rendered: Path) -> dict:
    times: dict[str, list[float]] = {"cluster_start": [], "first_up": [], "noop_up": [], "noop_preview": [],
                                     "kubectl_apply": [], "kubectl_apply_wait": []}
    resources = None
    for i in range(repeats):
        log(f"cluster mode, run {i + 1}/{repeats}: pulumi up, no-op up, no-op preview on a fresh local cluster")
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, \
                local_cluster(Path(tmp), bin_dir) as (kubeconfig, started):
            times["cluster_start"].append(started)
            project = _cluster_project(Path(tmp), bin_dir, kubeconfig)
            times["first_up"].append(_timed(project, "up", "--stack", STACK, "--yes", "--skip-preview"))
            times["noop_up"].append(_timed(project, "up", "--stack", STACK, "--yes", "--skip-preview",
                                           "--expect-no-changes"))
            times["noop_preview"].append(_timed(project, "preview", "--stack", STACK, "--expect-no-changes"))
            if i == 0:
                resources = _k8s_resource_count(project)
        log(f"cluster mode, run {i + 1}/{repeats}: kubectl apply --server-side (+ wait) on a fresh local cluster")
        with tempfile.TemporaryDirectory(prefix="bench-kubectl-") as tmp, \
                local_cluster(Path(tmp), bin_dir) as (kubeconfig, started):
            times["cluster_start"].append(started)
            applied, waited = kubectl_apply(kubeconfig, rendered)
            times["kubectl_apply"].append(applied)
            times["kubectl_apply_wait"].append(waited)
    result = {name: _summary(values) for name, values in times.items()}
    up = result["first_up"]["seconds"]
    paired = list(zip(times["first_up"], times["kubectl_apply"], times["kubectl_apply_wait"]))
    result["ratio_to_apply"] = {"ratio": up / result["kubectl_apply"]["seconds"],
                                "min": min(u / a for u, a, _ in paired), "max": max(u / a for u, a, _ in paired)}
    result["ratio_to_apply_wait"] = {"ratio": up / result["kubectl_apply_wait"]["seconds"],
                                     "min": min(u / w for u, _, w in paired), "max": max(u / w for u, _, w in paired)}
    result["kubernetes_resources"] = resources
    result["rendered_objects"] = len(rendered_objects(rendered))
    return result


def _targets(render: dict, cluster: dict) -> list[dict]:
    return [
        {"name": "no-op pulumi preview, local stack (render mode)", "value": render["noop_preview"]["seconds"],
         "unit": "s", "target": f"< {NOOP_PREVIEW_TARGET_S:g} s",
         "met": render["noop_preview"]["seconds"] < NOOP_PREVIEW_TARGET_S},
        {"name": "no-op pulumi preview, local stack in cluster mode", "value": cluster["noop_preview"]["seconds"],
         "unit": "s", "target": f"< {NOOP_PREVIEW_TARGET_S:g} s",
         "met": cluster["noop_preview"]["seconds"] < NOOP_PREVIEW_TARGET_S},
        {"name": "pulumi up / kubectl apply --server-side", "value": cluster["ratio_to_apply"]["ratio"],
         "unit": "x", "target": f"<= {CLUSTER_RATIO_TARGET:g}x",
         "met": cluster["ratio_to_apply"]["ratio"] <= CLUSTER_RATIO_TARGET},
        {"name": "pulumi up / (kubectl apply + wait)", "value": cluster["ratio_to_apply_wait"]["ratio"],
         "unit": "x", "target": f"<= {CLUSTER_RATIO_TARGET:g}x",
         "met": cluster["ratio_to_apply_wait"]["ratio"] <= CLUSTER_RATIO_TARGET},
    ]


def run(repeats: int = 3) -> dict:
    bin_dir = _full_bin()
    version = subprocess.run([str(bin_dir / "pulumi"), "version"], capture_output=True, text=True).stdout.strip()
    log(f"engine: pulumi {version} from {bin_dir}, {repeats} runs per figure; load average {_load()}")
    started = time.perf_counter()
    load = {"start": _load()}
    with tempfile.TemporaryDirectory(prefix="bench-rendered-") as keep:
        rendered = Path(keep) / "render"
        render = render_mode(bin_dir, repeats, rendered)
        load["after_render"] = _load()
        cluster = cluster_mode(bin_dir, repeats, rendered)
        load["after_cluster"] = _load()
    log("cluster mode: one extra profiled pulumi up (--json, events timed on arrival)")
    profile = profile_up(bin_dir)
    load["end"] = _load()
    result = {"pulumi_version": version, "repeats": repeats, "render": render, "cluster": cluster,
              "profile_cluster_up": profile, "targets": _targets(render, cluster), "load_average": load,
              "seconds": round(time.perf_counter() - started, 1)}
    log(f"engine section done in {result['seconds']:.0f}s")
    return result


# ---- tables ------------------------------------------------------------------------------

def _fig(s: dict) -> str:
    return f"{s['seconds']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def _met(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "**no**")


def table(result: dict) -> str:
    r, c = result["render"], result["cluster"]
    t = {x["name"]: x for x in result["targets"]}
    preview_t = t["no-op pulumi preview, local stack (render mode)"]
    cpreview_t = t["no-op pulumi preview, local stack in cluster mode"]
    ratio_t, ratio_wait_t = t["pulumi up / kubectl apply --server-side"], t["pulumi up / (kubectl apply + wait)"]
    rows = [
        ("render", "pulumi preview, first run (empty stack)", _fig(r["first_preview"]), "", None),
        ("render", "pulumi up, first run", _fig(r["first_up"]), "", None),
        ("render", "pulumi up, no-op", _fig(r["noop_up"]), "", None),
        ("render", "pulumi preview, no-op", _fig(r["noop_preview"]), preview_t["target"], preview_t["met"]),
        ("cluster", "pulumi up, first run (fresh cluster)", _fig(c["first_up"]), "", None),
        ("cluster", "kubectl apply --server-side (fresh cluster)", _fig(c["kubectl_apply"]), "", None),
        ("cluster", "kubectl apply + wait Deployments Available, Job Complete", _fig(c["kubectl_apply_wait"]), "", None),
        ("cluster", "ratio pulumi up / kubectl apply",
         f"{c['ratio_to_apply']['ratio']:.1f}x ({c['ratio_to_apply']['min']:.1f}-{c['ratio_to_apply']['max']:.1f})",
         ratio_t["target"], ratio_t["met"]),
        ("cluster", "ratio pulumi up / (kubectl apply + wait)",
         f"{c['ratio_to_apply_wait']['ratio']:.1f}x "
         f"({c['ratio_to_apply_wait']['min']:.1f}-{c['ratio_to_apply_wait']['max']:.1f})",
         ratio_wait_t["target"], ratio_wait_t["met"]),
        ("cluster", "pulumi up, no-op", _fig(c["noop_up"]), "", None),
        ("cluster", "pulumi preview, no-op", _fig(c["noop_preview"]), cpreview_t["target"], cpreview_t["met"]),
        ("cluster", "(start a fresh local cluster: in no figure)", _fig(c["cluster_start"]), "", None),
    ]
    lines = ["| mode | measurement | wall s (median, min-max) | target | met |",
             "| --- | --- | ---: | --- | --- |"]
    lines += [f"| {m} | {what} | {fig} | {target} | {_met(met)} |" for m, what, fig, target, met in rows]
    lines.append(f"\n{result['repeats']} runs per figure; ratios are of medians (range over paired runs). "
                 f"Objects: {r['rendered_objects']} rendered manifests, {c['kubernetes_resources']} Kubernetes "
                 f"resources in the cluster-mode stack. Load average (1/5/15 min) start "
                 f"{result['load_average']['start']}, end {result['load_average']['end']} on "
                 f"{os.cpu_count()} cores.")
    p = result["profile_cluster_up"]
    slow = ", ".join(f"{s['type'].split(':')[-1]} {s['name']} {s['seconds']:.1f}s" for s in p["slowest"][:5])
    lines.append(f"\nProfiled cluster-mode pulumi up ({p['seconds']:.1f}s, one extra run): first resource event at "
                 f"{p['to_first_resource']:.1f}s, last Kubernetes resource done at "
                 f"{p['last_kubernetes_resource_done']:.1f}s, exit {p['tail_after_last_resource']:.1f}s later. "
                 f"Slowest resources: {slow}.")
    return "\n".join(lines)


# ---- section 4: make test's parts --------------------------------------------------------

PARTS = (("unit", "tests/unit"), ("policy", "tests/policy"), ("engine", "tests/engine"))
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)\b")


def parse_counts(line: str) -> dict:
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for number, word in _COUNT.findall(line):
        key = {"error": "errors", "warning": "warnings"}.get(word, word)
        counts[key] = counts.get(key, 0) + int(number)
    return counts


def test_times() -> dict:
    """make test's three parts, each timed once (warm: venvs and toolchain already built)."""
    bin_dir = _full_bin()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CLIPPER_REQUIRE_ENGINE": "1",
           "VIRTUAL_ENV": str(ROOT / ".venv")}
    python = ROOT / ".venv" / "bin" / "python"
    logs = ROOT / ".state" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, path in PARTS:
        log(f"make test, {name} part: pytest {path} -q (once; load average {_load()})")
        start = time.perf_counter()
        done = subprocess.run([str(python), "-m", "pytest", path, "-q"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=3600, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        (logs / f"tests-{name}.log").write_text(done.stdout + done.stderr)
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        last = lines[-1].strip("= ") if lines else ""
        parts.append({"part": name, "path": path, "seconds": round(seconds, 2), "returncode": done.returncode,
                      "last_line": last, **parse_counts(last)})
        log(f"make test, {name} part: {seconds:.0f}s, {last}")
    unit_policy = sum(p["seconds"] for p in parts if p["part"] in ("unit", "policy"))
    return {"parts": parts, "unit_plus_policy_seconds": round(unit_policy, 2),
            "target_unit_plus_policy": f"< {UNIT_POLICY_TARGET_S:g} s",
            "met": unit_policy < UNIT_POLICY_TARGET_S,
            "total_seconds": round(sum(p["seconds"] for p in parts), 2),
            "logs": str(logs.relative_to(ROOT)), "load_average_end": _load()}


def test_table(result: dict) -> str:
    lines = ["| part | wall s | passed | failed | skipped | errors | exit | target | met |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for p in result["parts"]:
        lines.append(f"| {p['part']} | {p['seconds']:.1f} | {p['passed']} | {p['failed']} | {p['skipped']} | "
                     f"{p['errors']} | {p['returncode']} |  |  |")
    lines.append(f"| unit + policy | {result['unit_plus_policy_seconds']:.1f} |  |  |  |  |  | "
                 f"{result['target_unit_plus_policy']} | {_met(result['met'])} |")
    lines.append(f"| all three | {result['total_seconds']:.1f} |  |  |  |  |  |  |  |")
    lines.append(f"\nEach part run once (`pytest <part> -q`, CLIPPER_REQUIRE_ENGINE=1, toolchain on PATH); "
                 f"output in {result['logs']}/tests-<part>.log.")
    return "\n".join(lines)
