"""`ops verify` and `ops rotate` on a local API server of this module's own, after a real `pulumi up`
of the local stack in cluster mode with External Secrets (from the official chart, fake provider)
and Reloader turned on.

kwok makes pods Ready without running any container, so two things cannot happen here by
themselves, and the module is explicit about how it handles each:
- nothing answers HTTP: `verify --http` is shown failing clearly (the API server's dial to the
  fake pod IP fails; on this machine it goes to the environment's HTTP proxy, which refuses it);
  the passing runs leave the probe off, and their table says so (SKIP);
- the External Secrets operator and Reloader do not run (their Deployments are there, faked
  Ready): `StandInControllers` does, from outside the cluster, the two things of theirs that
  `rotate` relies on, as their documentation describes them. The operator: when an
  ExternalSecret's `force-sync` annotation changes, read the values from the store (the fake
  provider's data in the ClusterSecretStore, exactly what the real fake provider returns), write
  the Secret and set the ExternalSecret's status (Ready, refreshTime). Reloader (annotations
  strategy): when a Secret's data changes, set `reloader.stakater.com/last-reloaded-from` on the
  pod template of each Deployment annotated `secret.reloader.stakater.com/reload: <secret>`.
  Everything else is real: the engine, the API server, the Deployment controller rolling the pods
  and the ops commands.
"""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest

from components.addons.reloader import RELOAD_ON_SECRET_ANNOTATION, RELOADED_FROM_ANNOTATION
from tests.charts import charts_dir
from tests.engine.engine import ROOT, Project, kubectl

STACK, NS, STORE_KEY = "local", "clipper-local", "clipper-local-database-url"


def _json(kubeconfig, *args):
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))


class StandInControllers(threading.Thread):
    """The External Secrets operator's sync and Reloader's roll, for a cluster where kwok runs neither."""

    def __init__(self, kubeconfig, namespace):
        super().__init__(daemon=True)
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.stop = threading.Event()
        self.synced_stamps: dict[str, str] = {}  # ExternalSecret -> the force-sync value last acted on
        self.digests: dict[str, str] = {}  # Secret -> digest of the data last seen
        self.errors: list[str] = []
        self.syncs = self.rolls = 0

    def kubectl(self, *args, stdin=None):
        done = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:4])}: {done.stderr.strip()}")
        return done.stdout

    def sync(self, external_secret):
        """What the operator does on a sync: fetch each remoteRef from the store, write the Secret, set status."""
        store = json.loads(self.kubectl("get", "clustersecretstore", external_secret["spec"]["secretStoreRef"]["name"], "-o", "json"))
        values = {entry["key"]: entry["value"] for entry in store["spec"]["provider"]["fake"]["data"]}
        target = external_secret["spec"]["target"]["name"]
        data = {item["secretKey"]: base64.b64encode(values[item["remoteRef"]["key"]].encode()).decode()
                for item in external_secret["spec"]["data"]}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
                  "metadata": {"name": target, "namespace": self.namespace, "ownerReferences": [{
                      "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "controller": True,
                      "name": external_secret["metadata"]["name"], "uid": external_secret["metadata"]["uid"]}]}}
        self.kubectl("apply", "--server-side", "--field-manager=external-secrets", "-f", "-", stdin=json.dumps(secret))
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {"status": {"refreshTime": now, "binding": {"name": target}, "conditions": [{
            "type": "Ready", "status": "True", "reason": "SecretSynced", "message": "secret synced", "lastTransitionTime": now}]}}
        self.kubectl("patch", "externalsecret", external_secret["metadata"]["name"], "-n", self.namespace,
                     "--subresource=status", "--type=merge", "-p", json.dumps(status))
        self.syncs += 1

    def roll(self, secret_name):
        """What Reloader does when a Secret's data changes: annotate the pod templates that ask for it."""
        deployments = json.loads(self.kubectl("get", "deployments", "-n", self.namespace, "-o", "json"))["items"]
        for deployment in deployments:
            wanted = (deployment["metadata"].get("annotations") or {}).get(RELOAD_ON_SECRET_ANNOTATION, "")
            if secret_name in [name.strip() for name in wanted.split(",")]:
                reloaded = json.dumps({"type": "SECRET", "name": secret_name, "namespace": self.namespace,
                                       "hash": self.digests[secret_name]})
                patch = {"spec": {"template": {"metadata": {"annotations": {RELOADED_FROM_ANNOTATION: reloaded}}}}}
                self.kubectl("patch", "deployment", deployment["metadata"]["name"], "-n", self.namespace,
                             "--field-manager=Reloader", "--type=merge", "-p", json.dumps(patch))
                self.rolls += 1

    def step(self):
        for external_secret in json.loads(self.kubectl("get", "externalsecrets", "-n", self.namespace, "-o", "json"))["items"]:
            name = external_secret["metadata"]["name"]
            stamp = (external_secret["metadata"].get("annotations") or {}).get("force-sync", "")
            if self.synced_stamps.get(name) != stamp:
                self.sync(external_secret)
                self.synced_stamps[name] = stamp
        for secret in json.loads(self.kubectl("get", "secrets", "-n", self.namespace, "-o", "json"))["items"]:
            name = secret["metadata"]["name"]
            digest = hashlib.sha256(json.dumps(secret.get("data") or {}, sort_keys=True).encode()).hexdigest()
            changed = name in self.digests and self.digests[name] != digest
            self.digests[name] = digest
            if changed:
                self.roll(name)

    def run(self):
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as error:  # reported by the tests, never swallowed
                self.errors.append(str(error))
            self.stop.wait(0.5)


