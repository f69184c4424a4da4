"""`make bench`: how preview and up cost grows with the platform, against the floors.

Prints Markdown tables and writes every figure as JSON to .state/bench/. Sections:
  program  the program under mocks, N = 1, 10, 50, 200 apps, against the bare-SDK floor
  engine   (needs the toolchain) pulumi preview/up of the local stack in render mode and
           against a local API server, versus kubectl apply --server-side of the same manifests
  tests    make test's parts, timed warm
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import program_cost

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / ".state" / "bench"


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", default=["program", "engine", "tests"],
                        choices=["program", "engine", "tests"], help="what to measure (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--apps", default="1,10,50,200", help="app counts for the program section")
    args = parser.parse_args(argv)
    result: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(f"machine: {result['machine']}")
    if "program" in args.sections:
        sizes = tuple(int(n) for n in args.apps.split(","))
        result["program"] = program_cost.run(sizes, args.repeats)
        print("\n## Program cost under mocks (production stack, N apps) vs bare pulumi_kubernetes floor\n")
        print(program_cost.table(result["program"]))
    if "engine" in args.sections or "tests" in args.sections:
        from bench import engine_cost

        if "engine" in args.sections:
            result["engine"] = engine_cost.run(args.repeats)
            print("\n## Engine\n")
            print(engine_cost.table(result["engine"]))
        if "tests" in args.sections:
            result["tests"] = engine_cost.test_times()
            print("\n## make test, warm\n")
            print(engine_cost.test_table(result["tests"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
