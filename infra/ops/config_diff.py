"""What a promotion or a rollback changes in a stack's config, computed before anything is written.

Promotion copies the *promotable* settings only: each app's image, and the chart version of each
add-on the source marks `promotable: true`. Everything else (hosts, replicas, quotas, secrets) is
per stack and stays. Rollback restores one earlier update's config exactly: every key it had, with
its value and secrecy, and no key it did not have.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import ValidationError

from components.app import AppSettings
from infra.config import Addons
from infra.ops.errors import BadUsage
from infra.ops.history import app_versions
from infra.ops.stack_config import ConfigEntry, StackConfig, project_key, project_setting

APPS = "apps"
ADDONS = "addons"
_ADDON_DEFAULTS = {field.alias or name: field.default for name, field in Addons.model_fields.items()}


def replicas_text(app: Optional[dict]) -> str:
    """How many pods an app config runs: `3-10 (HPA)` with autoscaling, else the fixed count."""
    if app is None:
        return "-"
    try:
        settings = AppSettings.model_validate(app)
    except ValidationError:
        return "invalid"
    if settings.autoscaling.enabled:
        return f"{settings.autoscaling.min_replicas}-{settings.autoscaling.max_replicas} (HPA)"
    return str(settings.replicas)


def addon_version(addons: dict, name: str) -> Optional[str]:
    """The chart version an add-ons config pins for `name`: its own, else the component default."""
    settings = addons.get(name) or {}
    if settings.get("version"):
        return str(settings["version"])
    default = _ADDON_DEFAULTS.get(name)
    return getattr(default, "version", None)


@dataclass(frozen=True)
class AppPromotion:
    app: str
    source_image: str
    target_image: str
    source_version: str
    target_version: str
    source_replicas: str
    target_replicas: str

    @property
    def changes(self) -> bool:
        return self.source_image != self.target_image


@dataclass(frozen=True)
class AddonPromotion:
    addon: str
    source_version: str
    target_version: Optional[str]

    @property
    def changes(self) -> bool:
        return self.source_version != self.target_version


@dataclass(frozen=True)
class PromotionPlan:
    source: str
    target: str
    apps: tuple[AppPromotion, ...]
    addons: tuple[AddonPromotion, ...]
    notes: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return any(item.changes for item in (*self.apps, *self.addons))

    def promoted_values(self) -> dict[str, str]:
        """What the source side offers: `{"app backend": image, "add-on cert-manager": version}`."""
        values = {f"app {a.app}": a.source_image for a in self.apps}
        values.update({f"add-on {a.addon}": a.source_version for a in self.addons})
        return values

    def change_summary(self) -> str:
        """`backend 1.4.2 -> 1.5.0, cert-manager v1.19.1 -> v1.20.0` (changed items only)."""
        parts = [f"{a.app} {a.target_version} -> {a.source_version}" for a in self.apps if a.changes]
        parts += [f"{a.addon} {a.target_version or '-'} -> {a.source_version}" for a in self.addons if a.changes]
        return ", ".join(parts) or "no changes"

    def message(self) -> str:
        """The update message recorded in the target's history."""
        return f"promote {self.source} -> {self.target}: {self.change_summary()}"

    def updated_target_config(self, target_config: StackConfig) -> StackConfig:
        """The target's `clipper:apps` / `clipper:addons` entries with the promoted values set."""
        updated: StackConfig = {}
        changed_apps = [a for a in self.apps if a.changes]
        if changed_apps:
            apps = copy.deepcopy(project_setting(target_config, APPS, {}))
            for item in changed_apps:
                apps[item.app]["image"] = item.source_image
            updated[project_key(APPS)] = _structured_like(target_config, APPS, apps)
        changed_addons = [a for a in self.addons if a.changes]
        if changed_addons:
            addons = copy.deepcopy(project_setting(target_config, ADDONS, {}))
            for item in changed_addons:
                addons.setdefault(item.addon, {})["version"] = item.source_version
            updated[project_key(ADDONS)] = _structured_like(target_config, ADDONS, addons)
        return updated


