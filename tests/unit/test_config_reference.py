"""Pulumi.yaml's config declarations and docs/configuration.md are generated from the models."""
import yaml

from infra.config import PlatformConfig
from infra.config_reference import PROJECT_FILE, REFERENCE, main, project_config, reference_markdown


def test_pulumi_yaml_and_reference_are_current():
    assert main(["--check"]) == 0, "run `make docs`"


def test_every_top_level_key_is_declared_in_pulumi_yaml():
    declared = yaml.safe_load(PROJECT_FILE.read_text())["config"]
    aliases = {f"clipper:{f.alias or n}" for n, f in PlatformConfig.model_fields.items()}
    assert set(declared) == aliases
    assert all(entry["description"] for entry in declared.values())


def test_scalar_keys_carry_pulumi_types_and_defaults():
    block = project_config()
    assert block["clipper:cloud"]["type"] == "string" and "default" in block["clipper:cloud"]
    assert "default" not in block["clipper:environment"]  # required: no default to hide a missing key


def test_reference_lists_nested_keys_with_defaults():
    text = reference_markdown()
    assert "| `clipper:apps.<name>.autoscaling.minReplicas` | integer | `2` |" in text
    assert REFERENCE.read_text() == text


def test_nested_defaults_are_what_the_parent_field_gives():
    # A nested model's class defaults are not what users get when the parent field sets its own
    # (Cluster Autoscaler's resources, the apps' probes): every `addons.*` default shown is the value
    # an empty `addons:` block really yields.
    from infra.config import Addons

    actual = Addons().model_dump(by_alias=True)
    checked = 0
    for line in reference_markdown().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) != 4 or not cells[0].startswith("`clipper:addons.") or not cells[2].startswith("`"):
            continue
        value = actual
        for part in cells[0].strip("`").removeprefix("clipper:addons.").split("."):
            value = value[part] if isinstance(value, dict) and part in value else KeyError
        if value is KeyError or value is None:
            continue
        shown = yaml.safe_load(cells[2].strip("`").replace("\\|", "|"))
        assert shown == value, f"{cells[0]}: reference says {shown!r}, an empty addons block gives {value!r}"
        checked += 1
    assert checked > 50
