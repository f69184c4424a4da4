"""Namespace guard rails: Pod Security admission labels, default-deny networking, quotas."""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyResource

from policies import kube
from policies.framework import ResourceRule, StackRule

PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
_PSA_LEVELS = ("privileged", "baseline", "restricted")


def _pod_security_problems(resource: Any, config: Mapping) -> Iterator[str]:
    level = kube.labels(resource.props).get(PSA_ENFORCE_LABEL)
    if level is None:
        yield f"namespace has no {PSA_ENFORCE_LABEL} label"
    elif level not in _PSA_LEVELS:
        yield f"{PSA_ENFORCE_LABEL} is '{level}', not one of {', '.join(_PSA_LEVELS)}"
    elif config["requireRestricted"] and level != "restricted":
        yield f"{PSA_ENFORCE_LABEL} is '{level}'; this stack requires 'restricted'"


POD_SECURITY_LABELS = ResourceRule(
    name="namespace-pod-security-labels",
    description="Namespaces carry a Pod Security admission enforce label ('restricted' where required).",
    rationale="The label makes the API server reject pods weaker than the level, whatever "
    "created them: it backs these policies up for objects created outside Pulumi (Helm charts, operators).",
    remediation="Label the namespace pod-security.kubernetes.io/enforce: restricted (and warn/audit "
    "likewise); namespaces that cannot be restricted carry a waiver with the reason.",
    resource_types=(kube.NAMESPACE,),
    check=_pod_security_problems,
    config_properties={
        "requireRestricted": {
            "type": "boolean",
            "default": False,
            "description": "Require the enforce level to be 'restricted', not just present.",
        },
    },
)


def _namespaces(resources: Sequence[PolicyResource]) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == kube.NAMESPACE]


def _in_namespace(resources: Sequence[PolicyResource], resource_type: str, namespace: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == resource_type and kube.object_namespace(r) == namespace]


def is_default_deny(policy: PolicyResource) -> bool:
    """podSelector {} with both policy types and no allow rules: nothing in, nothing out."""
    spec = kube.mapping(policy.props.get("spec"))
    types = set(kube.sequence(spec.get("policyTypes")))
    return (
        kube.is_empty_selector(spec.get("podSelector"))
        and {"Ingress", "Egress"} <= types
        and not kube.sequence(spec.get("ingress"))
        and not kube.sequence(spec.get("egress"))
    )


def _without_default_deny(resources: Sequence[PolicyResource], config: Mapping) -> Iterator[tuple[PolicyResource, str]]:
    for namespace in _namespaces(resources):
        name = kube.object_name(namespace)
        if not any(is_default_deny(p) for p in _in_namespace(resources, kube.NETWORK_POLICY, name)):
            yield namespace, f"namespace {name} has no default-deny NetworkPolicy"


DEFAULT_DENY = StackRule(
    name="namespace-default-deny-network-policy",
    description="Every Namespace has a default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules).",
    rationale="Pods accept and send traffic from and to anywhere until some policy selects them; "
    "default-deny makes every allowed flow an explicit, reviewable NetworkPolicy.",
    remediation="Declare a NetworkPolicy in the namespace with podSelector: {}, policyTypes: "
    "[Ingress, Egress] and no ingress/egress rules, then allow the needed flows (DNS included) separately.",
    check=_without_default_deny,
)


def _without_quota(resources: Sequence[PolicyResource], config: Mapping) -> Iterator[tuple[PolicyResource, str]]:
    for namespace in _namespaces(resources):
        name = kube.object_name(namespace)
        if not _in_namespace(resources, kube.RESOURCE_QUOTA, name):
            yield namespace, f"namespace {name} has no ResourceQuota"


RESOURCE_QUOTA = StackRule(
    name="namespace-resource-quota",
    description="Every Namespace has a ResourceQuota.",
    rationale="A quota caps what one team or runaway autoscaler can take from the shared cluster.",
    remediation="Declare a ResourceQuota in the namespace (requests/limits for cpu and memory, pod count).",
    check=_without_quota,
)

RULES = [POD_SECURITY_LABELS, DEFAULT_DENY, RESOURCE_QUOTA]
