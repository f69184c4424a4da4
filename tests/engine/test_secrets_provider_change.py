"""`python -m infra.ops secrets-provider` on the real engine, on a copy of the project with its own
file backend: local-staging and local-production deployed (local-production twice, so it has
history), and `production` / `staging` stacks made from their stack files (no update: they need a
cloud), production with a secret set.

- every command of docs/backends.md's "Changing a stack's secrets provider safely" block, run as
  written from the project copy: the KMS dry runs decrypt and change nothing; the awskms change
  itself fails here (no AWS credentials, no network) and leaves stack file and state as they were;
  the passphrase change re-encrypts config and state, proves it, and says what history keeps;
- bad input: one clear message, exit 2 (usage) or 1 (refused), stack file byte-identical, state
  and history unchanged.

Only the passphrase provider runs offline: the CLI built here refuses gocloud.dev's `base64key://`
(tested below as unsupported input), and the KMS providers need their cloud.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest

from tests.engine.engine import ROOT, Result
from tests.engine.test_ops import PRODUCTION, STAGING, V2_BACKEND, WEBHOOK, OpsProject

DOCS = ROOT / "docs" / "backends.md"
SECTION = "### Changing a stack's secrets provider safely"
REAL_STACKS = ("production", "staging")
REAL_WEBHOOK = "https://hooks.clpr.tv/deploys/production"
NO_AWS = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def documented_commands() -> list[str]:
    """The lines of the section's first code block."""
    section = DOCS.read_text().split(SECTION, 1)[1]
    return [line for line in section.split("```")[1].strip().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def deployed(bin_dir, tmp_path_factory) -> OpsProject:
    project = OpsProject.copy_of(ROOT, tmp_path_factory.mktemp("secrets-template"), bin_dir, with_policies=False)
    for stack in (STAGING, PRODUCTION):
        project.ok("stack", "init", stack)
        project.deploy(stack, "deploy v1")
    project.set_image(PRODUCTION, "backend", V2_BACKEND)
    project.deploy(PRODUCTION, "deploy v2")
    for stack in REAL_STACKS:
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", project.dir / f"Pulumi.{stack}.yaml")
        project.ok("stack", "init", stack)
    project.ok("config", "set", "--secret", "clipper:notificationWebhook", REAL_WEBHOOK, "--stack", "production")
    return project


@pytest.fixture
def project(deployed, tmp_path) -> OpsProject:
    return deployed.clone(tmp_path)


def snapshot(project: OpsProject, stack: str) -> tuple:
    """What a refused change must leave alone: the stack file's bytes, the state, the history."""
    state = json.loads(project.ok("stack", "export", "--stack", stack).stdout)
    history = project.ok("stack", "history", "--json", "--stack", stack).json()
    return (project.dir / f"Pulumi.{stack}.yaml").read_bytes(), state, len(history)


def run_as_written(project: OpsProject, line: str, env: dict) -> Result:
    """A documented line from the project copy (whose infra/ is the ops CLI), `python` the venv's."""
    words = shlex.split(line)
    assignments = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    env = {**env, **assignments, "PATH": f"{project.dir / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"}
    done = subprocess.run(words, cwd=project.dir, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    print(f"\n$ {line}   # exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr}")
    return Result(done.returncode, done.stdout, done.stderr)


def _option(line: str, name: str) -> str:
    words = shlex.split(line)
    return words[words.index(name) + 1]


def _stack_of(line: str) -> str:
    return _option(line, "--stack")


def _provider_kind(line: str) -> str:
    return _option(line, "--to").split("://")[0]


def test_the_documented_block_is_what_this_module_runs():
    lines = documented_commands()
    assert len(lines) == 4
    assert sum("--dry-run" in line for line in lines) == 3
    assert {_provider_kind(line) for line in lines} == {"awskms", "gcpkms", "azurekeyvault", "passphrase"}


@pytest.mark.parametrize("line", [line for line in documented_commands() if "--dry-run" in line],
                         ids=_provider_kind)
def test_documented_dry_run_decrypts_and_changes_nothing(project, line):
    stack = _stack_of(line)
    before = snapshot(project, stack)
    run = run_as_written(project, line, project.env)
    assert run.returncode == 0, run.output
    secrets = "1 (clipper:notificationWebhook)" if stack == "production" else "0 (none)"
    assert f"config secrets: {secrets}, decrypted" in run.stdout
    assert "dry run: nothing was changed" in run.stdout
    assert snapshot(project, stack) == before


def test_awskms_change_without_credentials_fails_at_the_kms_and_changes_nothing(project):
    """The change itself, past every check and the preview: the CLI cannot reach AWS KMS here."""
    before = snapshot(project, PRODUCTION)
    env = {key: value for key, value in project.env.items() if not key.startswith("AWS_")}
    project.env = {**env, **NO_AWS}
    run = project.ops("secrets-provider", "--stack", PRODUCTION, "--to", "awskms://alias/clipper-production?region=eu-west-1", "--yes")
    print(run.output)
    assert run.returncode == 1, run.output
    assert "refused: change-secrets-provider of local-production to awskms://alias/clipper-production" in run.stderr
    assert "KMS" in run.stderr and "stack file put back as it was; the state was not changed" in run.stderr
    assert snapshot(project, PRODUCTION) == before


def test_documented_passphrase_change_reencrypts_config_and_state(project):
    line = next(line for line in documented_commands() if "--to passphrase" in line)
    stack = _stack_of(line)
    assert stack == STAGING
    new = shlex.split(line)[0].split("=", 1)[1]
    project.deploy(stack, "deploy in this copy")  # render paths are absolute: the clone's differ from the template's
    stack_file = project.dir / f"Pulumi.{stack}.yaml"
    salt_before = [row for row in stack_file.read_text().splitlines() if row.startswith("encryptionsalt:")]

    run = run_as_written(project, line, project.env)
    assert run.returncode == 0, run.output
    assert "config secrets: 1 equal; state secrets: 2 equal" in run.stdout
    assert "preview: no changes, as before the change" in run.stdout
    assert "history: 2 earlier update(s) keep their secrets encrypted with the old provider (passphrase): update 1 (" in run.stdout
    assert f"commit Pulumi.{stack}.yaml now" in run.stdout
    salt_after = [row for row in stack_file.read_text().splitlines() if row.startswith("encryptionsalt:")]
    assert salt_after and salt_after != salt_before and WEBHOOK[stack] not in stack_file.read_text()
    backups = list((project.dir / ".state" / "secrets-provider").glob(f"{stack}-before-*.json"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["deployment"]["resources"]

    old_key = project.pulumi("config", "get", "clipper:notificationWebhook", "--stack", stack)
    assert old_key.returncode != 0 and "incorrect passphrase" in old_key.output
    project.env["PULUMI_CONFIG_PASSPHRASE"] = new
    assert project.ok("config", "get", "clipper:notificationWebhook", "--stack", stack).stdout.strip() == WEBHOOK[stack]
    assert project.outputs(stack)["notificationWebhook"] == WEBHOOK[stack]  # the state decrypts too
    project.ok("preview", "--stack", stack, "--expect-no-changes")
    assert project.history(stack)[-1].config["clipper:notificationWebhook"].value == "ERROR_UNABLE_TO_DECRYPT"

    # What the command said about history holds: an update under the new key, then a rollback to
    # the one before the change refuses, naming the secret, and changes nothing.
    project.set_image(stack, "backend", "ghcr.io/clpr-tv/backend:1.6.0")
    project.deploy(stack, "deploy under the new passphrase")
    before = snapshot(project, stack)
    rolled = project.ops("rollback", "--stack", stack, "--steps", "1", "--yes")
    assert rolled.returncode == 1 and "cannot decrypt (clipper:notificationWebhook)" in rolled.stderr, rolled.output
    assert snapshot(project, stack) == before


BAD_INPUT = [
    pytest.param(["--stack", "nope", "--to", "awskms://alias/x?region=eu-west-1"], {}, 2, "unknown stack 'nope'", id="unknown-stack"),
    pytest.param(["--stack", PRODUCTION, "--to", "base64key://c2VjcmV0"], {}, 2,
                 "'base64key' is not a secrets provider the pulumi CLI takes", id="unsupported-base64key"),
    pytest.param(["--stack", PRODUCTION, "--to", "gcpkms://clpr-ops/production"], {}, 2,
                 "a gcpkms URL names a key as gcpkms://projects/", id="unparsable-gcpkms"),
    pytest.param(["--stack", PRODUCTION, "--to", "not a url"], {}, 2, "is not a secrets provider", id="not-a-url"),
    pytest.param(["--stack", PRODUCTION, "--to", "passphrase", "--yes"], {}, 2,
                 "set the new passphrase in $CLIPPER_NEW_CONFIG_PASSPHRASE", id="no-new-passphrase"),
    pytest.param(["--stack", PRODUCTION, "--to", "default", "--yes"], {}, 2,
                 "the default secrets provider is Pulumi Cloud's", id="default-on-file-backend"),
    pytest.param(["--stack", PRODUCTION, "--to", "passphrase", "--yes"],
                 {"PULUMI_CONFIG_PASSPHRASE": "not-the-passphrase", "CLIPPER_NEW_CONFIG_PASSPHRASE": "x"}, 1,
                 "decrypting the config of local-production with the current provider (passphrase) failed:\nerror: incorrect passphrase",
                 id="wrong-current-passphrase"),
    pytest.param(["--stack", PRODUCTION, "--to", "passphrase"], {"CLIPPER_NEW_CONFIG_PASSPHRASE": "x"}, 1,
                 "not confirmed (no terminal to ask on); pass --yes", id="not-confirmed"),
]


@pytest.mark.parametrize("args, env, code, message", BAD_INPUT)
def test_bad_input_is_one_clear_message_and_changes_nothing(project, args, env, code, message):
    before = snapshot(project, PRODUCTION)
    saved = dict(project.env)
    project.env.update(env)
    try:
        run = project.ops("secrets-provider", *args)
    finally:
        project.env = saved
    print(run.output)
    assert run.returncode == code, run.output
    assert message in run.stderr
    assert run.stderr.count("python -m infra.ops secrets-provider: ") == 1
    assert snapshot(project, PRODUCTION) == before
    assert not (project.dir / ".state" / "secrets-provider").exists()  # refused before any backup
