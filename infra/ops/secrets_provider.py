"""`secrets-provider`: move a stack's secrets to another secrets provider, and prove nothing was lost.

`pulumi stack change-secrets-provider` decrypts the stack file's secrets and the state's with the
old provider and re-encrypts them with the new one. It writes the stack file first and imports the
re-encrypted state last, and takes a new passphrase from standard input when there is no terminal
(an empty one when there is no input). So around it: refuse unless the current provider decrypts
every secret (config and state), keep a backup of the state and the stack file's bytes, put both
back when the CLI fails, then read everything again under the new provider and compare.
History is never re-encrypted (see `history_under_old_provider`).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from pulumi import automation as auto

from infra.ops import console, stacks
from infra.ops.errors import BadUsage, Refused
from infra.ops.stack_config import StackConfig

PASSPHRASE, SERVICE_DEFAULT = "passphrase", "default"
KMS_SCHEMES = ("awskms", "gcpkms", "azurekeyvault", "hashivault")
# The passphrase provider's new passphrase: never on the command line (shell history, process list).
NEW_PASSPHRASE_ENV = "CLIPPER_NEW_CONFIG_PASSPHRASE"
BACKUP_DIR = Path(".state") / "secrets-provider"
# How the engine marks a secret value in a deployment (`pulumi stack export`).
SECRET_SIGNATURE = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
GCP_KEY = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
SUPPORTED = "passphrase, default (Pulumi Cloud), awskms://, gcpkms://, azurekeyvault://, hashivault://"


def parse_target(url: str) -> str:
    """The provider URL as the CLI takes it, or BadUsage naming what is wrong with it."""
    text = url.strip()
    if text in (PASSPHRASE, SERVICE_DEFAULT):
        return text
    parts = urlsplit(text)
    if parts.scheme not in KMS_SCHEMES or "://" not in text:
        kind = parts.scheme or text
        raise BadUsage(f"--to {url!r}: {kind!r} is not a secrets provider the pulumi CLI takes ({SUPPORTED})")
    where = f"{parts.netloc}{parts.path}"
    if parts.scheme == "gcpkms" and not GCP_KEY.match(where):
        raise BadUsage(f"--to {url!r}: a gcpkms URL names a key as "
                       "gcpkms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>")
    if parts.scheme == "azurekeyvault" and not (parts.netloc and re.match(r"^/keys/[^/]+", parts.path)):
        raise BadUsage(f"--to {url!r}: an azurekeyvault URL names a key as azurekeyvault://<vault>.vault.azure.net/keys/<key>")
    if parts.scheme == "awskms" and not where.strip("/"):
        raise BadUsage(f"--to {url!r}: an awskms URL names a key: awskms://alias/<name>?region=<r> (or a key id or ARN)")
    if parts.scheme == "hashivault" and not where.strip("/"):
        raise BadUsage(f"--to {url!r}: a hashivault URL names a transit key: hashivault://<key>")
    return text


def describe_provider(settings: auto.StackSettings) -> str:
    """The provider a stack file records: its URL, `passphrase` (a salt), or the backend's default."""
    if settings.secrets_provider:
        return settings.secrets_provider
    return PASSPHRASE if settings.encryption_salt else f"{SERVICE_DEFAULT} (the backend's)"


