"""`python -m infra.ops` against the real engine on the two local stacks (render mode), each test
on its own copy of the project and of a throwaway file backend in which v1 runs in both stacks and
v2 in local-staging. The drift test needs the local API server and runs only when it is built."""
from __future__ import annotations

import json

import pytest

from infra.ops.history import parse_history
from infra.rendered import rendered_objects
from tests.engine.engine import ROOT, Project, kubectl

STAGING, PRODUCTION = "local-staging", "local-production"
STACK_FILES = [f"Pulumi.{STAGING}.yaml", f"Pulumi.{PRODUCTION}.yaml"]
WEBHOOK = {s: f"https://hooks.clpr.localhost/deploys/{s}" for s in (STAGING, PRODUCTION)}
V1_BACKEND, V2_BACKEND = "ghcr.io/clpr-tv/backend:1.4.2", "ghcr.io/clpr-tv/backend:1.5.0"


class OpsProject(Project):
    """A project copy with the two local stacks, as the ops CLI sees them."""

    def deploy(self, stack: str, message: str) -> None:
        self.ok("up", "--stack", stack, "--yes", "--skip-preview", "--message", message)

    def set_image(self, stack: str, app: str, image: str) -> None:
        self.ok("config", "set", "--path", f"clipper:apps.{app}.image", image, "--stack", stack)

    def history(self, stack: str):
        return parse_history(self.ok("stack", "history", "--json", "--show-secrets", "--stack", stack).json())

    def rendered_image(self, stack: str, app: str) -> str:
        """The image of the app's Deployment as the provider rendered it."""
        directory = self.dir / self.stack_config(stack)["clipper:existing"]["renderDir"]
        deployments = [d for d in rendered_objects(directory) if d["kind"] == "Deployment" and d["metadata"]["name"] == app]
        assert len(deployments) == 1, f"expected one rendered Deployment {app} in {directory}"
        return deployments[0]["spec"]["template"]["spec"]["containers"][0]["image"]

    def snapshot(self) -> tuple:
        """What must not change when a command refuses: stack files and every stack's history."""
        files = tuple((self.dir / name).read_text() for name in STACK_FILES)
        return files, tuple(len(self.history(stack)) for stack in (STAGING, PRODUCTION))


@pytest.fixture(scope="module")
def deployed(bin_dir, tmp_path_factory) -> OpsProject:
    """v1 in both local stacks, then v2 (backend 1.5.0) in local-staging. No policy pack: the
    policy test below runs it on its own."""
    project = OpsProject.copy_of(ROOT, tmp_path_factory.mktemp("ops-template"), bin_dir, with_policies=False)
    for stack in (STAGING, PRODUCTION):
        project.ok("stack", "init", stack)
        project.deploy(stack, "deploy v1")
    project.set_image(STAGING, "backend", V2_BACKEND)
    project.deploy(STAGING, "deploy v2")
    return project


@pytest.fixture
def project(deployed, tmp_path) -> OpsProject:
    return deployed.clone(tmp_path)


