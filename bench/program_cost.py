"""Program cost under mocks: the production stack with N apps against the bare-SDK floor.

The floor registers the very same SDK resources the program registered (every Kubernetes object
and Helm chart, every resource of the stack's cloud, the providers) with the same inputs, as
plain SDK classes: no components, no config models, no Outputs. Both run in fresh processes under
the same mock monitor, so both pay the same SDK imports (the stack's cloud SDK included) and the
same mocks; what is left is the program's own cost. Both figures are per SDK resource, the same
count on both sides, so the ratio is also the ratio of wall times. Each figure is the median of
several runs, with min and max; platform and floor runs alternate.

Wall time is what a user waits, but on a shared machine it also counts the time the run waited for
a CPU other work held. CPU time (user + system of the measuring process, over the same span) is
what the run itself cost; both are reported, and the ratio of CPU times is the one that stays put
when the machine is busy.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (1, 10, 50)
# From the issue: per resource, the program within 1.5x of the floor at N <= 50 apps.
RATIO_TARGET = 1.5
RATIO_TARGET_UP_TO_APPS = 50


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.mock_run", *args], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    seconds, cpu = [r["seconds"] for r in runs], [r["cpu_seconds"] for r in runs]
    return {
        "seconds": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
        "all": [round(s, 3) for s in seconds],
        "cpu_seconds": statistics.median(cpu), "cpu_min": min(cpu), "cpu_max": max(cpu),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "resources": runs[0]["resources"], "sdk_resources": runs[0]["custom"], "runs": len(runs),
    }


def measure(n: int, repeats: int) -> dict:
    """Platform and floor runs alternate, so machine noise hits both alike."""
    platform, floor = [], []
    with tempfile.TemporaryDirectory() as tmp:
        objects = str(Path(tmp) / "objects.json")
        for _ in range(repeats):
            platform.append(_run("platform", str(n), objects))
            floor.append(_run("floor", objects))
    p, f = _summary(platform), _summary(floor)
    assert p["sdk_resources"] == f["sdk_resources"], "the floor must register what the program registered"
    count = p["sdk_resources"]
    return {"apps": n, "platform": p, "floor": f, "ms_per_resource": 1000 * p["seconds"] / count,
            "floor_ms_per_resource": 1000 * f["seconds"] / count, "ratio_to_floor": p["seconds"] / f["seconds"],
            "ratio_range": [min(a["seconds"] / b["seconds"] for a, b in zip(platform, floor)),
                            max(a["seconds"] / b["seconds"] for a, b in zip(platform, floor))],
            "cpu_ratio_to_floor": p["cpu_seconds"] / f["cpu_seconds"],
            # Interference only ever adds time: the fastest run of each side is the least disturbed.
            "cpu_ratio_of_fastest": p["cpu_min"] / f["cpu_min"],
            "cpu_ratio_range": [min(a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(platform, floor)),
                                max(a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(platform, floor))],
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def growth_exponent(small: dict, large: dict) -> float:
    """Slope of log(time) over log(N): 1.0 is linear."""
    return math.log(large["platform"]["seconds"] / small["platform"]["seconds"]) / math.log(large["apps"] / small["apps"])


def run(sizes: tuple[int, ...] = DEFAULT_SIZES, repeats: int = 3) -> dict:
    rows = []
    for n in sizes:
        print(f"[bench] program under mocks, {n} apps ({repeats} runs each, platform and floor)...", file=sys.stderr, flush=True)
        rows.append(measure(n, repeats))
    grown = [r for r in rows if r["apps"] >= 10]
    growth = None
    if len(grown) >= 2:
        growth = {"from_apps": grown[0]["apps"], "to_apps": grown[-1]["apps"],
                  "exponent": growth_exponent(grown[0], grown[-1])}
    in_range = [r for r in rows if r["apps"] <= RATIO_TARGET_UP_TO_APPS]
    targets = []
    for key, what in (("ratio_to_floor", "wall"), ("cpu_ratio_to_floor", "CPU")):
        if not in_range:
            break
        worst = max(in_range, key=lambda r: r[key])
        targets.append({"name": f"program per resource within {RATIO_TARGET:g}x of the floor ({what} time), "
                                f"N <= {RATIO_TARGET_UP_TO_APPS}",
                        "value": worst[key], "at_apps": worst["apps"], "unit": "x",
                        "target": f"<= {RATIO_TARGET:g}x", "met": worst[key] <= RATIO_TARGET})
    return {"rows": rows, "growth": growth, "repeats": repeats, "targets": targets}


def table(result: dict) -> str:
    lines = ["| apps | SDK resources (+ components) | wall s (median, min-max) | floor wall s | ms/resource | "
             "floor ms/resource | ratio, wall (range) | CPU s | floor CPU s | ratio, CPU (range) | peak RSS MiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        p, f = r["platform"], r["floor"]
        lo, hi = r["ratio_range"]
        clo, chi = r["cpu_ratio_range"]
        lines.append(f"| {r['apps']} | {p['sdk_resources']} (+{p['resources'] - p['sdk_resources']}) | "
                     f"{p['seconds']:.2f} ({p['min']:.2f}-{p['max']:.2f}) | {f['seconds']:.2f} ({f['min']:.2f}-{f['max']:.2f}) | "
                     f"{r['ms_per_resource']:.2f} | {r['floor_ms_per_resource']:.2f} | {r['ratio_to_floor']:.2f} ({lo:.2f}-{hi:.2f}) | "
                     f"{p['cpu_seconds']:.2f} | {f['cpu_seconds']:.2f} | {r['cpu_ratio_to_floor']:.2f} ({clo:.2f}-{chi:.2f}) | "
                     f"{p['peak_rss_mib']:.0f} |")
    growth = result.get("growth")
    if growth:
        lines.append(f"\ngrowth exponent N={growth['from_apps']} -> {growth['to_apps']}: {growth['exponent']:.2f}")
    for t in result.get("targets", []):
        lines.append(f"\n{t['name']}: worst {t['value']:.2f}x at N={t['at_apps']} ({'met' if t['met'] else '**not met**'})")
    loads = [r["load_average"][0] for r in result["rows"]]
    lines.append(f"\nload average (1 min) after each size: {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} cores")
    return "\n".join(lines)
