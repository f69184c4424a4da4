"""The two kinds of rule in this pack, built on pulumi_policy's policy classes.

A rule module supplies only a *check*: a function from a resource (or the stack's resources) and
the rule's effective config to violation messages. The classes here add what every rule shares, so
that no check repeats it:

* resource-type filtering;
* schema defaults merged into the config, because unit tests and ``policies.pack.evaluate`` do not
  go through the CLI, which is what normally fills defaults in;
* waivers (``policies.waivers``): annotations on the objects the program declares, and the named
  chart waivers (``policies.chart_waivers``) for objects a Helm chart renders.

Objects rendered from Helm charts (children of a ``helm.v4.Chart``) are checked like any other:
what a chart installs runs in our clusters as much as what we declare.

Both classes are real ``ResourceValidationPolicy`` / ``StackValidationPolicy`` objects, so the pack
server, the unit tests and ``policies.pack.evaluate`` all run the same ``validate``.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.waivers import waiver_for

# Anything with resource_type / props / name / urn: ResourceValidationArgs or PolicyResource.
ResourceCheck = Callable[[Any, Mapping[str, Any]], Iterable[str]]
# Yields (resource the violation belongs to, or None for the whole stack; message).
StackCheck = Callable[[Sequence[PolicyResource], Mapping[str, Any]], Iterable[tuple[Optional[PolicyResource], str]]]


def config_defaults(schema: Optional[PolicyConfigSchema]) -> dict[str, Any]:
    if schema is None:
        return {}
    return {key: prop["default"] for key, prop in schema.properties.items() if "default" in prop}


def effective_config(schema: Optional[PolicyConfigSchema], given: Mapping[str, Any]) -> dict[str, Any]:
    return {**config_defaults(schema), **dict(given or {})}


class _ClipperRule:
    """Fields every clipper rule carries beyond pulumi_policy's: why it exists, and waivability."""

    rationale: str
    waivable: bool

    def _init_rule(
        self,
        base: type,
        *,
        check: Any,
        rationale: str,
        remediation: str,
        config_properties: Optional[dict[str, dict[str, Any]]],
        waivable: bool,
        **policy_args: Any,
    ) -> None:
        """Initialise the pulumi_policy `base` with our validate hook and keep our own fields."""
        base.__init__(
            self,
            validate=self._validate,
            config_schema=PolicyConfigSchema(properties=config_properties) if config_properties else None,
            remediation_steps=remediation,
            **policy_args,
        )
        self.rationale = rationale
        self.waivable = waivable
        self._check = check


class ResourceRule(ResourceValidationPolicy, _ClipperRule):
    def __init__(
        self,
        *,
        name: str,
        description: str,
        rationale: str,
        remediation: str,
        check: ResourceCheck,
        resource_types: Optional[Iterable[str]] = None,
        config_properties: Optional[dict[str, dict[str, Any]]] = None,
        enforcement_level: EnforcementLevel = EnforcementLevel.MANDATORY,
        waivable: bool = True,
    ) -> None:
        self._init_rule(
            ResourceValidationPolicy,
            name=name,
            description=description,
            enforcement_level=enforcement_level,
            check=check,
            rationale=rationale,
            remediation=remediation,
            config_properties=config_properties,
            waivable=waivable,
        )
        self.resource_types = frozenset(resource_types) if resource_types is not None else None

    def applies_to(self, resource_type: str) -> bool:
        return self.resource_types is None or resource_type in self.resource_types

    def _validate(self, args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if not self.applies_to(args.resource_type):
            return
        if self.waivable and waiver_for(args, self.name):
            return
        config = effective_config(self.config_schema, args.get_config())
        for message in self._check(args, config):
            report_violation(message, None)


class StackRule(StackValidationPolicy, _ClipperRule):
    def __init__(
        self,
        *,
        name: str,
        description: str,
        rationale: str,
        remediation: str,
        check: StackCheck,
        config_properties: Optional[dict[str, dict[str, Any]]] = None,
        enforcement_level: EnforcementLevel = EnforcementLevel.MANDATORY,
        waivable: bool = True,
    ) -> None:
        self._init_rule(
            StackValidationPolicy,
            name=name,
            description=description,
            enforcement_level=enforcement_level,
            check=check,
            rationale=rationale,
            remediation=remediation,
            config_properties=config_properties,
            waivable=waivable,
        )

    def _validate(self, args: StackValidationArgs, report_violation: ReportViolation) -> None:
        config = effective_config(self.config_schema, args.get_config())
        for resource, message in self._check(args.resources, config):
            if resource is not None and self.waivable and waiver_for(resource, self.name):
                continue
            report_violation(message, resource.urn if resource is not None else None)


Rule = ResourceRule | StackRule
