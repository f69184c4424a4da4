"""Fixtures for tests that run the real Pulumi engine (built by toolchain/) on copies of the
project, with a throwaway file backend, and optionally a local Kubernetes API server."""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import pytest

from tests.charts import helm_binary
from tests.engine.engine import Project, toolchain_bin

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/engine/" in str(item.fspath):
            item.add_marker(pytest.mark.engine)


def built(found: Optional[Path], message: str) -> Path:
    """A toolchain binary or folder; missing, it skips the test, or fails it under make test."""
    if found is None:
        if os.environ.get("CLIPPER_REQUIRE_ENGINE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    return built(toolchain_bin(), "the Pulumi toolchain is not built: run `make toolchain` (make test does)")


@pytest.fixture(scope="session")
def helm() -> Path:
    return built(helm_binary(), "helm is not built: run `toolchain/build.sh` (make test does)")


@pytest.fixture
def project(bin_dir, tmp_path) -> Project:
    """A copy of the project in a temp dir: stacks and config edits never touch the repo."""
    return Project.copy_of(ROOT, tmp_path, bin_dir)


@contextmanager
def running_cluster(cluster_dir: Path):
    """A local API server (etcd, kube-apiserver, controllers, kwok); yields its kubeconfig."""
    env = {**os.environ, "CLIPPER_CLUSTER_DIR": str(cluster_dir)}
    script = ROOT / "toolchain" / "cluster.sh"
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is required for the local cluster tests")
    started = subprocess.run(["bash", str(script), "up"], env=env, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail(f"local cluster did not start:\n{started.stderr[-3000:]}")
    try:
        yield cluster_dir / "kubeconfig"
    finally:
        subprocess.run(["bash", str(script), "down"], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def own_cluster(bin_dir, tmp_path_factory, request):
    """A local API server for one test module alone: the CRDs, namespaces and terminating objects
    its tests leave stay out of the other modules'."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    with running_cluster(tmp_path_factory.mktemp(f"{module}-cluster")) as kubeconfig:
        yield kubeconfig


@pytest.fixture(scope="session")
def local_cluster(bin_dir, tmp_path_factory):
    """One local API server for the session's tests of the local stack."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as kubeconfig:
        yield kubeconfig
