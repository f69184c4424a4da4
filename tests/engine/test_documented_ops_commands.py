"""Every `python -m infra.ops` command README.md and docs/ give for the `staging` and `production`
stacks, run exactly as written (the variant without its optional [..] parts; `python` is the repo
venv's, the cwd the project copy, whose infra/ is the ops CLI), in the order an operator runs
them, on one local API server of this module's own. The commands are extracted by the same
function as tests/unit/test_documented_commands.py, so a new documented command runs here
automatically, and one whose ops subcommand JUDGES does not know fails.

The two stacks are their stack files' config re-pointed at the local API server (cloud
`existing`, cluster mode, as Pulumi.local-platform.yaml does it): apps, namespaces, quotas, pod
security, RBAC and network policies as written. Add-ons are off (charts from the internet, and
time) except where a command needs one, in production, from the shared charts: External Secrets
(fake store) and Reloader for `rotate`, Velero for `backups list` and `restore`.

kwok runs no container, so three controllers do not act here; stand-ins do from outside what
`rotate` and `restore` rely on, as in test_ops_verify_cluster.py and test_dr_drill.py: the
External Secrets sync and Reloader's roll (StandInControllers), Velero's hourly backup (one
Completed Backup object) and Velero processing the Restore (its phase set to Completed).

Not run here, and where it is instead:
- the variants *with* the optional parts (`verify ... [--watch 30m]` watches 30 minutes): their
  flags are checked by tests/unit/test_documented_commands.py; --apps/--http/--to-namespace run in
  test_ops_verify_cluster.py and test_dr_drill.py;
- `secrets-provider` without `--dry-run` to a cloud KMS (written as prose, "then without
  --dry-run"): needs the cloud's KMS; test_secrets_provider_change.py runs the change offline
  (passphrase) and shows the awskms change failing cleanly;
- `dr-drill --stack local --yes` (names neither stack; refused on production): test_dr_drill.py.
"""
from __future__ import annotations

import base64
import json
import os
import pty
import select
import shlex
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from infra.ops.cli import build_parser
from infra.simulate import DELETE, apply_overrides
from tests.charts import charts_dir
from tests.engine.engine import ROOT, Project, Result, kubectl
from tests.engine.test_ops_verify_cluster import StandInControllers
from tests.unit.test_documented_commands import OPS, _commands, _variants

STACKS = ("staging", "production")
NS = "clipper-production"
VELERO = "velero"
LOCATION = {"provider": "aws", "bucket": "clipper-documented", "config": {"region": "minio", "s3Url": "http://minio.invalid:9000"}}
BACKUP = "velero-hourly-20261201000000"
PROMPT = b"Type 'yes' to continue: "
OFF = ("ingress-nginx", "cert-manager", "envoy-gateway", "metrics-server", "monitoring")
STORE_KEYS = ("clipper-production-database-url", "clipper-production-jwt-signing-key")


def _argv(command: str) -> list[str]:
    return shlex.split(OPS.match(command).group(1))


def _parsed(command: str):
    try:
        return build_parser().parse_args(_argv(command))
    except SystemExit:  # placeholders (`<command>`): tests/unit/test_documented_commands.py judges those
        return None


def documented() -> dict[str, list[str]]:
    """{command as run: where the docs give it} for each ops command naming staging or production."""
    found: dict[str, list[str]] = {}
    for where, command in _commands():
        if not OPS.match(command):
            continue
        variant = _variants(command)[0]
        parsed = _parsed(variant)
        if parsed and any(getattr(parsed, a, None) in STACKS for a in ("stack", "source", "target")):
            found.setdefault(variant, []).append(where.split(": ")[0])
    return found


# ---- the stacks on the local API server


def _store(database_url: str) -> dict:
    values = {STORE_KEYS[0]: database_url, STORE_KEYS[1]: "jwt-key-v1"}
    return {"fake": {"data": [{"key": k, "value": v} for k, v in values.items()]}}


