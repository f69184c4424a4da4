"""Program cost under mocks: the production stack with N apps against the bare-SDK floor.

Each figure is the median of several fresh-process runs, with min and max.
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.mock_run", *args], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    return {
        "seconds": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "resources": runs[0]["resources"], "runs": len(runs),
    }


def measure(n: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        objects = str(Path(tmp) / "objects.json")
        platform = [_run("platform", str(n), objects) for _ in range(repeats)]
        floor = [_run("floor", objects) for _ in range(repeats)]
    p, f = _summary(platform), _summary(floor)
    per_resource = p["seconds"] / p["resources"]
    floor_per_resource = f["seconds"] / f["resources"]
    return {"apps": n, "platform": p, "floor": f, "ms_per_resource": 1000 * per_resource,
            "floor_ms_per_resource": 1000 * floor_per_resource, "ratio_to_floor": per_resource / floor_per_resource}


def growth_exponent(small: dict, large: dict) -> float:
    """Slope of log(time) over log(N): 1.0 is linear."""
    return math.log(large["platform"]["seconds"] / small["platform"]["seconds"]) / math.log(large["apps"] / small["apps"])


def run(sizes: tuple[int, ...] = (1, 10, 50, 200), repeats: int = 3) -> dict:
    rows = []
    for n in sizes:
        print(f"[bench] program under mocks, {n} apps ({repeats} runs each, platform and floor)...", file=sys.stderr, flush=True)
        rows.append(measure(n, repeats))
    by_n = {r["apps"]: r for r in rows}
    exponent = growth_exponent(by_n[10], by_n[200]) if 10 in by_n and 200 in by_n else None
    return {"rows": rows, "growth_exponent_10_to_200": exponent}


def table(result: dict) -> str:
    lines = ["| apps | resources | wall s (median, min-max) | peak RSS MiB | ms/resource | floor ms/resource | ratio |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        p = r["platform"]
        lines.append(f"| {r['apps']} | {p['resources']} | {p['seconds']:.2f} ({p['min']:.2f}-{p['max']:.2f}) | "
                     f"{p['peak_rss_mib']:.0f} | {r['ms_per_resource']:.2f} | {r['floor_ms_per_resource']:.2f} | "
                     f"{r['ratio_to_floor']:.2f} |")
    if result["growth_exponent_10_to_200"] is not None:
        lines.append(f"\ngrowth exponent N=10 -> 200: {result['growth_exponent_10_to_200']:.2f}")
    return "\n".join(lines)
