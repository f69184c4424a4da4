"""NamespaceAccess: who may see, deploy to and administer an app namespace.

`view` and `admin` bind the built-in ClusterRoles inside the namespace (what the runbook's
`kubectl create rolebinding --clusterrole=view|admin` did); `deployer` is our own least-privilege
Role, used by people in the deployer groups and by the CI ServiceAccount.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.meta import platform_labels
from components.settings import DnsLabel, Settings

READ = ["get", "list", "watch"]
ROLE_LABEL = "rbac.clipper.dev/role"


class Subjects(Settings):
    groups: list[str] = []
    users: list[str] = []


class AccessSettings(Settings):
    view: Subjects = Field(default=Subjects(), description="Bound to the built-in `view` ClusterRole.")
    deployer: Subjects = Field(default=Subjects(), description="Bound to the least-privilege `deployer` Role.")
    admin: Subjects = Field(default=Subjects(), description="Bound to the built-in `admin` ClusterRole.")
    ci_service_account: DnsLabel = Field(default="deployer", description="ServiceAccount CI deploys with.")
    deployer_reads_secrets: bool = Field(default=False, description="Let the deployer Role read Secrets.")


def deployer_rules(reads_secrets: bool) -> list[dict]:
    """What a release needs: roll Deployments (set image, undo, restart), run migration Jobs, read the rest."""
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets"], "verbs": READ},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["patch", "update"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": [*READ, "create", "delete"]},
        {
            "apiGroups": [""],
            "resources": ["pods", "pods/log", "services", "endpoints", "configmaps", "events", "serviceaccounts"],
            "verbs": READ,
        },
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": READ},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": READ},
    ]
    if reads_secrets:
        rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": READ})
    return rules


@dataclass
class NamespaceAccessArgs:
    namespace: str
    settings: AccessSettings


def _subjects(subjects: Subjects) -> list[dict]:
    group = "rbac.authorization.k8s.io"
    return [{"kind": "Group", "name": g, "apiGroup": group} for g in subjects.groups] + [
        {"kind": "User", "name": u, "apiGroup": group} for u in subjects.users
    ]


class NamespaceAccess(pulumi.ComponentResource):
    deployer_role: k8s.rbac.v1.Role
    ci_service_account: k8s.core.v1.ServiceAccount

    def __init__(self, name: str, args: NamespaceAccessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:platform:NamespaceAccess", name, None, opts)
        ns, s = args.namespace, args.settings
        child = pulumi.ResourceOptions(parent=self)

        def meta(resource_name: str, role: str) -> dict:
            return {"name": resource_name, "namespace": ns, "labels": {**platform_labels("rbac"), ROLE_LABEL: role}}

        self.deployer_role = k8s.rbac.v1.Role(
            f"{ns}-deployer", metadata=meta("deployer", "deployer"), rules=deployer_rules(s.deployer_reads_secrets),
            opts=child,
        )
        # CI asks for short-lived tokens (TokenRequest); no token is mounted anywhere.
        self.ci_service_account = k8s.core.v1.ServiceAccount(
            f"{ns}-ci", metadata=meta(s.ci_service_account, "deployer"), automount_service_account_token=False,
            opts=child,
        )
        ci_subject = {"kind": "ServiceAccount", "name": s.ci_service_account, "namespace": ns}
        bindings = {
            "view": ({"kind": "ClusterRole", "name": "view"}, _subjects(s.view)),
            "deployer": ({"kind": "Role", "name": "deployer"}, [*_subjects(s.deployer), ci_subject]),
            "admin": ({"kind": "ClusterRole", "name": "admin"}, _subjects(s.admin)),
        }
        for role, (ref, subjects) in bindings.items():
            if subjects:
                k8s.rbac.v1.RoleBinding(
                    f"{ns}-{role}",
                    metadata=meta(role, role),
                    role_ref={**ref, "apiGroup": "rbac.authorization.k8s.io"},
                    subjects=subjects,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployer_role, self.ci_service_account]),
                )
        self.register_outputs({"ciServiceAccount": s.ci_service_account})