def on_local_server(stack: str, kubeconfig: Path) -> dict:
    """The stack file's config, on the local API server; add-ons off but those a command needs."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    needed = {  # production: External Secrets + Reloader (rotate), Velero (backups, restore)
        "clipper:existing.secretStore": _store("postgres://v1"),
        "clipper:addons.external-secrets.waitForSync": False,
        "clipper:addons.reloader.enabled": True,
        "clipper:addons.backups.location": LOCATION,
    } if stack == "production" else {
        "clipper:addons.external-secrets.enabled": False,
        "clipper:addons.backups.enabled": False,
        "clipper:apps.backend.secrets": DELETE,  # synced by External Secrets, which is off
    }
    return apply_overrides(document["config"], {
        "clipper:cloud": "existing",
        "clipper:existing": {"mode": "cluster", "kubeconfig": str(kubeconfig)},
        "clipper:network.controlPlaneCidrs": ["127.0.0.0/8"],  # the local API server is on loopback
        "clipper:ingress.waitForAddress": False,  # no ingress controller runs
        **{f"clipper:addons.{addon}.enabled": False for addon in OFF},
        **needed,
    })


class Deployed:
    def __init__(self, project: Project, kubeconfig: Path, controllers: StandInControllers):
        self.project, self.kubeconfig, self.controllers = project, kubeconfig, controllers

    def json(self, *args):
        return json.loads(kubectl(self.kubeconfig, *args, "-o", "json"))

    def image(self, stack: str, app: str = "backend") -> str:
        """The image the stack's app runs on the cluster."""
        deployment = self.json("get", "deployment", app, "-n", self.project.stack_config(stack)["clipper:appNamespace"])
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    def up(self, stack: str) -> None:
        started = time.monotonic()
        self.project.ok("up", "--stack", stack, "--yes", "--skip-preview", timeout=900)
        print(f"\npulumi up --stack {stack}: {time.monotonic() - started:.1f}s")

    def run(self, command: str, answer: bytes | None = None, timeout: int = 900) -> Result:
        """The command as written, from the project dir; with `answer`, at a terminal that types it at the prompt."""
        env = {**self.project.env, "PATH": f"{self.project.dir / '.venv' / 'bin'}{os.pathsep}{self.project.env['PATH']}"}
        started = time.monotonic()
        if answer is None:
            done = subprocess.run(shlex.split(command), cwd=self.project.dir, env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
            result = Result(done.returncode, done.stdout, done.stderr)
        else:
            result = at_terminal(shlex.split(command), self.project.dir, env, answer, timeout)
        print(f"\n$ {command}   # exit {result.returncode}, {time.monotonic() - started:.1f}s\n{result.output[-4000:]}")
        return result


def at_terminal(argv: list[str], cwd: Path, env: dict, answer: bytes, timeout: int) -> Result:
    """Run with stdin/stdout/stderr on a pseudo-terminal; type `answer` once the confirmation prompt shows."""
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output, answered, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not chunk:
                break
            output += chunk
            if not answered and PROMPT in output:
                os.write(master, answer)
                answered = True
        else:
            process.kill()
        returncode = process.wait(timeout=60)
    finally:
        os.close(master)
    text = output.decode(errors="replace").replace("\r\n", "\n")
    assert answered, f"no confirmation prompt:\n{text[-3000:]}"
    return Result(returncode, text, "")


@pytest.fixture(scope="module")
def deployed(bin_dir, tmp_path_factory, own_cluster):
    """Both stacks `up` on the module's API server, from a committed git checkout (rollback runs
    an update's commit), External Secrets' and Reloader's stand-ins running for production."""
    base = tmp_path_factory.mktemp("documented")
    project = Project.copy_of(ROOT, base, bin_dir)
    project.env["CLIPPER_CHARTS_DIR"] = str(charts_dir())
    shutil.copy(ROOT / ".gitignore", project.dir / ".gitignore")
    for stack in STACKS:
        project.write_stack_config(stack, on_local_server(stack, own_cluster))
        project.init(stack)
    git = {**project.env, "GIT_AUTHOR_NAME": "ops", "GIT_AUTHOR_EMAIL": "ops@example.invalid",
           "GIT_COMMITTER_NAME": "ops", "GIT_COMMITTER_EMAIL": "ops@example.invalid"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run(["git", *command], cwd=project.dir, env=git, check=True, capture_output=True)
    project.env.update({k: v for k, v in git.items() if k.startswith("GIT_")})
    controllers = StandInControllers(own_cluster, NS)
    deployment = Deployed(project, own_cluster, controllers)
    for stack in STACKS:
        deployment.up(stack)
    controllers.start()
    _wait(lambda: controllers.syncs >= 1, 60, lambda: f"ExternalSecret not synced: {controllers.errors}")
    # The backend's HPA raises it to minReplicas (3) after the up: let that settle before any verify.
    _wait(lambda: _available(deployment, "backend") == 3, 120, lambda: "backend never reached 3 available replicas")
    yield deployment
    controllers.stop.set()
    controllers.join(timeout=10)


def _wait(condition, seconds: float, message) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message()
        time.sleep(0.5)


def _available(deployment: Deployed, name: str):
    status = deployment.json("get", "deployment", name, "-n", NS)["status"]
    return status.get("availableReplicas") if status.get("replicas") == status.get("availableReplicas") else None


# ---- how each ops subcommand's documented form is judged, in the order they run


def read_only(d: Deployed, command: str) -> Result:
    """Exit 0, and neither stack file changed."""
    before = {s: (d.project.dir / f"Pulumi.{s}.yaml").read_bytes() for s in STACKS}
    run = d.run(command)
    assert run.returncode == 0, run.output
    assert before == {s: (d.project.dir / f"Pulumi.{s}.yaml").read_bytes() for s in STACKS}, f"{command} changed a stack file"
    return run


def promote(d: Deployed, command: str) -> None:
    """The first promote takes a new staging release to production (the interactive form answered
    at a terminal); one after that finds production running what staging runs, and says so."""
    interactive = "--yes" not in _argv(command)
    released = d.image("staging").rsplit(":", 1)[0] + ":1.5.0"  # the release merged into staging
    if d.image("staging") != released:
        d.project.set("staging", "apps.backend.image", released)
        d.up("staging")
    wanted, running = d.image("staging"), d.image("production")
    already = running == wanted
    run = d.run(command, answer=b"yes\n" if interactive else None)
    assert run.returncode == 0, run.output
    assert d.image("production") == wanted
    assert d.project.stack_config("production")["clipper:apps"]["backend"]["image"] == wanted
    if already:
        assert "production already runs what staging runs: nothing to do" in run.output
    else:
        assert f"backend {running.rsplit(':', 1)[1]} -> {wanted.rsplit(':', 1)[1]}" in run.output
        assert "production: PASS" in run.output  # the verify promote ends with


def rollback(d: Deployed, command: str) -> None:
    if "--dry-run" not in _argv(command):
        pytest.fail(f"{command}: no judge for a rollback that deploys (add one to JUDGES)")
    history = len(d.project.ok("stack", "history", "--json", "--stack", "production").json())
    read_only(d, command)
    assert len(d.project.ok("stack", "history", "--json", "--stack", "production").json()) == history


def rotate(d: Deployed, command: str) -> None:
    """A new value written in the secret manager (the fake provider's store on the cluster, as a
    cloud secret manager is changed: outside Pulumi), then rotate: the Secret changes and Reloader rolls the app."""
    [external_secret] = d.json("get", "externalsecrets", "-n", NS)["items"]
    store = external_secret["spec"]["secretStoreRef"]["name"]
    kubectl(d.kubeconfig, "patch", "clustersecretstore", store, "--type=merge",
            "-p", json.dumps({"spec": {"provider": _store("postgres://v2")}}))
    rolls, before = d.controllers.rolls, _pods(d)
    run = d.run(command)
    assert run.returncode == 0, run.output
    secret = d.json("get", "secret", "backend-secrets", "-n", NS)
    assert base64.b64decode(secret["data"]["DATABASE_URL"]) == b"postgres://v2"
    assert d.controllers.rolls == rolls + 1 and d.controllers.errors == []
    after = _pods(d)
    assert after and not after & before, f"pods not replaced: {before} -> {after}"


def _pods(d: Deployed) -> set[str]:
    pods = d.json("get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=backend")["items"]
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def _completed_backup(d: Deployed) -> None:
    """What Velero's hourly schedule leaves after a run (no Velero runs here)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    backup = {"apiVersion": "velero.io/v1", "kind": "Backup",
              "metadata": {"name": BACKUP, "namespace": VELERO, "labels": {"velero.io/schedule-name": "velero-hourly"}},
              "spec": {"includedNamespaces": [NS], "storageLocation": "default", "ttl": "168h0m0s"},
              "status": {"phase": "Completed", "startTimestamp": now, "completionTimestamp": now}}
    path = d.project.dir.parent / "backup.json"
    path.write_text(json.dumps(backup))
    kubectl(d.kubeconfig, "apply", "-f", str(path))


def backups(d: Deployed, command: str) -> None:
    _completed_backup(d)
    read_only(d, command)


class VeleroRestores(threading.Thread):
    """Velero finishing each new Restore, for a cluster where its controller does not run."""

    def __init__(self, d: Deployed):
        super().__init__(daemon=True)
        self.d, self.stop, self.done = d, threading.Event(), []

    def run(self):
        while not self.stop.wait(0.5):
            for restore in self.d.json("get", "restores.velero.io", "-n", VELERO)["items"]:
                if not (restore.get("status") or {}).get("phase"):
                    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    status = {"status": {"phase": "Completed", "startTimestamp": now, "completionTimestamp": now}}
                    kubectl(self.d.kubeconfig, "patch", "restores.velero.io", restore["metadata"]["name"], "-n", VELERO,
                            "--type=merge", "-p", json.dumps(status))
                    self.done.append(restore)


def restore(d: Deployed, command: str) -> None:
    _completed_backup(d)
    velero = VeleroRestores(d)
    velero.start()
    try:
        run = d.run(command)
    finally:
        velero.stop.set()
        velero.join(timeout=10)
    assert run.returncode == 0, run.output
    [made] = velero.done
    assert made["spec"]["backupName"] == BACKUP and made["spec"]["includedNamespaces"] == [NS]
    assert "namespaceMapping" not in made["spec"], "documented without --to-namespace: in place"
    assert f"restore {made['metadata']['name']}: Completed" in run.output


def recover(d: Deployed, command: str) -> None:
    """Nothing interrupted here: both forms find nothing to do, exit 0, and say so."""
    assert "nothing to recover: production has no pending operations" in read_only(d, command).output


def secrets_provider(d: Deployed, command: str) -> None:
    if "--dry-run" not in _argv(command):
        pytest.fail(f"{command}: no judge for a secrets-provider change (add one to JUDGES)")
    history = len(d.project.ok("stack", "history", "--json", "--stack", _parsed(command).stack).json())
    read_only(d, command)
    assert len(d.project.ok("stack", "history", "--json", "--stack", _parsed(command).stack).json()) == history


JUDGES = {
    "preflight": read_only,
    "history": read_only,
    "diff": read_only,
    "promote": promote,
    "verify": read_only,
    "drift": read_only,
    "rollback": rollback,
    "secrets-provider": secrets_provider,
    "rotate": rotate,
    "backups": backups,
    "restore": restore,
    "recover": recover,
}
DOCUMENTED = documented()


def _order(command: str) -> tuple:
    subcommand = _parsed(command).command
    return (list(JUDGES).index(subcommand) if subcommand in JUDGES else len(JUDGES), command)


def test_the_docs_give_day_2_commands_for_both_stacks():
    subcommands = {_parsed(c).command for c in DOCUMENTED}
    assert subcommands <= set(JUDGES), f"documented, with no judge here: {sorted(subcommands - set(JUDGES))}"
    assert {"promote", "rollback", "verify", "backups", "restore", "rotate", "recover"} <= subcommands
    assert any("--from staging --to production" in c for c in DOCUMENTED)


@pytest.mark.parametrize("command", sorted(DOCUMENTED, key=_order),
                         ids=[f"{', '.join(DOCUMENTED[c])}: {c}" for c in sorted(DOCUMENTED, key=_order)])
def test_documented_command_runs_as_written(deployed, command):
    subcommand = _parsed(command).command
    if subcommand not in JUDGES:
        pytest.fail(f"`{command}` ({', '.join(DOCUMENTED[command])}): no judge for `{subcommand}` in JUDGES")
    JUDGES[subcommand](deployed, command)