def secret_values(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every secret in an exported deployment: plaintext when exported with
    --show-secrets, ciphertext otherwise."""
    if isinstance(node, dict):
        if node.get(SECRET_SIGNATURE[0]) == SECRET_SIGNATURE[1]:
            yield where, node.get("plaintext", node.get("ciphertext"))
            return
        for key, value in node.items():
            yield from secret_values(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from secret_values(value, f"{where}[{index}]")


@dataclass(frozen=True)
class Secrets:
    """Everything secret in a stack as one provider decrypts it: the config and the state."""

    config: StackConfig
    deployment: dict

    @property
    def config_secrets(self) -> list[str]:
        return sorted(key for key, entry in self.config.items() if entry.secret)

    @property
    def state_secrets(self) -> dict[str, Any]:
        return dict(secret_values(self.deployment.get("resources") or []))


def read_secrets(stack: auto.Stack, provider: str) -> Secrets:
    """Decrypt the stack file's config and the latest state; Refused naming the one that fails."""
    try:
        config = stacks.read_config(stack)
    except auto.CommandError as error:
        raise stacks.engine_failure(f"decrypting the config of {stack.name} with {provider}", error) from None
    try:
        deployment = json.loads(stacks.export_state(stack, show_secrets=True))["deployment"]
    except auto.CommandError as error:
        raise stacks.engine_failure(f"decrypting the state of {stack.name} with {provider}", error) from None
    return Secrets(config, deployment)


def differences(before: Secrets, after: Secrets) -> list[str]:
    """What the new provider gives back differently from the old (empty when all is equal)."""
    found = [f"config {key}" for key in sorted(set(before.config) | set(after.config))
             if before.config.get(key) != after.config.get(key)]
    old, new = before.state_secrets, after.state_secrets
    found += [f"state secret {path}" for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]
    if before.deployment.get("resources") != after.deployment.get("resources") and not found:
        found.append("state resources (other than secrets)")
    return found


def _new_passphrase(target: str) -> Optional[str]:
    if target != PASSPHRASE:
        return None
    phrase = os.environ.get(NEW_PASSPHRASE_ENV, "")
    if not phrase.strip():
        raise BadUsage(f"--to passphrase: set the new passphrase in ${NEW_PASSPHRASE_ENV} (it must not be empty; "
                       "the current one stays in $PULUMI_CONFIG_PASSPHRASE)")
    return phrase


def _run_change(stack: auto.Stack, target: str, new_passphrase: Optional[str], current: str) -> subprocess.CompletedProcess:
    """`pulumi stack change-secrets-provider`, with the new passphrase where the CLI reads it:
    standard input when the stack is on a passphrase already, else $PULUMI_CONFIG_PASSPHRASE."""
    workspace = stack.workspace
    env = {**os.environ, **(workspace.env_vars or {})}
    if workspace.pulumi_home:
        env["PULUMI_HOME"] = workspace.pulumi_home
    if new_passphrase is not None and current != PASSPHRASE:
        env["PULUMI_CONFIG_PASSPHRASE"] = new_passphrase
    return subprocess.run(
        ["pulumi", "stack", "change-secrets-provider", target, "--stack", stack.name, "--non-interactive"],
        cwd=workspace.work_dir, env=env, input=f"{new_passphrase or ''}\n", capture_output=True, text=True,
    )


def _put_back(stack: auto.Stack, stack_file: Optional[Path], saved: Optional[bytes], backup: Path) -> str:
    """After a failed change: the stack file's bytes, and the state from the backup if it moved."""
    if stack_file is not None and saved is not None and stack_file.read_bytes() != saved:
        stack_file.write_bytes(saved)
    if json.loads(stacks.export_state(stack)) != json.loads(backup.read_text()):
        stacks.import_state(stack, backup)
        return "stack file and state put back as they were"
    return "stack file put back as it was; the state was not changed"


def history_under_old_provider(stack: auto.Stack) -> list[str]:
    """Labels of the updates whose recorded config the current provider cannot decrypt."""
    return [record.label for record in stacks.history(stack)
            if any(not entry.readable for entry in record.config.values())]


def run_secrets_provider(stack_name: str, to: str, dry_run: bool, assume_yes: bool, work_dir: Path) -> int:
    target = parse_target(to)
    new_passphrase = _new_passphrase(target)
    stack = stacks.open_stack(stack_name, work_dir)
    if target == SERVICE_DEFAULT and not stacks.backend_url(stack).startswith("https://"):
        raise BadUsage("--to default: the default secrets provider is Pulumi Cloud's; this stack's backend is "
                       f"{stacks.backend_url(stack)} (choose passphrase or a KMS key)")
    current = describe_provider(stack.workspace.stack_settings(stack.name))
    stack_file = stacks.stack_file(stack)

    console.step(f"secrets of {stack.name} under the current provider ({current})")
    before = read_secrets(stack, f"the current provider ({current})")
    pending = before.deployment.get("pending_operations") or []
    if pending:
        raise Refused(f"the state of {stack.name} has {len(pending)} pending operation(s) from an interrupted update: "
                      f"run `python -m infra.ops recover --stack {stack.name}` first")
    console.say(f"{stack.name}: {current} -> {target}")
    console.say(f"  config secrets: {len(before.config_secrets)} ({', '.join(before.config_secrets) or 'none'}), "
                f"decrypted")
    console.say(f"  state secrets: {len(before.state_secrets)}, decrypted")
    console.say(f"  stack file: {stack_file or 'none (the CLI creates one)'}")
    if dry_run:
        console.say(f"dry run: nothing was changed (the current provider decrypts every secret of {stack.name})")
        return 0
    console.confirm(f"Re-encrypt the secrets of {stack.name} with {target}", assume_yes)

    console.step(f"preview of {stack.name} before the change")
    summary_before = _changes(stacks.preview(stack, {}))
    backup = _backup_state(stack, work_dir)
    console.say(f"state backup (encrypted with {current}): {backup}")
    saved = stack_file.read_bytes() if stack_file else None

    console.step(f"pulumi stack change-secrets-provider {target} --stack {stack.name}")
    changed = _run_change(stack, target, new_passphrase, current)
    for line in (changed.stdout + changed.stderr).splitlines():
        console.engine_output(line)
    if changed.returncode != 0:
        what = _put_back(stack, stack_file, saved, backup)
        detail = "\n".join(line.strip() for line in changed.stderr.splitlines() if line.strip())[-1500:]
        raise Refused(f"change-secrets-provider of {stack.name} to {target} failed ({what}):\n{detail}")

    console.step(f"secrets of {stack.name} under {target}")
    new_env = {"PULUMI_CONFIG_PASSPHRASE": new_passphrase} if new_passphrase is not None else None
    after_stack = stacks.open_stack(stack.name, work_dir, env=new_env)
    revert = (f"the change is made; to undo it: put back the stack file from git and "
              f"`pulumi stack import --stack {stack.name} --file {backup}` with the old provider's key")
    after = read_secrets(after_stack, f"the new provider ({target})")
    lost = differences(before, after)
    if lost:
        raise Refused(f"{target} gives back different values than {current} for: {', '.join(lost)}; {revert}")
    console.say(f"  config secrets: {len(after.config_secrets)} equal; state secrets: {len(after.state_secrets)} equal")
    console.step(f"preview of {stack.name} with {target}")
    summary_after = _changes(stacks.preview(after_stack, {}))
    if summary_after != summary_before:
        raise Refused(f"the preview changed: before {summary_before or 'no changes'}, after "
                      f"{summary_after or 'no changes'}; {revert}")
    console.say(f"  preview: {_summary_text(summary_after)}, as before the change")

    old_updates = history_under_old_provider(after_stack)
    console.say()
    console.say(f"done: {stack.name} encrypts its secrets with {target}")
    if stack_file:
        console.say(f"commit {stack_file.name} now (its provider settings changed): until then others read it with the old key")
    if target == PASSPHRASE:
        console.say(f"from now on: PULUMI_CONFIG_PASSPHRASE = the new passphrase (${NEW_PASSPHRASE_ENV})")
    if old_updates:
        which = old_updates[0] if len(old_updates) == 1 else f"{old_updates[-1]} to {old_updates[0]}"
        console.say(f"history: {len(old_updates)} earlier update(s) keep their secrets encrypted with the old provider "
                    f"({current}): {which}. `rollback` to them refuses unless run with the old provider's key: keep "
                    f"that key (and {backup}) for as long as you may roll back that far.")
    else:
        console.say("history: no earlier update holds secrets under the old provider")
    return 0


def _changes(result: auto.PreviewResult) -> dict[str, int]:
    return {op: n for op, n in sorted((result.change_summary or {}).items()) if n and op != "same"}


def _summary_text(changes: dict[str, int]) -> str:
    return ", ".join(f"{n} {op}" for op, n in changes.items()) or "no changes"


def _backup_state(stack: auto.Stack, work_dir: Path) -> Path:
    """The state as it is, encrypted as it is, in .state/secrets-provider/ (ignored by git)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = work_dir / BACKUP_DIR / f"{stack.name.replace('/', '_')}-before-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stacks.export_state(stack))
    return path
