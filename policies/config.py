"""Policy config files per stack, and how the Pulumi CLI turns one into each rule's config.

File shape (what ``pulumi preview --policy-pack-config FILE`` reads)::

    {"all": "advisory", "<rule>": "mandatory" | {"enforcementLevel": "...", ...rule config}}

``reconcile`` mirrors the CLI (schema defaults, then "all", then per-rule entries) so that
``policies.pack.evaluate`` configures the pack the way a real preview does. ``config_errors`` is
stricter than the CLI on purpose: the CLI ignores unknown rule names and unknown properties, which
turns a typo into a silently unenforced setting.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import jsonschema
from pulumi_policy import EnforcementLevel

from policies.framework import Rule, config_defaults

CONFIG_DIR = Path(__file__).parent / "config"
STACKS = ("production", "staging", "local")
ALL_RULES_KEY = "all"
_LEVEL_KEY = "enforcementLevel"
_LEVELS = {level.value: level for level in EnforcementLevel}


def config_path(stack: str) -> Path:
    return CONFIG_DIR / f"{stack}.json"


def load_stack_config(stack: str) -> dict[str, Any]:
    return json.loads(config_path(stack).read_text())


def _split(entry: Any) -> tuple[Optional[str], dict[str, Any]]:
    """An entry is a bare level or an object with an optional level plus rule config."""
    if isinstance(entry, str):
        return entry, {}
    properties = dict(entry)
    return properties.pop(_LEVEL_KEY, None), properties


def _rule_schema(rule: Rule) -> dict[str, Any]:
    schema = rule.config_schema
    return {
        "type": "object",
        "properties": dict(schema.properties) if schema else {},
        "required": list(schema.required or []) if schema else [],
        "additionalProperties": False,
    }


def config_errors(rules: Sequence[Rule], config: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a config file: unknown rules, bad levels, config failing its schema."""
    by_name = {rule.name: rule for rule in rules}
    errors = []
    for key, entry in config.items():
        if not isinstance(entry, (str, Mapping)):
            errors.append(f"{key}: must be an enforcement level or an object")
            continue
        level, properties = _split(entry)
        if level is not None and level not in _LEVELS:
            errors.append(f"{key}: {level!r} is not an enforcement level")
        if key == ALL_RULES_KEY:
            if properties:
                errors.append(f"{key}: takes only an enforcement level")
            continue
        if key not in by_name:
            errors.append(f"{key}: no such rule in the pack")
            continue
        validator = jsonschema.Draft7Validator(_rule_schema(by_name[key]))
        errors.extend(f"{key}: {error.message}" for error in validator.iter_errors(properties))
    return errors


def reconcile(
    rules: Sequence[Rule],
    config: Optional[Mapping[str, Any]] = None,
    level_overrides: Optional[Mapping[str, str]] = None,
) -> dict[str, tuple[EnforcementLevel, dict[str, Any]]]:
    """Each rule's enforcement level and full config, as the CLI would hand them to the pack.

    ``level_overrides`` ({rule or "all": level}) is applied after ``config``, like a second file.
    """
    layers = [dict(config or {}), dict(level_overrides or {})]
    for layer in layers:
        errors = config_errors(rules, layer)
        if errors:
            raise ValueError("invalid policy config: " + "; ".join(errors))
    result = {rule.name: (rule.enforcement_level, config_defaults(rule.config_schema)) for rule in rules}
    for layer in layers:
        all_level, _ = _split(layer.get(ALL_RULES_KEY, {}))
        if all_level is not None:
            result = {name: (_LEVELS[all_level], properties) for name, (_, properties) in result.items()}
        for name, entry in layer.items():
            if name == ALL_RULES_KEY:
                continue
            level, properties = _split(entry)
            current_level, current_properties = result[name]
            result[name] = (_LEVELS[level] if level else current_level, {**current_properties, **properties})
    return result
