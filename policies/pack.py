"""The clipper policy pack: its rules, and ``evaluate`` to run them in-process.

``evaluate`` exists for tests that register the whole program under Pulumi mocks: it feeds the
recorded resources to pulumi_policy's own analyzer servicer (the object ``PolicyPack`` serves over
gRPC), so enforcement levels, disabled rules, config handling and property deserialization follow
the same code path as ``pulumi preview --policy-pack``.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel

# Private in pulumi-policy (pinned in requirements.txt): it is the servicer PolicyPack starts, and
# driving it directly is what makes evaluate() behave like a real policy run. tests/policy covers it.
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policies.config import reconcile
from policies.framework import Rule
from policies.rules import audit, availability, clusters, hygiene, namespaces, network, rbac, workloads

PACK_NAME = "clipper-policies"
# Keep equal to `version` in PulumiPolicy.yaml (a test checks): the CLI reports that one.
PACK_VERSION = "0.1.0"
PACK_DESCRIPTION = "Security, availability and hygiene rules for the clipper Kubernetes platforms."

_WAIVABLE_RULES: list[Rule] = [
    *workloads.RULES,
    *availability.RULES,
    *namespaces.RULES,
    *network.RULES,
    *rbac.RULES,
    *clusters.RULES,
    *hygiene.RULES,
]
ALL_RULES: list[Rule] = [*_WAIVABLE_RULES, *audit.build_rules(rule.name for rule in _WAIVABLE_RULES)]
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in ALL_RULES}

_TO_PROTO_LEVEL = {
    EnforcementLevel.ADVISORY: proto.ADVISORY,
    EnforcementLevel.MANDATORY: proto.MANDATORY,
    EnforcementLevel.REMEDIATE: proto.REMEDIATE,
    EnforcementLevel.DISABLED: proto.DISABLED,
}
_FROM_PROTO_LEVEL = {value: level for level, value in _TO_PROTO_LEVEL.items()}


@dataclass(frozen=True)
class ResourceRecord:
    """One registered resource: its type token, Pulumi name, wire-named props and URN."""

    resource_type: str
    name: str
    props: Mapping[str, Any]
    urn: str


@dataclass(frozen=True)
class Violation:
    rule: str
    level: str  # "advisory" or "mandatory", as the CLI would report it
    message: str
    urn: Optional[str]  # None when a stack rule blames the whole stack

    @property
    def is_mandatory(self) -> bool:
        return self.level == EnforcementLevel.MANDATORY.value


RecordLike = Union[ResourceRecord, tuple[str, str, Mapping[str, Any], str]]


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(dict(value), struct_pb2.Struct())


def _configured_servicer(
    config: Optional[Mapping[str, Any]], level_overrides: Optional[Mapping[str, str]]
) -> _PolicyAnalyzerServicer:
    servicer = _PolicyAnalyzerServicer(PACK_NAME, PACK_VERSION, ALL_RULES, EnforcementLevel.ADVISORY)
    request = proto.ConfigureAnalyzerRequest()
    for name, (level, properties) in reconcile(ALL_RULES, config, level_overrides).items():
        request.policyConfig[name].CopyFrom(
            proto.PolicyConfig(enforcementLevel=_TO_PROTO_LEVEL[level], properties=_struct(properties))
        )
    servicer.Configure(request, None)
    return servicer


def _violations(response: Any, default_urn: Optional[str]) -> list[Violation]:
    found = []
    for diagnostic in response.diagnostics:
        # The servicer prefixes every message with the rule's description; keep just the finding.
        message = diagnostic.message
        prefix = diagnostic.description + "\n"
        if message.startswith(prefix):
            message = message[len(prefix):]
        found.append(
            Violation(
                rule=diagnostic.policyName,
                level=_FROM_PROTO_LEVEL[diagnostic.enforcementLevel].value,
                message=message,
                urn=diagnostic.urn or default_urn,
            )
        )
    return found


def evaluate(
    resources: Iterable[RecordLike],
    config: Optional[Mapping[str, Any]] = None,
    level_overrides: Optional[Mapping[str, str]] = None,
) -> list[Violation]:
    """Run every resource rule on each resource, then every stack rule on all of them.

    ``resources``: ResourceRecords or (type, name, props, urn) tuples, props with wire names.
    ``config``: a policy config in the file shape (e.g. ``policies.config.load_stack_config("production")``).
    ``level_overrides``: {rule name or "all": level}, applied after ``config``.
    Waived findings are not returned; ``waivers-in-use`` reports each waiver instead.
    """
    records = [r if isinstance(r, ResourceRecord) else ResourceRecord(*r) for r in resources]
    servicer = _configured_servicer(config, level_overrides)
    violations: list[Violation] = []
    for record in records:
        request = proto.AnalyzeRequest(
            type=record.resource_type, name=record.name, urn=record.urn, properties=_struct(record.props)
        )
        violations.extend(_violations(servicer.Analyze(request, None), record.urn))
    stack_request = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(type=r.resource_type, name=r.name, urn=r.urn, properties=_struct(r.props))
            for r in records
        ]
    )
    violations.extend(_violations(servicer.AnalyzeStack(stack_request, None), None))
    return violations
