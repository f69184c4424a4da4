"""A stack's configuration as the Pulumi CLI reads and writes it, with structure and secrecy kept.

`pulumi config --json --show-secrets` and `pulumi stack history --json --show-secrets` both give
each key as `{"value": text, "objectValue": structure?, "secret": bool}`; `pulumi config set-all
--json` takes the same shape back (it reads `value`, and stores it as an object when
`objectValue` is present). The Automation API's `ConfigValue` keeps only the text, which would turn
`clipper:apps` into a JSON string on the way back: hence this module.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from infra.config import PROJECT

SECRET_MASK = "[secret]"
UNDECRYPTABLE = "ERROR_UNABLE_TO_DECRYPT"  # what the engine shows for a secret its current key cannot open


@dataclass(frozen=True)
class ConfigEntry:
    """One config key's value: structured (object/list/number as YAML holds it) or plain text."""

    value: Any
    secret: bool = False
    structured: bool = False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "ConfigEntry":
        secret = bool(raw.get("secret", False))
        if "objectValue" in raw:
            return cls(raw["objectValue"], secret, structured=True)
        # A secret shown without --show-secrets has no value: kept as None, never as the mask.
        return cls(raw.get("value"), secret)

    def to_json(self) -> dict[str, Any]:
        if self.structured:
            return {"value": json.dumps(self.value), "objectValue": self.value, "secret": self.secret}
        return {"value": self.value, "secret": self.secret}

    @property
    def readable(self) -> bool:
        """False for a secret whose plaintext the CLI did not give (no --show-secrets, no key), or
        gave as the engine's placeholder for one it could not decrypt (history recorded under an
        earlier secrets provider keeps the old ciphertext)."""
        return self.value is not None and not (self.secret and self.value == UNDECRYPTABLE)

    def display(self) -> str:
        if self.secret:
            return SECRET_MASK
        return json.dumps(self.value, sort_keys=True) if self.structured else str(self.value)


StackConfig = dict[str, ConfigEntry]


def parse_config(raw: Mapping[str, Mapping[str, Any]]) -> StackConfig:
    """Parse the `{key: {value, objectValue?, secret}}` map of `pulumi config --json` or history."""
    return {key: ConfigEntry.from_json(entry) for key, entry in (raw or {}).items()}


def config_json(config: StackConfig) -> str:
    """The JSON text `pulumi config set-all --json` takes."""
    return json.dumps({key: entry.to_json() for key, entry in sorted(config.items())})


def project_key(name: str) -> str:
    """`apps` -> `clipper:apps`."""
    return f"{PROJECT}:{name}"


def project_setting(config: StackConfig, name: str, default: Any = None) -> Any:
    """The value of `clipper:<name>` (structured when it is an object), or `default`."""
    entry: Optional[ConfigEntry] = config.get(project_key(name))
    if entry is None:
        return default
    return entry.value


def plain_project_settings(config: StackConfig) -> dict[str, Any]:
    """The `clipper:` keys without their namespace, as `infra.simulate.simulate(config=...)` takes them."""
    prefix = project_key("")
    return {key[len(prefix):]: entry.value for key, entry in config.items() if key.startswith(prefix)}


def project_defaults(project_file: Path) -> StackConfig:
    """The defaults Pulumi.yaml declares (`config: {key: {default: ...}}`), as config entries.

    The CLI reports them in `pulumi config --json` and records them in history like set keys.
    """
    document = yaml.safe_load(project_file.read_text()) or {}
    project = document.get("name", PROJECT)
    defaults: StackConfig = {}
    for key, declaration in (document.get("config") or {}).items():
        if not isinstance(declaration, dict) or "default" not in declaration:
            continue
        full_key = key if ":" in key else f"{project}:{key}"
        value = declaration["default"]
        defaults[full_key] = ConfigEntry(value, structured=not isinstance(value, str))
    return defaults


def without_implicit_defaults(entries: StackConfig, defaults: StackConfig, explicit_keys: set[str]) -> StackConfig:
    """Drop entries that only restate a project default the stack file does not set itself,
    so writing a recorded config back does not spell every default out in the stack file."""
    return {
        key: entry
        for key, entry in entries.items()
        if key in explicit_keys or defaults.get(key) != entry
    }


def existing_kubeconfig(existing: Mapping[str, Any], work_dir: Path) -> tuple[Path, str]:
    """The kubeconfig an existing-cluster stack uses, resolved as the program reads it, and where
    it came from: "config" (clipper:existing.kubeconfig), "env" ($KUBECONFIG) or "default"."""
    if existing.get("kubeconfig"):
        path = Path(os.path.expanduser(existing["kubeconfig"]))
        return (path if path.is_absolute() else work_dir / path), "config"
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if from_env:
        return Path(from_env), "env"
    return Path.home() / ".kube" / "config", "default"
