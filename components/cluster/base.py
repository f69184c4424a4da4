"""The contract every cluster implementation meets, so the in-cluster layer never asks which cloud."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

import pulumi
import pulumi_kubernetes as k8s

if TYPE_CHECKING:
    from components.dns import DnsSettings, DnsZone


@dataclass(frozen=True)
class IdentityPermissions:
    """What a workload identity may do in the cloud: read these secrets, manage these DNS zones."""

    secrets: tuple[str, ...] = ()
    # Zone handles from `DnsZone.ref` (resolved by the cloud, hence Inputs).
    dns_zones: tuple[pulumi.Input[str], ...] = ()


@dataclass
class WorkloadIdentity:
    """A cloud identity a Kubernetes ServiceAccount can assume without long-lived keys."""

    namespace: str
    service_account: str
    # Put on the ServiceAccount (IRSA role ARN, GCP service account e-mail, Azure client id).
    service_account_annotations: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    # Put on the pods (Azure workload identity needs a pod label).
    pod_labels: dict[str, str] = field(default_factory=dict)
    # The cloud principal (role ARN / e-mail / client id), exported for operators.
    principal: Optional[pulumi.Output[str]] = None


class Cluster(Protocol):
    provider: k8s.Provider
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # always a secret
    oidc_issuer: pulumi.Output[str]
    region: str

    def identity_for(
        self, namespace: str, service_account: str, permissions: IdentityPermissions
    ) -> WorkloadIdentity: ...

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        """External Secrets `ClusterSecretStore.spec.provider` for this cloud, as `identity`."""
        ...

    def dns_zone(self, settings: "DnsSettings") -> Optional["DnsZone"]:
        """The stack's public zone in this cloud's DNS service; None where DNS is managed elsewhere."""
        ...
