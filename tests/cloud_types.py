"""The installed provider SDKs' typed inputs, as a checker for what the program registers.

`simulate()` records each resource's inputs by wire name (camelCase), exactly as the engine would
send them to the provider. Mocks accept anything, so a misspelled nested key (`privateClusterConfig.
enablePrivateEndpont`), a string where the provider wants a number, or an Azure enum value the API
does not know would pass every unit test and fail only at `pulumi up` against the cloud (or, worse,
be dropped silently by a bridged provider). This module checks the inputs against the SDK itself:

* the resource class for a type token comes from the SDK's own registry (the `resource_modules`
  each package registers with `pulumi.runtime`), its inputs from `<Class>Args`;
* an `@pulumi.input_type` class maps wire names to properties through `@pulumi.getter(name=...)`,
  and each getter's return hint (e.g. `pulumi.Input[Optional[Sequence[pulumi.Input['XArgs']]]]`,
  forward references as strings) is resolved with the module's globals and followed down;
* required = an `__init__` parameter of the Args class without a default;
* values the mocks leave unknown are accepted: the wire drops them (an unknown is None, and None is
  not sent), so a resource's own required inputs are left to the SDK constructor, which raises
  when one is not given; nested required properties are checked here. Secrets are checked inside
  their wrapper.

Nothing here is tied to a cloud: a new SDK version brings its own types along.
"""
from __future__ import annotations

import difflib
import enum
import functools
import importlib
import inspect
import json
import typing
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pulumi
from pulumi._types import is_input_type
from pulumi.runtime import rpc

# Type-token package -> Python package of its SDK (the clouds this program uses).
SDK_PACKAGES = {"gcp": "pulumi_gcp", "aws": "pulumi_aws", "azure-native": "pulumi_azure_native"}
_SECRET = (rpc._special_sig_key, rpc._special_secret_sig)


def is_cloud_resource(type_token: str) -> bool:
    """A resource of one of the clouds' SDKs, their explicit providers included."""
    if type_token.startswith("pulumi:providers:"):
        return type_token.rsplit(":", 1)[1] in SDK_PACKAGES
    return type_token.split(":", 1)[0] in SDK_PACKAGES


@functools.cache
def resource_class(type_token: str) -> type:
    """The SDK class registered for a type token, e.g. gcp:container/nodePool:NodePool -> NodePool."""
    if type_token.startswith("pulumi:providers:"):
        package = type_token.rsplit(":", 1)[1]
        importlib.import_module(SDK_PACKAGES[package])
        registered = rpc.get_resource_package(package, "")
        info = registered.pkg_info  # type: ignore[union-attr]
        return getattr(importlib.import_module(info["fqn"]), info["class"])
    package, module, _ = type_token.split(":")
    importlib.import_module(SDK_PACKAGES[package])
    registered = rpc.get_resource_module(package, module, "")
    if registered is None:
        raise LookupError(f"{type_token}: no module {package}:{module} in {SDK_PACKAGES[package]}")
    info = registered.mod_info  # type: ignore[attr-defined]
    if type_token not in info["classes"]:
        raise LookupError(f"{type_token}: not a resource of {info['fqn']}")
    return getattr(importlib.import_module(info["fqn"]), info["classes"][type_token])


def args_class(type_token: str) -> type:
    """The resource's `<Class>Args` (`<Class>InitArgs` where a nested type took the name): the one
    input type its module exports."""
    cls = resource_class(type_token)
    module = inspect.getmodule(cls)
    exported = [getattr(module, name) for name in getattr(module, "__all__", ())]
    found = [value for value in exported if isinstance(value, type) and is_input_type(value)]
    if len(found) != 1:
        raise LookupError(f"{type_token}: expected one exported input type in {cls.__module__}, found {found}")
    return found[0]


@dataclass(frozen=True)
class Prop:
    wire: str
    python: str
    hint: Any
    required: bool
    doc: str


@functools.cache
def props(input_type: type) -> dict[str, Prop]:
    """Wire name -> property of an `@pulumi.input_type` class, type hint resolved."""
    parameters = inspect.signature(input_type.__init__).parameters
    found: dict[str, Prop] = {}
    for klass in reversed(input_type.__mro__):
        for python, member in vars(klass).items():
            getter = getattr(member, "fget", None)
            wire = getattr(getter, "_pulumi_name", None)
            if wire is None:
                continue
            hint = typing.get_type_hints(getter, localns={"Output": pulumi.Output, "T": Any})["return"]
            parameter = parameters.get(python)
            required = parameter is not None and parameter.default is inspect.Parameter.empty
            found[wire] = Prop(wire, python, hint, required, inspect.getdoc(getter) or "")
    return found


def prop_at(type_token: str, path: str) -> Prop:
    """The property at a dotted wire path (list items are transparent), e.g. `nodeConfig.machineType`."""
    input_type: Optional[type] = args_class(type_token)
    prop: Optional[Prop] = None
    for part in path.split("."):
        prop = props(input_type).get(part) if input_type is not None else None
        if prop is None:
            raise KeyError(f"{type_token}: {path}: no property {part!r} there")
        input_type = _input_type_in(prop.hint)
    assert prop is not None
    return prop


def _input_type_in(hint: Any) -> Optional[type]:
    """The input type a hint holds, through lists and maps (None for scalars)."""
    for alternative in _alternatives(hint):
        if isinstance(alternative, type) and is_input_type(alternative):
            return alternative
        if typing.get_origin(alternative) in (list, abc.Sequence, dict, abc.Mapping):
            found = _input_type_in(typing.get_args(alternative)[-1])
            if found is not None:
                return found
    return None


