"""Keeps the config declarations users read in sync with the models the program validates.

`python -m infra.config_reference --check` fails when `Pulumi.yaml`'s `config:` block or
`docs/configuration.md` no longer match `PlatformConfig`; `--write` regenerates both.
"""
from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from infra.config import PROJECT, PlatformConfig

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = ROOT / "Pulumi.yaml"
REFERENCE = ROOT / "docs" / "configuration.md"
_SCALARS = {str: "string", int: "integer", bool: "boolean", float: "number"}


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _base(annotation: Any) -> Any:
    annotation = _strip_optional(annotation)
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _type_name(annotation: Any) -> str:
    annotation = _base(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return f"map of {_type_name(typing.get_args(annotation)[1])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return PydanticUndefined
    else:
        value = field.default
    return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value


def _key(name: str, field: FieldInfo) -> str:
    return field.alias or name


def project_config() -> dict[str, dict]:
    """The `config:` block of Pulumi.yaml: every top-level key, typed where Pulumi has a type for it."""
    block = {}
    for name, field in PlatformConfig.model_fields.items():
        entry: dict[str, Any] = {"description": field.description}
        kind = _type_name(field.annotation)
        default = _default(field)
        literal = typing.get_origin(_base(field.annotation)) is typing.Literal
        if literal or kind in _SCALARS.values():
            entry["type"] = "string" if literal else kind
            if default is not PydanticUndefined and default is not None:
                entry["default"] = default
        elif default is not PydanticUndefined:
            # Pulumi has no object type, and treats a key without default as required. An empty
            # default means "the model's defaults", listed in docs/configuration.md.
            entry["default"] = [] if isinstance(default, list) else {}
        block[f"{PROJECT}:{_key(name, field)}"] = entry
    return block


def _rows(model: type[BaseModel], prefix: str, given: Optional[dict] = None) -> list[tuple[str, str, str, str]]:
    """Reference rows for `model`'s keys; `given` is the default its parent field gives it, which
    wins over the model's own defaults (a nested model's class defaults are not what users get)."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{_key(name, field)}"
        default = given[_key(name, field)] if given and _key(name, field) in given else _default(field)
        shown = "required" if default is PydanticUndefined else f"`{yaml.safe_dump(default, default_flow_style=True, width=10_000).strip().removesuffix('...').strip()}`"
        rows.append((key, _type_name(field.annotation), shown, field.description or ""))
        base = _base(field.annotation)
        origin = typing.get_origin(base)
        if isinstance(base, type) and issubclass(base, BaseModel):
            rows += _rows(base, f"{key}.", default if isinstance(default, dict) else None)
        elif origin is dict and isinstance(typing.get_args(base)[1], type) and issubclass(typing.get_args(base)[1], BaseModel):
            rows += _rows(typing.get_args(base)[1], f"{key}.<name>.")
        elif origin is list and isinstance(_base(typing.get_args(base)[0]), type) and issubclass(_base(typing.get_args(base)[0]), BaseModel):
            rows += _rows(_base(typing.get_args(base)[0]), f"{key}[].")
    return rows


def reference_markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings models by `python -m infra.config_reference --write`; a test fails",
        "when it is stale. Keys live under `clipper:` in `Pulumi.<stack>.yaml` and are validated, all at",
        "once, before any resource is declared: unknown keys are errors.",
        "",
        "| key | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for key, kind, default, description in _rows(PlatformConfig, f"{PROJECT}:"):
        lines.append(f"| `{key}` | {kind} | {default.replace('|', chr(92) + '|')} | {description} |")
    return "\n".join(lines) + "\n"


def _project_file_with(config: dict) -> str:
    document = yaml.safe_load(PROJECT_FILE.read_text())
    document["config"] = config
    return yaml.safe_dump(document, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.config_reference", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 when Pulumi.yaml or the reference is stale")
    mode.add_argument("--write", action="store_true", help="regenerate Pulumi.yaml's config block and the reference")
    args = parser.parse_args(argv)
    wanted = {PROJECT_FILE: _project_file_with(project_config()), REFERENCE: reference_markdown()}
    if args.write:
        REFERENCE.parent.mkdir(exist_ok=True)
        for path, text in wanted.items():
            path.write_text(text)
        return 0
    stale = [str(p.relative_to(ROOT)) for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m infra.config_reference --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