def _store(value: str) -> dict:
    return {"fake": {"data": [{"key": STORE_KEY, "value": value}]}}


@pytest.fixture(scope="module")
def deployed(bin_dir, tmp_path_factory, own_cluster):
    """The local stack on the module's API server, with External Secrets and Reloader; the
    stand-ins running from the moment the ExternalSecret exists (the operator syncs it on creation)."""
    project = Project.copy_of(ROOT, tmp_path_factory.mktemp("verify"), bin_dir, with_policies=False)
    project.env["CLIPPER_CHARTS_DIR"] = str(charts_dir())
    project.init(STACK)
    project.set(STACK, "existing", {"mode": "cluster", "kubeconfig": str(own_cluster), "secretStore": _store("postgres://v1")})
    project.set(STACK, "addons.external-secrets", {"enabled": True, "waitForSync": False})
    project.set(STACK, "addons.reloader", {"enabled": True})
    project.set(STACK, "apps.backend.secrets", {"DATABASE_URL": STORE_KEY})
    started = time.monotonic()
    project.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=900)
    print(f"\nup with External Secrets and Reloader: {time.monotonic() - started:.1f}s")
    controllers = StandInControllers(own_cluster, NS)
    controllers.start()
    deadline = time.monotonic() + 60
    while controllers.syncs == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert controllers.syncs == 1, controllers.errors
    # The backend's HPA raises it to minReplicas (2) some seconds after the up: let that settle, so
    # the passing verify is not watching a scale-up it would rightly wait for.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = _json(own_cluster, "get", "deployment", "backend", "-n", NS)["status"]
        if status.get("availableReplicas") == status.get("replicas") == 2:
            break
        time.sleep(1)
    yield project, controllers
    controllers.stop.set()
    controllers.join(timeout=10)


def _ops(project, *args, timeout=600):
    started = time.monotonic()
    run = project.ops(*args, timeout=timeout)
    print(f"\n$ python -m infra.ops {' '.join(args)}   # exit {run.returncode}, {time.monotonic() - started:.1f}s\n"
          f"{run.stdout}{run.stderr}")
    return run


def _row(output: str, app: str, check: str) -> str:
    """The table row of one check (the table follows the watch's progress lines)."""
    table = output[output.rindex("\napp "):]
    return next(line for line in table.splitlines() if line.split()[:2] == [app, check])


