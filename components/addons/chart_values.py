"""Are the values we pass a chart ones that chart version has?

Helm silently ignores a values key the chart does not read, so a misspelt or renamed key turns a
setting off without a word. `unknown_values` finds such keys from the chart's own `values.yaml` and
templates; `schema_errors` runs the chart's `values.schema.json`, as `helm install` would.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from components.settings import deep_merge

# A dotted values path the templates read: `.Values.a.b`, `$.Values.a.b`, `with .Values.a`, `toYaml .Values.a`...
_TEMPLATE_REFERENCE = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_PLAIN = (dict, list, str, int, float, bool, type(None))
_OPAQUE = object()  # a value only known at deployment (a pulumi Output)


def chart_version(chart_dir: Path) -> str:
    return str(_chart_yaml(chart_dir)["version"])


def unknown_values(chart_dir: Path, values: dict) -> list[str]:
    """Dotted paths in `values` that the chart does not have.

    Values are checked against the chart's defaults while those are a non-empty mapping: a key
    absent from one is unknown unless the templates read it (keys the chart documents only in a
    comment, or reads with no default). Below an empty mapping (free-form: labels, annotations,
    nodeSelector), a list, a null or a key known from the templates only, anything goes.
    """
    defaults, references = _chart_keys(Path(chart_dir))

    def unknown(defaults: dict, values: dict, path: str) -> list[str]:
        found = []
        for key, value in values.items():
            dotted = f"{path}{key}"
            if key not in defaults:
                if not any(ref == dotted or ref.startswith(dotted + ".") for ref in references):
                    found.append(dotted)
            elif isinstance(defaults[key], dict) and defaults[key] and isinstance(value, dict):
                found += unknown(defaults[key], value, dotted + ".")
        return found

    return unknown(defaults, values, "")


def schema_errors(chart_dir: Path, values: dict) -> list[str]:
    """Where the chart's defaults merged with `values` break its values.schema.json (none without one)."""
    chart_dir = Path(chart_dir)
    schema_file = chart_dir / "values.schema.json"
    if not schema_file.is_file():
        return []
    schema = yaml.safe_load(schema_file.read_text())  # JSON is YAML
    defaults = _values_yaml(chart_dir)
    merged = deep_merge(defaults, _known_now(values, defaults))
    validator = jsonschema.validators.validator_for(schema)(schema)
    return sorted(
        f"{'.'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}" for error in validator.iter_errors(merged)
    )


def _known_now(value: Any, default: Any) -> Any:
    """`value` with every value known only at deployment replaced by the chart's default there, or
    dropped where the chart has none: the schema then checks everything around it."""
    if isinstance(value, dict):
        defaults = default if isinstance(default, dict) else {}
        known = {k: _known_now(v, defaults.get(k, _OPAQUE)) for k, v in value.items()}
        return {k: v for k, v in known.items() if v is not _OPAQUE}
    if isinstance(value, list):
        return [item for item in (_known_now(v, _OPAQUE) for v in value) if item is not _OPAQUE]
    return value if isinstance(value, _PLAIN) else default


@functools.lru_cache(maxsize=None)
def _chart_keys(chart_dir: Path) -> tuple[dict, frozenset[str]]:
    """The chart's default values and the dotted paths its templates read, subcharts included:
    Helm hands a subchart the parent's values under the dependency's name (or alias)."""
    defaults = _values_yaml(chart_dir)
    references = {
        match[1].lstrip(".")
        for template in (chart_dir / "templates").rglob("*")
        if template.is_file()
        for match in _TEMPLATE_REFERENCE.finditer(template.read_text(errors="replace"))
    }
    for dependency in _chart_yaml(chart_dir).get("dependencies") or []:
        subchart = chart_dir / "charts" / dependency["name"]
        if subchart.is_dir():
            key = dependency.get("alias") or dependency["name"]
            sub_defaults, sub_references = _chart_keys(subchart)
            defaults = deep_merge({key: sub_defaults}, defaults)
            references |= {f"{key}.{ref}" for ref in sub_references}
    return defaults, frozenset(references)


def _values_yaml(chart_dir: Path) -> dict:
    path = chart_dir / "values.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _chart_yaml(chart_dir: Path) -> dict:
    path = chart_dir / "Chart.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{chart_dir} is not a chart directory: no Chart.yaml")
    return yaml.safe_load(path.read_text()) or {}