def test_promote_then_rollback_restores_v1_config_and_secret(project):
    promoted = project.ops("promote", "--from", STAGING, "--to", PRODUCTION, "--yes")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "==> preview of local-production" in promoted.stdout and "  | " in promoted.stdout  # engine progress
    assert project.outputs(PRODUCTION)["appImages"]["backend"] == V2_BACKEND
    assert project.rendered_image(PRODUCTION, "backend") == V2_BACKEND
    newest = project.history(PRODUCTION)[0]
    assert newest.message == "promote local-staging -> local-production: backend 1.4.2 -> 1.5.0"

    rolled = project.ops("rollback", "--stack", PRODUCTION, "--steps", "1", "--yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    history = project.history(PRODUCTION)
    v1 = next(r for r in history if r.number == 1)
    assert history[0].message.startswith("rollback local-production to update 1 (")
    assert history[0].config == v1.config  # the rollback ran with exactly v1's config
    assert project.outputs(PRODUCTION)["appImages"]["backend"] == V1_BACKEND
    assert project.rendered_image(PRODUCTION, "backend") == V1_BACKEND
    webhook = project.ok("config", "get", "clipper:notificationWebhook", "--json", "--stack", PRODUCTION).json()
    assert webhook == {"value": WEBHOOK[PRODUCTION], "secret": True}
    assert project.outputs(PRODUCTION)["notificationWebhook"] == WEBHOOK[PRODUCTION]
    assert "secure:" in (project.dir / f"Pulumi.{PRODUCTION}.yaml").read_text()  # still encrypted at rest

    listed = project.ops("history", "--stack", PRODUCTION, "--json")
    assert [e["number"] for e in json.loads(listed.stdout)] == [3, 2, 1]
    assert WEBHOOK[PRODUCTION] not in listed.stdout


def test_rollback_to_a_failed_update_is_refused_and_changes_nothing(project):
    project.set_image(PRODUCTION, "backend", "ghcr.io/clpr-tv/backend")  # no tag: the program rejects it
    assert project.pulumi("up", "--stack", PRODUCTION, "--yes", "--skip-preview").returncode != 0
    failed = project.history(PRODUCTION)[0]
    assert (failed.number, failed.result) == (2, "failed")
    before = project.snapshot()
    refused = project.ops("rollback", "--stack", PRODUCTION, "--to", "2", "--yes")
    assert refused.returncode == 1
    assert "update 2" in refused.stderr and "did not deploy" in refused.stderr
    assert project.snapshot() == before

    # --steps 1 undoes the failed update: back to v1, the last good config.
    rolled = project.ops("rollback", "--stack", PRODUCTION, "--steps", "1", "--yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert project.history(PRODUCTION)[0].config == project.history(PRODUCTION)[-1].config


def test_promotion_from_a_failed_source_is_refused(project):
    project.set_image(STAGING, "backend", "ghcr.io/clpr-tv/backend")
    assert project.pulumi("up", "--stack", STAGING, "--yes", "--skip-preview").returncode != 0
    before = project.snapshot()
    refused = project.ops("promote", "--from", STAGING, "--to", PRODUCTION, "--yes")
    assert refused.returncode == 1
    assert "the newest update of local-staging" in refused.stderr and "failed" in refused.stderr
    assert project.snapshot() == before


def test_promotion_needs_yes_without_a_terminal(project):
    before = project.snapshot()
    refused = project.ops("promote", "--from", STAGING, "--to", PRODUCTION)
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert project.snapshot() == before  # the staged config was put back after the preview


@pytest.mark.parametrize(
    "args,message",
    [
        (["promote", "--from", STAGING, "--to", "nowhere", "--yes"], "unknown stack 'nowhere'"),
        (["promote", "--from", STAGING, "--to", STAGING, "--yes"], "both 'local-staging'"),
        (["promote", "--from", STAGING, "--to", PRODUCTION, "--apps", "payments", "--yes"], "unknown app(s) payments"),
        (["rollback", "--stack", PRODUCTION, "--to", "7", "--yes"], "there is no update 7"),
        (["rollback", "--stack", PRODUCTION, "--steps", "5", "--yes"], "--steps 5: only 0 successful update(s)"),
        (["history", "--stack", "nowhere"], "unknown stack 'nowhere'"),
    ],
)
def test_bad_arguments_exit_2_with_one_message_and_change_nothing(project, args, message):
    before = project.snapshot()
    run = project.ops(*args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and run.stderr.count("\n") == 1
    assert project.snapshot() == before


def test_diff_preflight_and_drift_on_render_mode_stacks(project):
    diff = project.ops("diff", "--from", STAGING, "--to", PRODUCTION)
    assert diff.returncode == 0
    assert "promotion would: backend 1.4.2 -> 1.5.0" in diff.stdout
    preflight = project.ops("preflight", "--stack", PRODUCTION)
    assert preflight.returncode == 0, preflight.stdout + preflight.stderr
    assert "local-production: GO" in preflight.stdout
    for check in ("config validates", "pulumi CLI", "Kubernetes provider", "preview", "policy pack", "no pending operations"):
        assert check in preflight.stdout
    drift = project.ops("drift", "--stack", PRODUCTION)
    assert drift.returncode == 0 and "render mode" in drift.stdout


def test_preflight_says_no_go_on_bad_config(project):
    project.set_image(PRODUCTION, "frontend", "ghcr.io/clpr-tv/frontend:latest")
    run = project.ops("preflight", "--stack", PRODUCTION)
    assert run.returncode == 1
    assert "local-production: NO-GO" in run.stdout and "mutable tag 'latest'" in run.stdout


def test_promote_previews_with_the_policy_pack(bin_dir, tmp_path):
    project = OpsProject.copy_of(ROOT, tmp_path, bin_dir)
    for stack in (STAGING, PRODUCTION):
        project.ok("stack", "init", stack)
        project.deploy(stack, "deploy v1")
    project.set_image(STAGING, "backend", V2_BACKEND)
    project.deploy(STAGING, "deploy v2")
    run = project.ops("promote", "--from", STAGING, "--to", PRODUCTION, "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "with the policy pack" in run.stdout
    assert project.outputs(PRODUCTION)["appImages"]["backend"] == V2_BACKEND


def test_drift_in_cluster_mode_is_found_and_blocks_promotion(deployed, local_cluster, tmp_path):
    """On the local API server: promote runs v2 live; a change made with kubectl is drift, which
    `drift` lists (exit 1) and which makes `promote` from that stack refuse."""
    project = deployed.clone(tmp_path)
    for stack in (STAGING, PRODUCTION):
        project.ok("config", "set", "--path", "clipper:existing.mode", "cluster", "--stack", stack)
        project.ok("config", "set", "--path", "clipper:existing.kubeconfig", str(local_cluster), "--stack", stack)
        project.deploy(stack, "move to the local cluster")
    promoted = project.ops("promote", "--from", STAGING, "--to", PRODUCTION, "--yes")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    live = kubectl(local_cluster, "-n", "clipper-production", "get", "deployment", "backend",
                   "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert live == V2_BACKEND

    assert project.ops("drift", "--stack", STAGING).returncode == 0
    # The runbook's old way to deploy: an image change behind Pulumi's back.
    kubectl(local_cluster, "-n", "clipper-staging", "set", "image", "deployment/backend", "backend=ghcr.io/clpr-tv/backend:9.9.9")
    drift = project.ops("drift", "--stack", STAGING)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "Deployment" in drift.stdout and "changed outside Pulumi" in drift.stdout
    before = project.snapshot()
    refused = project.ops("promote", "--from", STAGING, "--to", PRODUCTION, "--yes")
    assert refused.returncode == 1 and "drifted from its recorded state" in refused.stderr
    assert project.snapshot() == before