def _structured_like(config: StackConfig, name: str, value: Any) -> ConfigEntry:
    existing = config.get(project_key(name))
    return ConfigEntry(value, secret=bool(existing and existing.secret), structured=True)


def plan_promotion(
    source: str,
    source_config: StackConfig,
    target: str,
    target_config: StackConfig,
    only_apps: Optional[list[str]] = None,
) -> PromotionPlan:
    """Compare the promotable settings of two configs. Unknown `only_apps` names are bad usage."""
    source_apps = project_setting(source_config, APPS, {}) or {}
    target_apps = project_setting(target_config, APPS, {}) or {}
    shared = [name for name in sorted(source_apps) if name in target_apps]
    notes = []
    if only_apps is not None:
        unknown = [name for name in only_apps if name not in shared]
        if unknown:
            raise BadUsage(
                f"unknown app(s) {', '.join(unknown)}: apps in both {source} and {target} are "
                f"{', '.join(shared) or 'none'}"
            )
        selected = [name for name in shared if name in only_apps]
    else:
        selected = shared
        for name in sorted(set(source_apps) ^ set(target_apps)):
            where = source if name in source_apps else target
            notes.append(f"app {name} exists only in {where}: not promoted")
    source_versions, target_versions = app_versions(source_config), app_versions(target_config)
    apps = tuple(
        AppPromotion(
            app=name,
            source_image=source_apps[name].get("image", ""),
            target_image=target_apps[name].get("image", ""),
            source_version=source_versions[name],
            target_version=target_versions[name],
            source_replicas=replicas_text(source_apps[name]),
            target_replicas=replicas_text(target_apps[name]),
        )
        for name in selected
    )
    source_addons = project_setting(source_config, ADDONS, {}) or {}
    target_addons = project_setting(target_config, ADDONS, {}) or {}
    addons = tuple(
        AddonPromotion(name, addon_version(source_addons, name), addon_version(target_addons, name))
        for name in sorted(source_addons)
        if (source_addons[name] or {}).get("promotable") is True
    )
    return PromotionPlan(source, target, apps, addons, tuple(notes))


@dataclass(frozen=True)
class ConfigRestore:
    """What to write so a stack's config becomes exactly `wanted`."""

    wanted: StackConfig
    remove: tuple[str, ...]
    changed: tuple[str, ...]  # keys whose value or secrecy differs, plus added ones

    @property
    def has_changes(self) -> bool:
        return bool(self.remove or self.changed)

    def changed_entries(self) -> StackConfig:
        """Only the entries to write: unchanged keys keep their text (and ciphertext) in the file."""
        return {key: self.wanted[key] for key in self.changed}


def plan_restore(current: StackConfig, wanted: StackConfig) -> ConfigRestore:
    remove = tuple(sorted(set(current) - set(wanted)))
    changed = tuple(sorted(key for key, entry in wanted.items() if current.get(key) != entry))
    return ConfigRestore(wanted=dict(wanted), remove=remove, changed=changed)


def _leaf_differences(path: str, now: Any, then: Any) -> list[tuple[str, str, str]]:
    """Changed leaves of two structured values, as (dotted path, now, then)."""
    if isinstance(now, dict) and isinstance(then, dict):
        rows = []
        for key in sorted(set(now) | set(then), key=str):
            rows += _leaf_differences(f"{path}.{key}", now.get(key, _UNSET), then.get(key, _UNSET))
        return rows
    if now == then:
        return []
    return [(path, _leaf_text(now), _leaf_text(then))]


_UNSET = object()


def _leaf_text(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(value)


def config_differences(current: StackConfig, wanted: StackConfig) -> list[tuple[str, str, str]]:
    """(key, now, then) for each setting that differs, object keys down to the changed leaves;
    secrets are shown as changed, never in plaintext."""
    rows = []
    for key in sorted(set(current) | set(wanted)):
        now, then = current.get(key), wanted.get(key)
        if now == then:
            continue
        if now and then and not now.secret and not then.secret and now.structured and then.structured:
            rows += _leaf_differences(key, now.value, then.value)
        else:
            rows.append((key, now.display() if now else "(unset)", then.display() if then else "(unset)"))
    return rows
