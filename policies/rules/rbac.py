"""RBAC: least privilege for Roles, ClusterRoles and their bindings."""

from collections.abc import Iterator, Mapping
from typing import Any

from policies import kube
from policies.framework import ResourceRule

DEPLOYER_ROLE_LABEL = "rbac.clipper.dev/role"
DEPLOYER_ROLE_VALUE = "deployer"
_READ_VERBS = {"get", "list", "watch", "*"}


def _rules(resource: Any) -> list[Mapping]:
    return [kube.mapping(rule) for rule in kube.sequence(resource.props.get("rules"))]


def _wildcard_rules(resource: Any, config: Mapping) -> Iterator[str]:
    for index, rule in enumerate(_rules(resource)):
        if "*" in kube.sequence(rule.get("verbs")) and "*" in kube.sequence(rule.get("resources")):
            yield f"rules[{index}] grants every verb on every resource"


RBAC_NO_WILDCARDS = ResourceRule(
    name="rbac-no-wildcards",
    description="Roles and ClusterRoles do not grant wildcard verbs on wildcard resources.",
    rationale="verbs: ['*'] on resources: ['*'] is cluster-admin by another name, and silently "
    "grows with every CRD installed later.",
    remediation="List the resources and verbs the subject needs.",
    resource_types=kube.ROLE_TYPES,
    check=_wildcard_rules,
)


def _cluster_admin_bindings(resource: Any, config: Mapping) -> Iterator[str]:
    role_ref = kube.mapping(resource.props.get("roleRef"))
    if role_ref.get("kind") != "ClusterRole" or role_ref.get("name") != "cluster-admin":
        return
    break_glass = set(config["breakGlassGroups"])
    for subject in kube.sequence(resource.props.get("subjects")):
        subject = kube.mapping(subject)
        if not (subject.get("kind") == "Group" and subject.get("name") in break_glass):
            yield f"binds cluster-admin to {subject.get('kind')} {subject.get('name')}, which is not a break-glass group"


RBAC_NO_CLUSTER_ADMIN = ResourceRule(
    name="rbac-no-cluster-admin-binding",
    description="Nothing is bound to cluster-admin except the break-glass groups.",
    rationale="cluster-admin can read every secret and rewrite every policy; day-to-day "
    "identities (CI, apps, people) must not hold it.",
    remediation="Bind a narrower Role/ClusterRole; emergency access goes through a group listed in breakGlassGroups.",
    resource_types=kube.BINDING_TYPES,
    check=_cluster_admin_bindings,
    config_properties={
        "breakGlassGroups": {
            "type": "array",
            "items": {"type": "string"},
            "default": [],
            "description": "Groups that may be bound to cluster-admin.",
        },
    },
)


def _deployer_secret_reads(resource: Any, config: Mapping) -> Iterator[str]:
    if config["allowSecretsRead"] or kube.labels(resource.props).get(DEPLOYER_ROLE_LABEL) != DEPLOYER_ROLE_VALUE:
        return
    for index, rule in enumerate(_rules(resource)):
        # apiGroups is required by the API; "" is the core group, where secrets live.
        groups = set(kube.sequence(rule.get("apiGroups")))
        resources = set(kube.sequence(rule.get("resources")))
        verbs = set(kube.sequence(rule.get("verbs")))
        if groups & {"", "*"} and resources & {"secrets", "*"} and verbs & _READ_VERBS:
            yield f"rules[{index}] lets the deployer {'/'.join(sorted(verbs & _READ_VERBS))} secrets"


RBAC_DEPLOYER_NO_SECRETS = ResourceRule(
    name="rbac-deployer-no-secrets-read",
    description="Deployer Roles (label rbac.clipper.dev/role: deployer) cannot get, list or watch Secrets.",
    rationale="The deployer identity lives in CI; if it can read Secrets, a leaked CI token leaks "
    "every credential in the cluster. Deploying needs create/update/patch, not read.",
    remediation="Drop get/list/watch on secrets from the deployer Role (External Secrets delivers "
    "them), or set allowSecretsRead in the stack's policy config after review.",
    resource_types=kube.ROLE_TYPES,
    check=_deployer_secret_reads,
    config_properties={
        "allowSecretsRead": {
            "type": "boolean",
            "default": False,
            "description": "Allow deployer Roles to read Secrets.",
        },
    },
)

RULES = [RBAC_NO_WILDCARDS, RBAC_NO_CLUSTER_ADMIN, RBAC_DEPLOYER_NO_SECRETS]
