"""`make bench`: how preview and up cost grows with the platform, against the floors.

Prints Markdown tables and writes every figure as JSON to .state/bench/bench-<time>.json.
Sections (default: program and engine, which is what `make bench` runs):
  program  the program under mocks, N = 1, 10, 50 apps (--apps), against the bare-SDK floor
  engine   (needs the toolchain) pulumi preview/up of the local stack in render mode and
           against a local API server, versus kubectl apply --server-side of the same manifests
  tests    make test's parts, timed warm (runs the whole suite: only when named)
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


SECTIONS = ("program", "engine", "tests")
DEFAULT_SECTIONS = ("program", "engine")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated whole numbers, e.g. 1,10,50") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: app counts must be 1 or more")
    return sizes


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
    # No `choices=` here: argparse (3.11) checks the value of a nargs="*" positional given no
    # arguments (its list default, or [] for default=None) against `choices` as one value and
    # rejects it, which made a bare `python -m bench` exit 2. Checked below instead.
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"{', '.join(SECTIONS)} (default: {' '.join(DEFAULT_SECTIONS)})")
    parser.add_argument("--repeats", type=_positive, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--apps", type=_sizes, default=program_cost.DEFAULT_SIZES,
                        help="comma-separated app counts for the program section (default: 1,10,50)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    sections = args.sections or list(DEFAULT_SECTIONS)
    started = time.perf_counter()
    result: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "sections": sections, "repeats": args.repeats}
    print(f"machine: {result['machine']}")
    if "program" in sections:
        result["program"] = program_cost.run(args.apps, args.repeats)
        print("\n## Program cost under mocks (production stack, N apps) vs the bare-SDK floor\n")
        print(program_cost.table(result["program"]))
    if "engine" in sections or "tests" in sections:
        from bench import engine_cost

        if "engine" in sections:
            result["engine"] = engine_cost.run(args.repeats)
            print("\n## Engine\n")
            print(engine_cost.table(result["engine"]))
        if "tests" in sections:
            result["tests"] = engine_cost.test_times()
            print("\n## make test, warm\n")
            print(engine_cost.test_table(result["tests"]))
    result["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
