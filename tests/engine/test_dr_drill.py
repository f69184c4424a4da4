"""Backups, `restore` and `dr-drill` on a local API server of this module's own, after a real
`pulumi up` of the local stack in cluster mode with `addons.backups` on (Velero's official chart,
a BackupStorageLocation naming an S3-compatible store that does not exist here).

What runs for real: the engine, the chart's CRDs and objects (Schedules, BackupStorageLocation,
the Velero Deployment, Ready through kwok), the API server validating the Restore objects the ops
commands create against Velero's CRDs, deleting the app namespace, the re-`up` that re-creates it,
and `verify` of the apps afterwards, timed.

What cannot run here, and how the module handles it: there is no object storage and no volume
snapshot, and kwok runs no container, so Velero's controller never takes a backup or processes a
restore. One Backup object is created from outside with the status Velero gives a finished backup
(the stand-in for an hourly run); the Restores are then checked as the API server stored them,
and the drill must say plainly that its restore was not processed.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from tests.charts import charts_dir
from tests.engine.engine import ROOT, Project, kubectl

STACK, NS, VELERO = "local", "clipper-local", "velero"
BACKUP = "velero-hourly-20261201000000"
LOCATION = {"provider": "aws", "bucket": "clipper-drill", "config": {"region": "minio", "s3Url": "http://minio.invalid:9000"}}


def _json(kubeconfig, *args):
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))


@pytest.fixture(scope="module")
def deployed(bin_dir, tmp_path_factory, own_cluster):
    project = Project.copy_of(ROOT, tmp_path_factory.mktemp("drill"), bin_dir, with_policies=False)
    project.env["CLIPPER_CHARTS_DIR"] = str(charts_dir())
    project.init(STACK)
    project.set(STACK, "existing", {"mode": "cluster", "kubeconfig": str(own_cluster)})
    project.set(STACK, "addons.backups", {"enabled": True, "location": LOCATION})
    started = time.monotonic()
    project.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=900)
    print(f"\nup with Velero: {time.monotonic() - started:.1f}s")
    return project


def _completed_backup(kubeconfig, directory) -> None:
    """What Velero's hourly schedule leaves behind after a run, written from outside (no Velero runs here)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    backup = {
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "metadata": {"name": BACKUP, "namespace": VELERO, "labels": {"velero.io/schedule-name": "velero-hourly"}},
        "spec": {"includedNamespaces": [NS], "storageLocation": "default", "ttl": "168h0m0s"},
        "status": {"phase": "Completed", "startTimestamp": now, "completionTimestamp": now, "expiration": "2026-12-08T00:00:00Z"},
    }
    path = directory / "backup.json"
    path.write_text(json.dumps(backup))
    kubectl(kubeconfig, "apply", "-f", str(path))


def _ops(project, *args, timeout=900):
    started = time.monotonic()
    run = project.ops(*args, timeout=timeout)
    print(f"\n$ python -m infra.ops {' '.join(args)}   # exit {run.returncode}, {time.monotonic() - started:.1f}s\n{run.stdout}{run.stderr}")
    return run


def test_velero_schedules_back_up_the_app_namespace_hourly(deployed, own_cluster, tmp_path):
    schedules = {s["metadata"]["name"]: s["spec"] for s in _json(own_cluster, "get", "schedules.velero.io", "-n", VELERO)["items"]}
    assert schedules["velero-hourly"]["schedule"] == "0 * * * *"
    assert schedules["velero-hourly"]["template"]["includedNamespaces"] == [NS]
    assert schedules["velero-hourly"]["template"]["ttl"] in ("168h", "168h0m0s")
    assert schedules["velero-daily"]["template"]["ttl"] in ("720h", "720h0m0s")
    location = _json(own_cluster, "get", "backupstoragelocations.velero.io", "default", "-n", VELERO)["spec"]
    assert location["objectStorage"]["bucket"] == "clipper-drill" and location["default"] is True


def test_backups_list_says_whether_the_rpo_is_met(deployed, own_cluster, tmp_path):
    run = _ops(deployed, "backups", "list", "--stack", STACK)
    assert run.returncode == 1 and f"RPO 1h: NOT MET: no completed backup of {NS}" in run.stdout
    _completed_backup(own_cluster, tmp_path)
    run = _ops(deployed, "backups", "list", "--stack", STACK)
    assert run.returncode == 0, run.stdout + run.stderr
    assert BACKUP in run.stdout and "velero-hourly" in run.stdout
    assert f"RPO 1h: met: newest completed backup of {NS} is {BACKUP}" in run.stdout


def test_restore_into_a_new_namespace_creates_a_restore_the_api_server_accepts(deployed, own_cluster, tmp_path):
    _completed_backup(own_cluster, tmp_path)
    run = _ops(deployed, "restore", "--stack", STACK, "--to-namespace", "clipper-restored", "--wait", "0")
    assert run.returncode == 0, run.stdout + run.stderr
    [restore] = [r for r in _json(own_cluster, "get", "restores.velero.io", "-n", VELERO)["items"]
                 if r["spec"].get("namespaceMapping")]
    assert restore["spec"]["backupName"] == BACKUP
    assert restore["spec"]["includedNamespaces"] == [NS]
    assert restore["spec"]["namespaceMapping"] == {NS: "clipper-restored"}
    assert restore["spec"]["existingResourcePolicy"] == "none"


def test_restore_of_an_unknown_backup_is_bad_usage(deployed):
    run = _ops(deployed, "restore", "--stack", STACK, "--backup", "no-such-backup", "--wait", "0")
    assert run.returncode == 2 and "no backup no-such-backup in velero" in run.stderr


def test_dr_drill_deletes_the_namespace_re_ups_restores_and_verifies(deployed, own_cluster, tmp_path):
    _completed_backup(own_cluster, tmp_path)
    before = _json(own_cluster, "get", "namespace", NS)["metadata"]["uid"]
    run = _ops(deployed, "dr-drill", "--stack", STACK, "--yes", "--restore-wait", "5s", "--watch", "10s")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    steps = [out.index(f"==> {n}/4") for n in range(1, 5)]
    assert steps == sorted(steps)  # destroy, re-up, restore, verify: in that order
    assert f"namespace {NS} deleted" in out
    # The namespace is a new one, with the apps in it again.
    assert _json(own_cluster, "get", "namespace", NS)["metadata"]["uid"] != before
    deployments = {d["metadata"]["name"] for d in _json(own_cluster, "get", "deployments", "-n", NS)["items"]}
    assert {"backend", "frontend"} <= deployments
    # The restore was created from the completed backup, and not faked as done.
    assert f"from backup {BACKUP}, in place" in out
    assert "NOT PROCESSED within 5s" in out and "there is no object storage" in out
    assert "RTO measured: " in out and "(within the runbook's 1-2 h)" in out
    assert f"dr-drill {STACK}: PASS: the apps are back" in out
