"""The engine and the ops CLI on an S3 backend, as a team's `pulumi login s3://...` uses one: MinIO
(a real S3 server, built from its Go module by tests/s3server.py) on loopback, the stacks' state
in a bucket, reached through the AWS SDK with an access key, exactly as for AWS S3 but with an
`endpoint`. Every test has its own key prefix in the one bucket (`s3://bucket/<prefix>`).

- two `pulumi up` of one stack at once: the second is refused by the backend's lock object, the
  first completes, the lock is gone afterwards and a `preview` shows no changes;
- history, promote and rollback give the same results on S3 as on the file backend (the scenario
  of tests/engine/test_ops.py), and each promote's wall time is printed (`-s` shows it);
- a secrets-provider change (docs/backends.md's procedure, on the passphrase provider).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.engine.engine import ROOT
from tests.engine.test_ops import PRODUCTION, STAGING, V1_BACKEND, V2_BACKEND, WEBHOOK, OpsProject
from tests.s3server import build_minio, running_s3

BUCKET = "clipper-state"
LOCKED = "the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end"
# Runs in the Python program's interpreter only (the language host's exec script): the update
# holds its lock while the program runs, so the program pausing keeps the first `up` in flight.
SLOW_PROGRAM = """\
import os, sys, time
if sys.argv and sys.argv[0].endswith("pulumi-language-python-exec"):
    time.sleep(float(os.environ["CLIPPER_TEST_PROGRAM_DELAY"]))
"""


@pytest.fixture(scope="module")
def s3(bin_dir, tmp_path_factory):
    """One MinIO for the module, with the bucket made."""
    try:
        binary = build_minio()
    except RuntimeError as error:
        if os.environ.get("CLIPPER_REQUIRE_ENGINE") == "1":
            pytest.fail(str(error))
        pytest.skip(str(error))
    with running_s3(tmp_path_factory.mktemp("s3") / "data", binary) as server:
        server.create_bucket(BUCKET)
        yield server


def on_s3(project: OpsProject, s3, prefix: str) -> OpsProject:
    """Point a project copy at the bucket, under its own prefix, with the AWS SDK's settings."""
    project.env.update(s3.env(), PULUMI_BACKEND_URL=s3.backend_url(BUCKET, prefix))
    return project


def lock_keys(s3, prefix: str) -> list[str]:
    return s3.keys(BUCKET, f"{prefix}/.pulumi/locks/")


