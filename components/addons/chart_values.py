"""Are the values we pass a chart ones that chart version has?

Helm silently ignores a values key the chart does not read, so a misspelt or renamed key turns a
setting off without a word. `unknown_values` finds such keys from the chart's own `values.yaml` and
templates; `schema_errors` runs the chart's `values.schema.json`, as `helm install` would.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Optional

import jsonschema
import yaml

from components.settings import deep_merge

# A dotted values path the templates read: `.Values.a.b`, `$.Values.a.b`, `if .Values.a`...
_TEMPLATE_REFERENCE = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
# ... and one they render whole: `toYaml .Values.a`, or `with .Values.a` (mostly followed by `toYaml .`):
# whatever the mapping holds goes into the object (e.g. `resources.limits` where values.yaml shows only
# requests). Lenient where a `with` block reads fields one by one: strict validation of the rendered
# objects judges those.
_WHOLE_REFERENCE = re.compile(r"\b(?:toYaml|toJson|with)\s+\(?\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_PLAIN = (dict, list, str, int, float, bool, type(None))
_OPAQUE = object()  # a value only known at deployment (a pulumi Output)


def chart_version(chart_dir: Path) -> str:
    """The version a chart directory holds, as its Chart.yaml spells it (e.g. v1.21.1, 2.9.0)."""
    return str(_chart_yaml(chart_dir)["version"])


def unknown_values(chart_dir: Path, values: dict) -> list[str]:
    """Dotted paths in `values` that the chart does not have.

    Values are checked against the chart's defaults while those are a non-empty mapping: a key
    absent from one is unknown unless the templates read it (keys the chart documents only in a
    comment, or reads with no default) or render a mapping holding it whole. Below an empty mapping
    (free-form: labels, annotations, nodeSelector), a list, a null or a key known from the
    templates only, anything goes: what is rendered whole is judged by the Kubernetes schemas.
    """
    defaults, references, whole = _chart_keys(Path(chart_dir))

    def unknown(defaults: dict, values: dict, path: str) -> list[str]:
        found = []
        for key, value in values.items():
            dotted = f"{path}{key}"
            if key not in defaults:
                read = any(ref == dotted or ref.startswith(dotted + ".") for ref in references)
                if not read and not any(dotted.startswith(ref + ".") for ref in whole):
                    found.append(dotted)
            elif isinstance(defaults[key], dict) and defaults[key] and isinstance(value, dict):
                found += unknown(defaults[key], value, dotted + ".")
        return found

    return unknown(defaults, values, "")


def schema_errors(chart_dir: Path, values: dict) -> list[str]:
    """Where the chart's defaults merged with `values` break its values.schema.json (none without one)."""
    validator = _schema_validator(Path(chart_dir))
    if validator is None:
        return []
    defaults = _chart_keys(Path(chart_dir))[0]
    merged = deep_merge(defaults, _known_now(values, defaults))
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
def _schema_validator(chart_dir: Path) -> Optional[jsonschema.protocols.Validator]:
    path = chart_dir / "values.schema.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.validators.validator_for(schema)(schema)  # the draft the schema names (cert-manager: 07)


@functools.lru_cache(maxsize=None)
def _chart_keys(chart_dir: Path) -> tuple[dict, frozenset[str], frozenset[str]]:
    """The chart's default values, the dotted paths its templates read and those they render whole,
    subcharts included: Helm hands a subchart the parent's values under the dependency's name (or alias)."""
    defaults = _values_yaml(chart_dir)
    templates = [t.read_text(errors="replace") for t in (chart_dir / "templates").rglob("*") if t.is_file()]
    references, whole = (
        {match[1].lstrip(".") for text in templates for match in pattern.finditer(text)}
        for pattern in (_TEMPLATE_REFERENCE, _WHOLE_REFERENCE)
    )
    for dependency in _chart_yaml(chart_dir).get("dependencies") or []:
        subchart = chart_dir / "charts" / dependency["name"]
        if subchart.is_dir():
            key = dependency.get("alias") or dependency["name"]
            sub_defaults, sub_references, sub_whole = _chart_keys(subchart)
            defaults = deep_merge({key: sub_defaults}, defaults)
            references |= {f"{key}.{ref}" for ref in sub_references}
            whole |= {f"{key}.{ref}" for ref in sub_whole}
    return defaults, frozenset(references), frozenset(whole)


def _values_yaml(chart_dir: Path) -> dict:
    path = chart_dir / "values.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _chart_yaml(chart_dir: Path) -> dict:
    path = chart_dir / "Chart.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{chart_dir} is not a chart directory: no Chart.yaml")
    return yaml.safe_load(path.read_text()) or {}
