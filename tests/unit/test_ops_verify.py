"""`verify` and `rotate` without a cluster: arguments and usage errors, what each check makes of
the objects a rollout leaves (built here as the API server returns them), the watch window, the
table, the promote/rollback hook, and the Reloader add-on they rely on (values against the official
chart, the Deployment annotation, config errors)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from components.addons.chart_values import schema_errors, unknown_values
from components.addons.reloader import RELOAD_ON_SECRET_ANNOTATION
from infra.ops import cli, kube, rotate, stacks, verify
from infra.ops.errors import Refused
from infra.ops.kube import AppTarget, parse_duration, stack_apps
from infra.ops.stack_config import parse_config
from infra.simulate import simulate

NS = "clipper-staging"
BACKEND_IMAGE, FRONTEND_IMAGE = "ghcr.io/clpr-tv/backend:1.5.0", "ghcr.io/clpr-tv/frontend:2.1.0"


def stack_config(mode: str = "cluster", reloader: bool = True, external_secrets: bool = True) -> dict:
    return {
        "clipper:cloud": "existing",
        "clipper:appNamespace": NS,
        "clipper:existing": {"mode": mode, "kubeconfig": "/nonexistent/kubeconfig"},
        "clipper:addons": {
            "cert-manager": {"enabled": False},
            "external-secrets": {"enabled": external_secrets},
            "reloader": {"enabled": reloader},
        },
        "clipper:apps": {
            "backend": {"image": BACKEND_IMAGE, "host": "api.clpr.tv", "secrets": {"DATABASE_URL": "db-url"}},
            "frontend": {"image": FRONTEND_IMAGE, "probes": {"readiness": {"path": "/ready"}}},
        },
    }


def as_stack_config(values: dict):
    return parse_config({key: ({"value": json.dumps(v), "objectValue": v} if isinstance(v, dict) else {"value": v})
                         for key, v in values.items()})


@pytest.fixture
def a_stack(monkeypatch):
    """One stack named `staging` whose config the test can change; no backend, no engine."""
    holder = SimpleNamespace(config=stack_config())

    def open_stack(name, work_dir=None):
        if name != "staging":
            from infra.ops.errors import BadUsage
            raise BadUsage(f"unknown stack {name!r}")
        return SimpleNamespace(name=name)

    monkeypatch.setattr(stacks, "open_stack", open_stack)
    monkeypatch.setattr(stacks, "read_config", lambda stack: as_stack_config(holder.config))
    return holder


# --- objects as the API server returns them ----------------------------------------------------------


def deployment(name="backend", image=BACKEND_IMAGE, replicas=2, updated=2, total=2, available=2, generation=3,
               observed=3, revision="2", progressing=None, annotations=None):
    conditions = [progressing] if progressing else []
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": generation,
                     "annotations": {kube.REVISION: revision, **(annotations or {})}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": name, "image": image}]}}},
        "status": {"observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
                   "availableReplicas": available, "conditions": conditions},
    }


def replicaset(owner, revision):
    name = f"{owner['metadata']['name']}-{revision}abc"
    return {"kind": "ReplicaSet", "metadata": {"name": name, "uid": f"uid-{name}", "annotations": {kube.REVISION: revision},
                                               "ownerReferences": [{"uid": owner["metadata"]["uid"]}]}}


def pod(name, owner, ready=True, restarts=0, waiting=None, unschedulable=None, last_exit=None):
    container = {"name": "app", "restartCount": restarts, "state": {"waiting": waiting} if waiting else {"running": {}}}
    if last_exit:
        container["lastState"] = {"terminated": last_exit}
    conditions = [{"type": "Ready", "status": "True" if ready else "False", "reason": None if ready else "ContainersNotReady"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable})
    return {"kind": "Pod", "metadata": {"name": name, "ownerReferences": [{"uid": owner["metadata"]["uid"]}]},
            "status": {"phase": "Running" if ready else "Pending", "conditions": conditions,
                       "containerStatuses": [] if unschedulable else [container]}}


def external_secret(ready=True, reason="SecretSynced", message="secret synced", refreshed="2026-01-01T10:00:00Z"):
    status = {"refreshTime": refreshed, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                        "reason": reason, "message": message}]}
    return {"kind": "ExternalSecret", "metadata": {"name": "backend-secrets"}, "status": status}


def healthy(backend=None, frontend=None, backend_pods=None):
    """Both apps rolled out: each Deployment, its current and an old ReplicaSet, two Ready pods."""
    backend = backend or deployment()
    frontend = frontend or deployment("frontend", FRONTEND_IMAGE)
    items = []
    for dep, pods in ((backend, backend_pods), (frontend, None)):
        current = replicaset(dep, kube.revision(dep))
        items += [dep, current, replicaset(dep, "1")]
        items += pods(current) if pods else [pod(f"{dep['metadata']['name']}-{revision}", current) for revision in ("x1", "x2")]
    return items


def snapshot_of(items, external_secrets=None, http=None):
    return verify.Snapshot(
        deployments={i["metadata"]["name"]: i for i in items if i["kind"] == "Deployment"},
        replicasets=[i for i in items if i["kind"] == "ReplicaSet"],
        pods=[i for i in items if i["kind"] == "Pod"],
        external_secrets=external_secrets if external_secrets is not None else {"backend-secrets": external_secret()},
        http=http,
        errors={},
    )


APPS = stack_apps(as_stack_config(stack_config())).apps


def results(snapshot) -> dict:
    return {(c.app, c.check): (c.status, c.detail) for c in verify.evaluate(APPS, snapshot)}


# --- arguments and usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,seconds", [("0", 0), ("45s", 45), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("30m", 1800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "argv,message",
    [
        (["verify", "--stack", "staging", "--watch", "soon"], "argument --watch: 'soon' is not a duration (examples: 30s, 5m"),
        (["verify", "--stack", "staging", "--watch=-5m"], "argument --watch: '-5m' is not a duration"),
        (["verify", "--stack", "staging", "--watch", "30"], "argument --watch: '30' is not a duration"),
        (["verify", "--stack", "staging", "--watch", "25h"], "argument --watch: '25h' is longer than 24h"),
        (["verify"], "the following arguments are required: --stack"),
        (["rotate", "--stack", "staging"], "the following arguments are required: --app"),
        (["rotate", "--stack", "staging", "--app", "backend", "--timeout", "5 minutes"], "argument --timeout"),
        (["promote", "--from", "a", "--to", "b", "--no-verify", "--no-verify=x"], "ignored explicit argument"),
    ],
)
def test_malformed_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert_one_line(done.value.code, 2, message, capsys)


def assert_one_line(code, expected_code, message, capsys):
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (expected_code, 1), err
    assert message in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["verify", "--stack", "staging", "--apps", "payments"], "unknown app(s) payments (apps in this stack: backend, frontend)"),
        (["verify", "--stack", "staging", "--apps", " , "], "--apps: give one or more app names"),
        (["verify", "--stack", "nowhere"], "unknown stack 'nowhere'"),
        (["rotate", "--stack", "staging", "--app", "payments"], "unknown app(s) payments"),
        (["rotate", "--stack", "staging", "--app", "frontend"], "app frontend has no synced secrets to rotate (apps.frontend.secrets is empty)"),
    ],
)
def test_bad_usage_exits_2_with_one_message(a_stack, argv, message, capsys):
    assert_one_line(cli.main(argv), 2, message, capsys)


@pytest.mark.parametrize("command", [["verify", "--stack", "staging"], ["rotate", "--stack", "staging", "--app", "backend"]])
def test_a_render_mode_stack_has_no_cluster_one_message_exit_2(a_stack, command, capsys):
    a_stack.config = stack_config(mode="render")
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "staging is in render mode (clipper:existing.mode: render): it writes manifests and deploys to no cluster" in err
    assert f"nothing to {command[0]}" in err


def test_rotate_without_reloader_is_refused_before_touching_the_cluster(a_stack, monkeypatch, capsys):
    a_stack.config = stack_config(reloader=False)
    monkeypatch.setattr(rotate, "cluster_of", lambda *a: pytest.fail("must not reach the cluster"))
    assert cli.main(["rotate", "--stack", "staging", "--app", "backend"]) == 1
    assert "addons.reloader is off in staging: nothing rolls backend" in capsys.readouterr().err


def test_rotate_of_an_app_when_external_secrets_is_off_is_bad_usage(a_stack, capsys):
    a_stack.config = stack_config(external_secrets=False, reloader=False)
    assert cli.main(["rotate", "--stack", "staging", "--app", "backend"]) == 2
    assert "no synced secrets to rotate (External Secrets is off in this stack)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["verify", "rotate"])
def test_help_has_examples_and_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "exit codes:" in text and f"python -m infra.ops {command} --stack production" in text


# --- what the checks make of the objects --------------------------------------------------------------------


def test_a_finished_rollout_passes_every_check():
    found = results(snapshot_of(healthy()))
    assert found[("backend", "rollout")] == ("OK", "revision 2: 2/2 updated and available, backend:1.5.0")
    assert found[("backend", "pods")] == ("OK", "2/2 Ready: backend-x1, backend-x2")
    assert found[("backend", "restarts")] == ("OK", "none in the 2 pod(s) of revision 2")
    assert found[("backend", "secrets")] == ("OK", "backend-secrets synced at 2026-01-01T10:00:00Z")
    assert found[("frontend", "secrets")] == ("SKIP", "no synced secrets")
    assert found[("backend", "certificate")][0] == "SKIP"  # cert-manager is off in this config
    assert found[("frontend", "http")] == ("SKIP", "/ready not probed (--http probes it through the API server)")
    assert {status for status, _ in found.values()} == {"OK", "SKIP"}


@pytest.mark.parametrize(
    "backend,status,detail",
    [
        (deployment(updated=1, total=3), "WAIT", "revision 2: 1/2 pods updated"),
        (deployment(total=3), "WAIT", "revision 2: 1 old pod(s) still running"),
        (deployment(available=1), "WAIT", "revision 2: 1/2 available"),
        (deployment(generation=4), "WAIT", "generation 4 not yet observed by the controller (at 3)"),
        (deployment(image="ghcr.io/clpr-tv/backend:9.9.9"), "FAIL",
         "runs ghcr.io/clpr-tv/backend:9.9.9, the stack's config says ghcr.io/clpr-tv/backend:1.5.0"),
        (deployment(progressing={"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                 "message": 'ReplicaSet "backend-2abc" has timed out progressing.'}), "FAIL",
         'rollout stuck: ProgressDeadlineExceeded: ReplicaSet "backend-2abc" has timed out progressing.'),
    ],
)
def test_rollout_states(backend, status, detail):
    assert results(snapshot_of(healthy(backend=backend)))[("backend", "rollout")] == (status, detail)


def test_a_pod_nobody_can_schedule_waits_and_says_why():
    unschedulable = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    pods = lambda rs: [pod("backend-x1", rs), pod("backend-x2", rs, ready=False, unschedulable=unschedulable)]
    status, detail = results(snapshot_of(healthy(backend_pods=pods)))[("backend", "pods")]
    assert status == "WAIT"
    assert detail == f"1/2 Ready; backend-x2: not scheduled: Unschedulable: {unschedulable}"


def test_crashing_pods_and_restarts_fail_at_once():
    crash = {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}
    pods = lambda rs: [pod("backend-x1", rs, ready=False, restarts=3, waiting=crash,
                           last_exit={"reason": "Error", "exitCode": 1}), pod("backend-x2", rs)]
    found = results(snapshot_of(healthy(backend_pods=pods)))
    assert found[("backend", "pods")] == ("FAIL", "backend-x1: container app CrashLoopBackOff: back-off 40s restarting failed container")
    assert found[("backend", "restarts")] == ("FAIL", "backend-x1/app restarted 3x (last: Error, exit 1)")


def test_pods_of_old_revisions_are_not_judged():
    backend = deployment()
    old = replicaset(backend, "1")
    items = healthy(backend=backend) + [pod("backend-old", old, ready=False, restarts=7)]
    found = results(snapshot_of(items))
    assert found[("backend", "restarts")][0] == found[("backend", "pods")][0] == "OK"


@pytest.mark.parametrize(
    "found,status,detail",
    [
        ({}, "WAIT", "no ExternalSecret backend-secrets"),
        ({"backend-secrets": {"kind": "ExternalSecret", "metadata": {"name": "backend-secrets"}}}, "WAIT",
         "backend-secrets not synced yet (no status: is External Secrets running?)"),
        ({"backend-secrets": external_secret(ready=False, reason="SecretSyncedError", message="could not get secret data from provider")},
         "WAIT", "backend-secrets not synced: SecretSyncedError: could not get secret data from provider"),
    ],
)
def test_external_secret_states(found, status, detail):
    assert results(snapshot_of(healthy(), external_secrets=found))[("backend", "secrets")] == (status, detail)


def test_http_probe_results():
    answers = {"backend": None, "frontend": 'the server is currently unable to handle the request (get services frontend:http)'}
    found = results(snapshot_of(healthy(), http=answers))
    assert found[("backend", "http")] == ("OK", "/readyz answered 2xx through the service proxy")
    assert found[("frontend", "http")] == ("WAIT", "/ready through the service proxy: the server is currently unable to "
                                           "handle the request (get services frontend:http)")
    app = APPS[0]
    assert verify.proxy_path(app) == f"/api/v1/namespaces/{NS}/services/backend:http/proxy/readyz"


# --- the watch window -------------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(verify, "clock", lambda: self.now)
        monkeypatch.setattr(verify, "sleep", self.sleep)
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*snapshots):
    """Each poll returns the next snapshot; the last one repeats."""
    queue = list(snapshots)
    return lambda: queue.pop(0) if len(queue) > 1 else queue[0]


def test_the_watch_waits_for_a_rollout_to_settle_and_holds_the_window(monkeypatch, capsys):
    time = FakeTime(monkeypatch)
    rolling = snapshot_of(healthy(backend=deployment(available=1)))
    checks = verify.watch(scripted(rolling, rolling, snapshot_of(healthy())), APPS, window_s=30, poll_s=5)
    assert time.now == 30 and time.sleeps == [5, 5, 5, 5, 5, 5]  # held for the whole window
    assert {c.status for c in checks} == {"OK", "SKIP"}
    lines = capsys.readouterr().out.splitlines()
    rollout = [line for line in lines if "backend  rollout" in line]
    assert [line.split()[0] for line in rollout] == ["0s", "10s"]  # printed when the result changed, not each poll
    assert "WAIT  revision 2: 1/2 available" in rollout[0] and "OK  revision 2" in rollout[1]


def test_a_failure_ends_the_watch_at_once(monkeypatch):
    time = FakeTime(monkeypatch)
    crash = snapshot_of(healthy(backend_pods=lambda rs: [pod("backend-x1", rs, restarts=1), pod("backend-x2", rs)]))
    checks = verify.watch(scripted(snapshot_of(healthy()), crash), APPS, window_s=1800, poll_s=5)
    assert time.now == 5
    assert [(c.app, c.check) for c in checks if c.status == "FAIL"] == [("backend", "restarts")]


def test_what_has_not_settled_when_the_window_ends_fails(monkeypatch):
    FakeTime(monkeypatch)
    checks = verify.watch(scripted(snapshot_of(healthy(), external_secrets={})), APPS, window_s=10, poll_s=5)
    failed = [c for c in checks if c.status == "FAIL"]
    assert [(c.app, c.check, c.detail) for c in failed] == [
        ("backend", "secrets", "no ExternalSecret backend-secrets (still, after 10s)")]


def test_watch_0_looks_once(monkeypatch):
    time = FakeTime(monkeypatch)
    verify.watch(scripted(snapshot_of(healthy())), APPS, window_s=0)
    assert time.sleeps == []


# --- the whole command: table and verdict --------------------------------------------------------------------


@pytest.fixture
def cluster(a_stack, monkeypatch):
    """`verify` against scripted snapshots instead of kubectl."""
    FakeTime(monkeypatch)
    state = SimpleNamespace(snapshots=[snapshot_of(healthy())], http_asked=[])

    class Context:
        def __enter__(self):
            return "kubectl"

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(verify, "cluster_of", lambda stack, config, work_dir, command: Context())

    def read(kube_, declared, http):
        state.http_asked.append(http)
        return state.snapshots.pop(0) if len(state.snapshots) > 1 else state.snapshots[0]

    monkeypatch.setattr(verify, "snapshot", read)
    return state


def test_verify_prints_a_table_and_passes(cluster, capsys):
    assert cli.main(["verify", "--stack", "staging", "--watch", "10s"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("app "):].split("\n\n")[0]
    assert table.splitlines()[:3] == [
        "app       check        result  detail",
        "--------  -----------  ------  " + "-" * 60,
        "backend   rollout      OK      revision 2: 2/2 updated and available, backend:1.5.0",
    ]
    assert "backend   secrets      OK      backend-secrets synced at 2026-01-01T10:00:00Z" in table
    assert "frontend  http         SKIP    /ready not probed (--http probes it through the API server)" in table
    assert len(table.splitlines()) == 2 + 2 * len(verify.CHECKS)
    assert out.startswith("==> verify staging: backend, frontend in clipper-staging, watching 10s (no HTTP probe: --http adds it)")
    assert out.rstrip().endswith("staging: PASS: every check held for 10s")
    assert cluster.http_asked == [False, False, False]


def test_verify_fails_with_exit_1_and_names_what_failed(cluster, capsys):
    unsynced = external_secret(ready=False, reason="SecretSyncedError", message="could not get secret data from provider")
    cluster.snapshots = [snapshot_of(healthy(), external_secrets={"backend-secrets": unsynced})]
    assert cli.main(["verify", "--stack", "staging", "--apps", "backend", "--watch", "0", "--http"]) == 1
    out = capsys.readouterr().out
    assert ("backend  secrets      FAIL    backend-secrets not synced: SecretSyncedError: could not get secret data "
            "from provider (looked once: --watch 0)") in out
    assert "frontend" not in out.split("==> verify")[1].split("\n", 1)[1]  # --apps backend only
    assert out.rstrip().endswith("staging: FAIL: 1 check(s) failed: backend secrets")
    assert cluster.http_asked == [True]


def test_promote_and_rollback_end_with_verify_unless_no_verify(a_stack, cluster, monkeypatch, capsys):
    from infra.ops import promotion, rollback

    monkeypatch.setattr(promotion, "run_promote", lambda *a, **k: 0)
    monkeypatch.setattr(rollback, "run_rollback", lambda *a, **k: 0)
    cluster.snapshots = [snapshot_of(healthy(), external_secrets={})]  # never syncs: verify fails
    assert cli.main(["promote", "--from", "production", "--to", "staging", "--yes"]) == 1
    assert "staging: FAIL: 1 check(s) failed: backend secrets" in capsys.readouterr().out
    assert cli.main(["rollback", "--stack", "staging", "--steps", "1", "--yes"]) == 1
    assert cli.main(["rollback", "--stack", "staging", "--steps", "1", "--yes", "--no-verify"]) == 0
    assert "verify skipped (--no-verify)" in capsys.readouterr().out
    a_stack.config = stack_config(mode="render")
    assert cli.main(["promote", "--from", "production", "--to", "staging", "--yes"]) == 0
    assert "verify skipped: staging is in render mode" in capsys.readouterr().out


def test_a_refused_promotion_does_not_verify(a_stack, monkeypatch, capsys):
    from infra.ops import promotion

    def refuse(*args, **kwargs):
        raise Refused("nothing proven to promote")

    monkeypatch.setattr(promotion, "run_promote", refuse)
    monkeypatch.setattr(verify, "verify_stack", lambda *a, **k: pytest.fail("verify after a refused promotion"))
    assert cli.main(["promote", "--from", "production", "--to", "staging", "--yes"]) == 1


# --- rotate's steps, against a scripted cluster ------------------------------------------------------------------


class ScriptedKube:
    """kubectl for rotate: the ExternalSecret syncs when annotated; the Secret changes if `new_data`."""

    def __init__(self, new_data, reloader=True):
        self.new_data, self.reloader, self.annotated = new_data, reloader, []
        self.backend = deployment(annotations={RELOAD_ON_SECRET_ANNOTATION: "backend-secrets"})
        self.items = healthy(backend=self.backend)
        self.secret = {"data": {"DATABASE_URL": "b2xk"}}
        self.es = external_secret()
        self.polls = 0

    def get_or_none(self, kind, name, namespace):
        return {"secret": self.secret, rotate.EXTERNAL_SECRET: self.es}[kind]

    def run(self, *args, **kwargs):
        assert args[0] == "annotate" and args[1] == rotate.EXTERNAL_SECRET and args[-1] == "--overwrite"
        self.annotated.append(args[5])
        self.es = external_secret(refreshed="2026-01-01T11:00:00Z")  # the operator syncs
        if self.new_data:
            self.secret = {"data": self.new_data}
            if self.reloader:  # Reloader rolls: revision 3, new pods
                self.backend = deployment(revision="3", annotations={RELOAD_ON_SECRET_ANNOTATION: "backend-secrets"})
                self.items = healthy(backend=self.backend)
        return ""

    def items_of(self, kinds, namespace):
        return self.items


def run_rotation(monkeypatch, scripted_kube, timeout_s=60):
    FakeTime(monkeypatch)
    monkeypatch.setattr(rotate, "clock", verify.clock)
    monkeypatch.setattr(rotate, "sleep", verify.sleep)
    kube_ = SimpleNamespace(get_or_none=scripted_kube.get_or_none, run=scripted_kube.run, items=scripted_kube.items_of)
    return rotate.Rotation(kube_, APPS[0], timeout_s).run()


def test_rotate_forces_a_sync_and_waits_for_the_new_pods(monkeypatch, capsys):
    scripted_kube = ScriptedKube(new_data={"DATABASE_URL": "bmV3"})
    assert run_rotation(monkeypatch, scripted_kube) == 0
    out = capsys.readouterr().out
    assert scripted_kube.annotated and scripted_kube.annotated[0].startswith("force-sync=")
    assert f"==> force-sync of ExternalSecret {NS}/backend-secrets (force-sync=" in out
    assert "synced at 2026-01-01T11:00:00Z" in out and "Secret backend-secrets changed" in out
    assert "revision 3 started" in out
    assert "done in" in out and "pods backend-x1, backend-x2 replaced by backend-x1, backend-x2" in out
    assert "bmV3" not in out and "b2xk" not in out  # secret data is never printed


def test_rotate_refuses_when_the_secret_did_not_change(monkeypatch):
    with pytest.raises(Refused, match="its data did not change: the secret manager still holds the values"):
        run_rotation(monkeypatch, ScriptedKube(new_data=None))


def test_rotate_times_out_when_nothing_rolls_the_app(monkeypatch):
    with pytest.raises(Refused, match="timed out after 1m waiting for Reloader to roll deployment backend"):
        run_rotation(monkeypatch, ScriptedKube(new_data={"DATABASE_URL": "bmV3"}, reloader=False), timeout_s=60)


# --- the Reloader add-on -----------------------------------------------------------------------------------------


def _reloader_chart(sim):
    return [r for r in sim.resources if r.type == "kubernetes:helm.sh/v4:Chart" and r.name == "reloader"]


def test_reloader_values_are_keys_of_the_official_chart_and_scope_it_to_the_app_namespace(charts_dir):
    sim = simulate("production")
    (chart,) = _reloader_chart(sim)
    values = chart.inputs["values"]
    assert unknown_values(charts_dir / "reloader-2.2.16", values) == []
    assert schema_errors(charts_dir / "reloader-2.2.16", values) == []
    settings = values["reloader"]
    assert (settings["watchGlobally"], settings["namespaces"]) == (False, ["clipper-production"])
    assert settings["reloadStrategy"] == "annotations" and settings["ignoreJobs"] is True
    deployments = {r.name: r.inputs["metadata"].get("annotations") for r in sim.of_type("kubernetes:apps/v1:Deployment")}
    assert deployments == {"clipper-production-backend-deployment": {RELOAD_ON_SECRET_ANNOTATION: "backend-secrets"},
                           "clipper-production-frontend-deployment": None}  # frontend syncs no secrets
    policies = {r.name for r in sim.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy") if r.name.startswith("reloader-")}
    assert policies == {"reloader-default-deny", "reloader-allow-dns", "reloader-allow-api-server"}  # no internet


def test_reloader_comes_with_external_secrets_unless_turned_off():
    assert _reloader_chart(simulate("production"))  # External Secrets is on: Reloader too, by default
    for off in ({"addons.reloader.enabled": False},
                {"addons.external-secrets.enabled": False, "apps.backend.secrets": {}}):  # nothing to reload
        sim = simulate("production", off)
        assert not _reloader_chart(sim)
        assert all(not r.inputs["metadata"].get("annotations") for r in sim.of_type("kubernetes:apps/v1:Deployment"))
    import pulumi

    # Asked for by name without External Secrets: refused.
    with pytest.raises(pulumi.RunError, match="addons.reloader.enabled: Reloader rolls apps .* needs addons.external-secrets.enabled"):
        simulate("production", {"addons.reloader.enabled": True, "addons.external-secrets.enabled": False,
                                "apps.backend.secrets": {}})


def test_stack_apps_reads_what_the_checks_need():
    declared = stack_apps(as_stack_config(stack_config()))
    assert declared.namespace == NS and declared.reloader and declared.external_secrets and not declared.cert_manager
    assert declared.apps[0] == AppTarget("backend", NS, BACKEND_IMAGE, "/readyz", secrets=True, certificate=False, reloads=True)
    assert declared.apps[1].health_path == "/ready" and not declared.apps[1].secrets