def test_second_concurrent_up_is_refused_by_the_s3_lock_and_state_stays_intact(s3, bin_dir, tmp_path):
    prefix = "concurrent"
    project = on_s3(OpsProject.copy_of(ROOT, tmp_path, bin_dir, with_policies=False), s3, prefix)
    project.ok("stack", "init", STAGING)
    project.deploy(STAGING, "deploy v1")
    assert any(k.endswith(f"/stacks/clipper/{STAGING}.json") for k in s3.keys(BUCKET, prefix))  # state is in S3
    project.set_image(STAGING, "backend", V2_BACKEND)

    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_PROGRAM)
    first_env = {**project.env, "PYTHONPATH": str(slow), "CLIPPER_TEST_PROGRAM_DELAY": "8"}
    up = ["pulumi", "up", "--stack", STAGING, "--yes", "--skip-preview", "--non-interactive"]
    first = subprocess.Popen([*up, "--message", "first"], cwd=project.dir, env=first_env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not lock_keys(s3, prefix):
            assert first.poll() is None, f"the first up ended before its lock was seen:\n{first.stdout.read()}"
            assert time.monotonic() < deadline, "the first up never wrote its lock object"
            time.sleep(0.1)
        held = lock_keys(s3, prefix)
        assert len(held) == 1 and held[0].startswith(f"{prefix}/.pulumi/locks/organization/clipper/{STAGING}/")

        second = project.pulumi("up", "--stack", STAGING, "--yes", "--skip-preview", "--message", "second")
        assert first.poll() is None, "the first up was over before the second ran: nothing was concurrent"
    finally:
        first_output, _ = first.communicate(timeout=600)
    print(f"\nsecond `pulumi up` while the first ran (exit {second.returncode}):\n{second.output.strip()}")

    assert second.returncode != 0
    assert LOCKED in second.output
    assert f"s3://{BUCKET}/{held[0]}" in second.output  # names the lock object
    assert re.search(r"created by \S+@\S+ \(pid \d+\) at \d{4}-", second.output)
    assert first.returncode == 0, first_output[-4000:]
    assert lock_keys(s3, prefix) == []  # released

    history = project.history(STAGING)
    assert [(r.message, r.result) for r in history] == [("first", "succeeded"), ("deploy v1", "succeeded")]
    preview = project.ok("preview", "--stack", STAGING, "--expect-no-changes", "--diff")
    assert "no changes" in preview.stdout.lower() or "unchanged" in preview.stdout
    assert project.outputs(STAGING)["appImages"]["backend"] == V2_BACKEND
    assert project.rendered_image(STAGING, "backend") == V2_BACKEND


def _promote_and_roll_back(project: OpsProject) -> tuple[dict, float]:
    """test_ops' scenario: v1 in both stacks, v2 in staging; promote, then roll production back.
    What a user sees of it (times left out), and the promote's wall time."""
    for stack in (STAGING, PRODUCTION):
        project.ok("stack", "init", stack)
        project.deploy(stack, "deploy v1")
    project.set_image(STAGING, "backend", V2_BACKEND)
    project.deploy(STAGING, "deploy v2")

    started = time.monotonic()
    promoted = project.ops("promote", "--from", STAGING, "--to", PRODUCTION, "--yes")
    promote_seconds = time.monotonic() - started
    assert promoted.returncode == 0, promoted.output
    after_promote = (project.outputs(PRODUCTION)["appImages"], project.rendered_image(PRODUCTION, "backend"))

    rolled = project.ops("rollback", "--stack", PRODUCTION, "--steps", "1", "--yes")
    assert rolled.returncode == 0, rolled.output
    history = {stack: json.loads(project.ops("history", "--stack", stack, "--json").stdout) for stack in (STAGING, PRODUCTION)}
    for entries in history.values():
        for entry in entries:
            del entry["startTime"], entry["endTime"]
            entry["message"] = re.sub(r"\(\d{4}-\d\d-\d\d [\d:]+ UTC\)", "(<time>)", entry["message"])
    newest = project.history(PRODUCTION)
    return {
        "after promote": after_promote,
        "after rollback": (project.outputs(PRODUCTION), project.rendered_image(PRODUCTION, "backend")),
        "rollback restored v1's config": newest[0].config == newest[-1].config,
        "history": history,
        "stack file": (project.dir / f"Pulumi.{PRODUCTION}.yaml").read_text().count("secure:"),
    }, promote_seconds


def test_history_promote_and_rollback_on_s3_match_the_file_backend(s3, bin_dir, tmp_path):
    on_file, file_seconds = _promote_and_roll_back(
        OpsProject.copy_of(ROOT, tmp_path / "file", bin_dir, with_policies=False))
    on_bucket, s3_seconds = _promote_and_roll_back(
        on_s3(OpsProject.copy_of(ROOT, tmp_path / "s3", bin_dir, with_policies=False), s3, "parity"))
    print(f"\npromote local-staging -> local-production: file backend {file_seconds:.2f} s, S3 (MinIO) {s3_seconds:.2f} s")

    assert on_bucket == on_file
    assert on_bucket["after promote"] == ({"backend": V2_BACKEND, "frontend": on_bucket["after promote"][0]["frontend"]},
                                          V2_BACKEND)
    assert on_bucket["after rollback"][0]["appImages"]["backend"] == V1_BACKEND
    assert on_bucket["after rollback"][1] == V1_BACKEND
    assert on_bucket["rollback restored v1's config"]
    production = on_bucket["history"][PRODUCTION]
    assert [e["number"] for e in production] == [3, 2, 1]
    assert production[0]["message"].startswith("rollback local-production to update 1 (<time>)")
    assert production[1]["message"] == "promote local-staging -> local-production: backend 1.4.2 -> 1.5.0"
    assert any(k.endswith(f"/stacks/clipper/{PRODUCTION}.json") for k in s3.keys(BUCKET, "parity"))
    assert lock_keys(s3, "parity") == []


def test_secrets_provider_change_on_s3_then_rollback_past_it(s3, bin_dir, tmp_path):
    """docs/backends.md's procedure on the passphrase provider: the change re-encrypts config and
    state (the new passphrase comes on stdin without a terminal), the stack previews with no
    changes; history before the change stays under the old key. A rollback past the change must
    not restore undecryptable secrets: it refuses, naming them."""
    project = on_s3(OpsProject.copy_of(ROOT, tmp_path, bin_dir, with_policies=False), s3, "secrets")
    project.ok("stack", "init", PRODUCTION)
    project.deploy(PRODUCTION, "deploy v1")
    stack_file = project.dir / f"Pulumi.{PRODUCTION}.yaml"
    before = stack_file.read_text()
    changed = subprocess.run(["pulumi", "stack", "change-secrets-provider", "passphrase", "--stack", PRODUCTION,
                              "--non-interactive"], cwd=project.dir, env=project.env, input="clipper-rotated\n",
                             capture_output=True, text=True, timeout=300)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    after = stack_file.read_text()
    salt = lambda text: [line for line in text.splitlines() if line.startswith("encryptionsalt:")]
    assert salt(after) and salt(after) != salt(before) and WEBHOOK[PRODUCTION] not in after
    assert project.pulumi("config", "get", "clipper:notificationWebhook", "--stack", PRODUCTION).returncode != 0
    project.env["PULUMI_CONFIG_PASSPHRASE"] = "clipper-rotated"
    assert project.ok("config", "get", "clipper:notificationWebhook", "--stack", PRODUCTION).stdout.strip() == WEBHOOK[PRODUCTION]
    project.ok("preview", "--stack", PRODUCTION, "--expect-no-changes")
    assert project.outputs(PRODUCTION)["notificationWebhook"] == WEBHOOK[PRODUCTION]  # state re-encrypted too
    v1 = project.history(PRODUCTION)[-1]
    assert v1.config["clipper:notificationWebhook"].value == "ERROR_UNABLE_TO_DECRYPT"  # history keeps the old key

    project.set_image(PRODUCTION, "backend", V2_BACKEND)
    project.deploy(PRODUCTION, "deploy v2")
    rolled = project.ops("rollback", "--stack", PRODUCTION, "--steps", "1", "--yes")
    webhook = project.pulumi("config", "get", "clipper:notificationWebhook", "--stack", PRODUCTION).stdout.strip()
    assert rolled.returncode == 1 and "decrypt" in rolled.stderr, rolled.output
    assert webhook == WEBHOOK[PRODUCTION]