def _backend_pods(kubeconfig) -> dict[str, bool]:
    pods = _json(kubeconfig, "get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=backend")["items"]
    return {p["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_verify_passes_after_up(deployed):
    project, controllers = deployed
    run = _ops(project, "verify", "--stack", STACK, "--watch", "6s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "local: PASS: every check held for 6s" in run.stdout
    for app in ("backend", "frontend"):
        for check in ("rollout", "pods", "restarts"):
            assert _row(run.stdout, app, check).split()[2] == "OK"
    assert _row(run.stdout, "backend", "secrets").split()[2] == "OK"
    assert "SKIP    /readyz not probed" in _row(run.stdout, "backend", "http")  # said, not hidden
    assert controllers.errors == []


def test_reloader_is_scoped_to_the_app_namespace(deployed, own_cluster):
    clusterroles = _json(own_cluster, "get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/instance=reloader")
    assert clusterroles["items"] == []
    roles = {r["metadata"]["name"]: r for r in _json(own_cluster, "get", "roles", "-n", NS)["items"]}
    rules = roles["reloader-reloader-role"]["rules"]
    assert {"resources": ["secrets"], "verbs": ["list", "get", "watch"]}.items() <= rules[0].items()
    deployment = _json(own_cluster, "get", "deployment", "backend", "-n", NS)
    assert deployment["metadata"]["annotations"][RELOAD_ON_SECRET_ANNOTATION] == "backend-secrets"


def test_verify_http_probe_fails_clearly_where_nothing_answers(deployed):
    project, _ = deployed
    run = _ops(project, "verify", "--stack", STACK, "--apps", "frontend", "--watch", "0", "--http")
    assert run.returncode == 1
    row = _row(run.stdout, "frontend", "http")
    assert row.split()[2] == "FAIL"
    assert "/readyz through the service proxy:" in row
    assert "local: FAIL: 1 check(s) failed: frontend http" in run.stdout


def test_rotate_rolls_the_app_onto_the_new_secret(deployed, own_cluster):
    project, controllers = deployed
    before = _backend_pods(own_cluster)
    revision = _json(own_cluster, "get", "deployment", "backend", "-n", NS)["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"]
    # The rotation itself: a new value in the secret manager (the fake provider's store).
    project.set(STACK, "existing.secretStore", _store("postgres://v2"))
    project.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=900)
    secret = _json(own_cluster, "get", "secret", "backend-secrets", "-n", NS)
    assert base64.b64decode(secret["data"]["DATABASE_URL"]) == b"postgres://v1"  # nothing synced it yet

    run = _ops(project, "rotate", "--stack", STACK, "--app", "backend", "--timeout", "3m")
    assert run.returncode == 0, run.stdout + run.stderr
    for progress in ("==> force-sync of ExternalSecret clipper-local/backend-secrets (force-sync=", "synced at ",
                     "Secret backend-secrets changed", "==> rollout of deployment clipper-local/backend by Reloader",
                     f"revision {int(revision) + 1} started", "done in "):
        assert progress in run.stdout
    secret = _json(own_cluster, "get", "secret", "backend-secrets", "-n", NS)
    assert base64.b64decode(secret["data"]["DATABASE_URL"]) == b"postgres://v2"
    assert "postgres://" not in run.stdout + run.stderr
    after = _backend_pods(own_cluster)
    assert after and all(after.values()), after  # the new pods are Ready
    assert not set(after) & set(before), f"pods not replaced: {before} -> {after}"
    assert controllers.rolls == 1 and controllers.errors == []

    # What rotate and Reloader changed (annotations on the ExternalSecret and the pod template) is not
    # what Pulumi declared: a refresh finds no drift.
    assert _ops(project, "drift", "--stack", STACK).returncode == 0
    assert _ops(project, "verify", "--stack", STACK, "--watch", "0").returncode == 0


def test_rotate_refuses_when_the_secret_manager_still_holds_the_old_value(deployed, own_cluster):
    project, controllers = deployed
    before = _backend_pods(own_cluster)
    run = _ops(project, "rotate", "--stack", STACK, "--app", "backend", "--timeout", "1m")
    assert run.returncode == 1
    assert "its data did not change: the secret manager still holds the values the app runs with" in run.stderr
    assert _backend_pods(own_cluster) == before and controllers.errors == []


def test_verify_fails_on_a_rollout_that_cannot_complete_and_an_unsynced_secret(deployed, own_cluster):
    project, controllers = deployed
    controllers.stop.set()  # from here on, nothing syncs
    controllers.join(timeout=10)
    # A release whose new pods nobody can schedule: maxUnavailable 0 keeps the old ones, the rollout hangs.
    kubectl(own_cluster, "patch", "deployment", "frontend", "-n", NS, "--type=merge",
            "-p", json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"clipper.dev/pool": "nowhere"}}}}}))
    unsynced = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "SecretSyncedError",
                                           "message": "could not get secret data from provider",
                                           "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    kubectl(own_cluster, "patch", "externalsecret", "backend-secrets", "-n", NS, "--subresource=status",
            "--type=merge", "-p", json.dumps(unsynced))
    run = _ops(project, "verify", "--stack", STACK, "--watch", "8s")
    assert run.returncode == 1
    rollout, pods = _row(run.stdout, "frontend", "rollout"), _row(run.stdout, "frontend", "pods")
    assert rollout.split()[2] == "FAIL" and "revision 2: 1/2 pods updated (still, after 8s)" in rollout
    assert pods.split()[2] == "FAIL" and "not scheduled: Unschedulable:" in pods
    secrets = _row(run.stdout, "backend", "secrets")
    assert "FAIL    backend-secrets not synced: SecretSyncedError: could not get secret data from provider" in secrets
    assert "local: FAIL: 3 check(s) failed: backend secrets, frontend rollout, frontend pods" in run.stdout