def _alternatives(hint: Any) -> list:
    """The concrete shapes a hint allows: Unions flattened; None, Awaitable[...] and Output[...] dropped
    (the SDK's `Input[T]` = Union[T, Awaitable[T], Output[T]] means T on the wire)."""
    if typing.get_origin(hint) is typing.Union:
        return [a for arg in typing.get_args(hint) for a in _alternatives(arg)]
    if hint is type(None) or isinstance(hint, typing.ForwardRef):
        return []
    if typing.get_origin(hint) in (abc.Awaitable, pulumi.Output) or hint is pulumi.Output:
        return []
    return [hint]


def _describe(hint: Any) -> str:
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return f"one of {hint.__name__} {sorted(str(m.value) for m in hint)}"
        return "an object" if is_input_type(hint) else hint.__name__
    origin = typing.get_origin(hint)
    if origin in (list, abc.Sequence):
        return "a list"
    if origin in (dict, abc.Mapping):
        return "a map"
    return str(hint)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list"}.get(type(value), f"{type(value).__name__} {value!r}")


@dataclass
class Report:
    resources: int = 0
    properties: int = 0
    problems: list[str] = field(default_factory=list)


class _Checker:
    def __init__(self, provider_config: bool):
        # Provider inputs travel as strings (JSON for non-strings), as the engine passes config.
        self.provider_config = provider_config
        self.properties = 0

    def object(self, input_type: type, value: dict, path: str) -> list[str]:
        known = props(input_type)
        problems = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            prop = known.get(key)
            if prop is None:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(f"{where}: unknown property of {input_type.__name__}{hint}")
                continue
            self.properties += 1
            problems += self.value(prop.hint, item, where)
        for prop in known.values():
            # A resource's own required inputs are the SDK constructor's to enforce (it raises on
            # None); one missing here was an Output the mocks left unknown, which drops the key.
            if prop.required and prop.wire not in value and path:
                problems.append(f"{path}.{prop.wire}: required property of {input_type.__name__} is missing")
        return problems

    def value(self, hint: Any, value: Any, path: str) -> list[str]:
        if value is None:  # unset, or unknown under the mocks
            return []
        if isinstance(value, dict) and value.get(_SECRET[0]) == _SECRET[1]:
            return self.value(hint, value.get("value"), path)
        alternatives = _alternatives(hint)
        if not alternatives or Any in alternatives:
            return []
        if self.provider_config and isinstance(value, str) and str not in alternatives:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        enums = [a for a in alternatives if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and isinstance(value, str):
            # azure-native types an enum as Union[str, TheEnum]: the str is the enum's wire form.
            allowed = {str(m.value) for e in enums for m in e}
            if value in allowed:
                return []
            return [f"{path}: {value!r} is not {' or '.join(_describe(e) for e in enums)}"]
        failures: list[list[str]] = []
        for alternative in alternatives:
            problems = self.one(alternative, value, path)
            if problems is None:
                continue  # a different shape
            if not problems:
                return []
            failures.append(problems)
        if failures:  # the shape matched, its contents did not
            return min(failures, key=len)
        return [f"{path}: expected {' or '.join(_describe(a) for a in alternatives)}, got {_kind(value)}"]

    def one(self, hint: Any, value: Any, path: str) -> Optional[list[str]]:
        """Problems of `value` as `hint`, or None when it is not even that shape."""
        origin = typing.get_origin(hint)
        if isinstance(hint, type) and is_input_type(hint):
            return self.object(hint, value, path) if isinstance(value, dict) else None
        if origin in (list, abc.Sequence):
            if not isinstance(value, list):
                return None
            [item] = typing.get_args(hint) or (Any,)
            return [p for i, v in enumerate(value) for p in self.value(item, v, f"{path}[{i}]")]
        if origin in (dict, abc.Mapping):
            if not isinstance(value, dict):
                return None
            item = (typing.get_args(hint) or (str, Any))[-1]
            return [p for k, v in value.items() for p in self.value(item, v, f"{path}.{k}")]
        if hint is bool:
            return [] if isinstance(value, bool) else None
        if hint is int:
            return [] if isinstance(value, int) and not isinstance(value, bool) else None
        if hint is float:
            return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if hint is str:
            return [] if isinstance(value, str) else None
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return [] if value in {m.value for m in hint} else None
        return []  # assets, archives, resources: not checked here


def validate(type_token: str, inputs: dict) -> list[str]:
    """Problems of one resource's wire inputs, each `path: what is wrong`, sorted."""
    return _validate(type_token, inputs)[0]


def _validate(type_token: str, inputs: dict) -> tuple[list[str], int]:
    checker = _Checker(provider_config=type_token.startswith("pulumi:providers:"))
    problems = checker.object(args_class(type_token), inputs, "")
    return sorted(problems), checker.properties


def check(resources: Iterable[Any]) -> Report:
    """Validate every cloud resource among `resources` (simulate's Registered records)."""
    report = Report()
    for resource in resources:
        if not (resource.custom and is_cloud_resource(resource.type)):
            continue
        report.resources += 1
        problems, properties = _validate(resource.type, resource.inputs)
        report.properties += properties
        report.problems += [f"{resource.type} {resource.name}: {p}" for p in problems]
    return report


@functools.cache
def _simulated(stack: str, overrides_json: str):
    from infra.simulate import simulate

    return simulate(stack, json.loads(overrides_json))


def simulated(stack: str, overrides: dict):
    """`simulate(stack, overrides)`, run once per session for each distinct input: the SDK-input
    and day-2 tests share their runs of the stack files."""
    return _simulated(stack, json.dumps(overrides, sort_keys=True))
