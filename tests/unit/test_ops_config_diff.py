"""Promotion plans and config restores, computed from recorded config (no engine)."""
import copy
import json
from pathlib import Path

import pytest

from infra.ops.config_diff import config_differences, plan_promotion, plan_restore
from infra.ops.errors import BadUsage
from infra.ops.history import parse_history
from infra.ops.stack_config import (
    ConfigEntry,
    config_json,
    parse_config,
    project_defaults,
    without_implicit_defaults,
)

FIXTURES = Path(__file__).parent / "fixtures" / "history"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def updates():
    records = parse_history(json.loads((FIXTURES / "local-production.file-backend.json").read_text()))
    return {r.number: r for r in records}


def with_setting(config, key, change):
    config = copy.deepcopy(config)
    value = copy.deepcopy(config[key].value)
    change(value)
    config[key] = ConfigEntry(value, config[key].secret, structured=True)
    return config


def test_promotion_copies_images_and_keeps_target_settings(updates):
    staging, production = updates[2].config, updates[1].config
    production = with_setting(production, "clipper:apps", lambda apps: apps["backend"].update(replicas=3))
    plan = plan_promotion("local-staging", staging, "local-production", production)
    assert plan.has_changes
    assert plan.message().startswith("promote local-staging -> local-production: backend 1.4.2 -> 1.5.0, frontend 2.1.0 -> sha256:")
    updated = plan.updated_target_config(production)
    assert set(updated) == {"clipper:apps"}
    apps = updated["clipper:apps"].value
    assert apps["backend"]["image"] == "ghcr.io/clpr-tv/backend:1.5.0"
    assert apps["backend"]["replicas"] == 3  # per-stack settings stay
    assert production["clipper:apps"].value["backend"]["image"].endswith(":1.4.2")  # input untouched


def test_replicas_are_shown_for_context(updates):
    plan = plan_promotion("a", updates[2].config, "b", updates[1].config)
    backend = next(a for a in plan.apps if a.app == "backend")
    assert (backend.source_replicas, backend.target_replicas) == ("1", "1")


def test_only_selected_apps_are_promoted(updates):
    plan = plan_promotion("a", updates[2].config, "b", updates[1].config, only_apps=["backend"])
    assert [a.app for a in plan.apps] == ["backend"]
    assert plan.change_summary() == "backend 1.4.2 -> 1.5.0"


def test_unknown_app_is_bad_usage(updates):
    with pytest.raises(BadUsage, match=r"unknown app\(s\) payments: apps in both a and b are backend, frontend"):
        plan_promotion("a", updates[2].config, "b", updates[1].config, only_apps=["backend", "payments"])


def test_apps_in_one_stack_only_are_noted_not_promoted(updates):
    staging = with_setting(updates[2].config, "clipper:apps", lambda apps: apps.update(worker={"image": "w:1.0.0"}))
    plan = plan_promotion("a", staging, "b", updates[1].config)
    assert plan.notes == ("app worker exists only in a: not promoted",)


def test_only_add_ons_marked_promotable_in_the_source_are_copied(updates):
    def bump(addons):
        addons["cert-manager"].update(promotable=True, version="v1.22.0")
        addons["metrics-server"].update(version="3.14.0")  # not promotable

    staging = with_setting(updates[2].config, "clipper:addons", bump)
    production = updates[2].config  # same images: only the add-on changes
    plan = plan_promotion("a", staging, "b", production)
    assert [(a.addon, a.target_version, a.source_version) for a in plan.addons] == [("cert-manager", "v1.21.1", "v1.22.0")]
    assert plan.change_summary() == "cert-manager v1.21.1 -> v1.22.0"
    addons = plan.updated_target_config(production)["clipper:addons"].value
    assert addons["cert-manager"] == {"enabled": False, "version": "v1.22.0"}
    assert "version" not in addons["metrics-server"]


def test_identical_stacks_have_nothing_to_promote(updates):
    plan = plan_promotion("a", updates[2].config, "b", updates[2].config)
    assert not plan.has_changes and plan.updated_target_config(updates[2].config) == {}
    assert plan.change_summary() == "no changes"


def test_restore_sets_every_key_of_the_update_and_removes_later_ones(updates):
    current = parse_config(json.loads((FIXTURES / "local-production.config.json").read_text()))
    current["clipper:ingress"] = ConfigEntry({"controller": "gateway"}, structured=True)
    restore = plan_restore(current, updates[1].config)
    assert restore.remove == ("clipper:ingress",)
    assert restore.changed == ("clipper:apps",)
    assert restore.wanted == updates[1].config
    assert restore.wanted["clipper:notificationWebhook"].secret


def test_differences_never_show_secret_values(updates):
    current = dict(updates[1].config, **{"clipper:notificationWebhook": ConfigEntry("https://new", secret=True)})
    rows = config_differences(current, updates[1].config)
    assert rows == [("clipper:notificationWebhook", "[secret]", "[secret]")]


def test_differences_list_changed_leaves_of_objects(updates):
    rows = config_differences(updates[2].config, updates[1].config)
    assert rows[0] == ("clipper:apps.backend.image", "ghcr.io/clpr-tv/backend:1.5.0", "ghcr.io/clpr-tv/backend:1.4.2")
    assert [r[0] for r in rows] == ["clipper:apps.backend.image", "clipper:apps.frontend.image"]


def test_set_all_json_round_trips_structure_and_secrecy(updates):
    config = updates[1].config
    payload = json.loads(config_json(config))
    assert payload["clipper:apps"]["objectValue"] == config["clipper:apps"].value
    assert json.loads(payload["clipper:apps"]["value"]) == config["clipper:apps"].value
    assert payload["clipper:notificationWebhook"] == {"value": config["clipper:notificationWebhook"].value, "secret": True}
    assert parse_config(payload) == config


def test_project_defaults_are_not_spelled_out_unless_the_stack_file_sets_them():
    defaults = project_defaults(ROOT / "Pulumi.yaml")
    assert defaults["clipper:cloud"] == ConfigEntry("existing")
    assert defaults["clipper:network"] == ConfigEntry({}, structured=True)
    wanted = {
        "clipper:cloud": ConfigEntry("existing"),
        "clipper:network": ConfigEntry({}, structured=True),
        "clipper:apps": ConfigEntry({"backend": {}}, structured=True),
    }
    kept = without_implicit_defaults(wanted, defaults, explicit_keys={"clipper:cloud", "clipper:apps"})
    assert set(kept) == {"clipper:cloud", "clipper:apps"}
