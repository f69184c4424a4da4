"""`make bench`, run exactly as the README's Performance section documents it, from the repo root:
it must exit 0 and write the JSON it promises, with the figures it promises.

It needs the toolchain (the engine section runs the real Pulumi CLI and local API servers), so it
runs in `make test` (which builds the toolchain first) and is skipped where the toolchain is not
built, unless CLIPPER_REQUIRE_ENGINE=1. About 3 minutes on 2 cores."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def documented_command() -> str:
    """The command the README's Performance section tells the reader to run (its first code span)."""
    section = README.read_text().split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"`([^`]+)`", section).group(1)
    assert command.startswith("make bench"), f"README's Performance section opens with {command!r}"
    return command


def _toolchain_built() -> bool:
    """What `make bench`'s toolchain step would otherwise build: the cluster part where a pulumi is
    on PATH, everything where none is (the Makefile's rule)."""
    only = ["--only", "cluster"] if shutil.which("pulumi") else []
    found = subprocess.run(["bash", str(ROOT / "toolchain" / "build.sh"), "--print-bin", *only],
                           capture_output=True, text=True)
    return found.returncode == 0 and bool(found.stdout.strip())


@pytest.fixture(scope="module")
def bench_run():
    if not _toolchain_built():  # `make bench` would start a 20-minute toolchain build
        message = "the toolchain is not built: run `make toolchain` (make test does)"
        if os.environ.get("CLIPPER_REQUIRE_ENGINE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    command = documented_command()
    done = subprocess.run(shlex.split(command), cwd=ROOT, capture_output=True, text=True, timeout=840,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    wrote = re.findall(r"^wrote (\.state/bench/bench-[\d-]+\.json) ", done.stdout, re.MULTILINE)
    assert len(wrote) == 1, f"`{command}` did not say which file it wrote:\n{done.stdout[-2000:]}"
    return command, done.stdout, json.loads((ROOT / wrote[0]).read_text())


@pytest.mark.slow
@pytest.mark.engine
def test_documented_make_bench_writes_its_json(bench_run):
    command, stdout, result = bench_run
    assert command == "make bench"
    assert result["sections"] == ["program", "engine"] and result["repeats"] == 3
    assert result["machine"]["cpus"] >= 1 and result["machine"]["python"]

    program = result["program"]
    rows = {r["apps"]: r for r in program["rows"]}
    assert sorted(rows) == [1, 10, 50]
    for n, row in rows.items():
        p, f = row["platform"], row["floor"]
        assert p["runs"] == f["runs"] == 3 and len(p["all"]) == len(f["all"]) == 3
        assert p["min"] <= p["seconds"] <= p["max"] and f["min"] <= f["seconds"] <= f["max"]
        assert 0 < f["seconds"] and 0 < p["seconds"] < 60
        # The floor registered exactly the SDK resources the program did; components come on top.
        assert p["sdk_resources"] == f["sdk_resources"] < p["resources"]
        assert row["ratio_to_floor"] == pytest.approx(p["seconds"] / f["seconds"])
        assert row["ms_per_resource"] == pytest.approx(1000 * p["seconds"] / p["sdk_resources"])
    per_app = (rows[50]["platform"]["sdk_resources"] - rows[10]["platform"]["sdk_resources"]) / 40
    assert per_app == int(per_app) and per_app >= 8  # every app adds the same objects
    wall, cpu = program["targets"]
    assert wall["value"] == max(r["ratio_to_floor"] for r in rows.values()) and wall["met"] == (wall["value"] <= 1.5)
    assert cpu["value"] == max(r["cpu_ratio_to_floor"] for r in rows.values()) and cpu["met"] == (cpu["value"] <= 1.5)
    for row in rows.values():
        p, f = row["platform"], row["floor"]
        assert 0 < p["cpu_min"] <= p["cpu_seconds"] <= p["cpu_max"] and 0 < f["cpu_seconds"]
        assert row["cpu_ratio_to_floor"] == pytest.approx(p["cpu_seconds"] / f["cpu_seconds"])
        assert row["cpu_ratio_of_fastest"] == pytest.approx(p["cpu_min"] / f["cpu_min"])
    assert program["growth"]["from_apps"] == 10 and program["growth"]["to_apps"] == 50

    engine = result["engine"]
    render, cluster = engine["render"], engine["cluster"]
    for figure in ("first_preview", "first_up", "noop_up", "noop_preview"):
        assert render[figure]["runs"] == 3 and render[figure]["seconds"] > 0
    for figure in ("first_up", "noop_up", "noop_preview", "kubectl_apply", "kubectl_apply_wait"):
        assert cluster[figure]["runs"] == 3 and cluster[figure]["seconds"] > 0
    assert cluster["cluster_start"]["runs"] == 6  # a fresh local cluster for every measured up and apply
    assert cluster["kubectl_apply"]["seconds"] < cluster["kubectl_apply_wait"]["seconds"]
    assert cluster["ratio_to_apply"]["ratio"] == pytest.approx(cluster["first_up"]["seconds"] / cluster["kubectl_apply"]["seconds"])
    assert render["rendered_objects"] == cluster["rendered_objects"] > 20
    assert {t["name"] for t in engine["targets"]} >= {"pulumi up / kubectl apply --server-side"}

    # What it printed is what it wrote.
    assert f"| 50 | {rows[50]['platform']['sdk_resources']} (+" in stdout
    assert "## Engine" in stdout
