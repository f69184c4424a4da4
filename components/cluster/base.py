"""The contract every cluster implementation meets, so the in-cluster layer never asks which cloud."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

import pulumi
import pulumi_kubernetes as k8s

if TYPE_CHECKING:
    from components.backup_storage import BackupStorage
    from components.dns import DnsSettings, DnsZone


@dataclass(frozen=True)
class IdentityPermissions:
    """What a workload identity may do in the cloud: read these secrets, manage these DNS zones."""

    secrets: tuple[str, ...] = ()
    # Zone handles from `DnsZone.ref` (resolved by the cloud, hence Inputs).
    dns_zones: tuple[pulumi.Input[str], ...] = ()
    # Backup buckets from `BackupStorage.ref`: list, read, write and delete their objects.
    buckets: tuple[pulumi.Input[str], ...] = ()


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


POOL_LABEL = "clipper.dev/pool"  # on every node of our pools: system, workload, spot


@dataclass(frozen=True)
class SpotPlacement:
    """How pods opt in to a cluster's spot nodes: tolerate the spot taint, prefer the spot pool.

    The preference is soft, so pods still run on on-demand nodes when spot capacity is gone.
    """

    taint_key: str
    taint_value: str
    taint_effect: str = "NoSchedule"

    @property
    def taint(self) -> str:
        """`key=value:Effect`, the spelling of AKS nodeTaints and kubectl."""
        return f"{self.taint_key}={self.taint_value}:{self.taint_effect}"

    def toleration(self) -> dict:
        return {"key": self.taint_key, "operator": "Equal", "value": self.taint_value, "effect": self.taint_effect}

    def preferred_affinity(self) -> dict:
        preference = {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": ["spot"]}]}
        return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": preference}]}}


# Our own taint, on GKE and EKS spot pools (and what an existing cluster is assumed to use).
CLIPPER_SPOT = SpotPlacement("clipper.dev/spot", "true")


@dataclass
class NodeAutoscaler:
    """An in-cluster node autoscaler the cloud does not run itself (EKS's Cluster Autoscaler): the
    cluster whose node groups it finds by tag, their region, and the identity allowed to resize them."""

    cluster_name: str
    region: str
    identity: WorkloadIdentity


class Cluster(Protocol):
    provider: k8s.Provider
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # always a secret
    oidc_issuer: pulumi.Output[str]
    region: str
    spot: SpotPlacement
    # Where the API server calls admission webhooks from, where the cloud says; () when unknown.
    control_plane_cidrs: tuple[str, ...]

    def identity_for(
        self, namespace: str, service_account: str, permissions: IdentityPermissions
    ) -> WorkloadIdentity: ...

    def node_autoscaler(self) -> Optional[NodeAutoscaler]:
        """What an in-cluster node autoscaler needs (its cloud identity is created by this call);
        None where the cloud scales node pools itself (GKE, AKS, a cluster made elsewhere)."""
        ...

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        """External Secrets `ClusterSecretStore.spec.provider` for this cloud, as `identity`."""
        ...

    def dns_zone(self, settings: "DnsSettings") -> Optional["DnsZone"]:
        """The stack's public zone in this cloud's DNS service; None where DNS is managed elsewhere."""
        ...

    def backup_storage(self) -> Optional["BackupStorage"]:
        """A private, encrypted, versioned bucket for Velero in this cloud; None where storage is
        configured instead (`addons.backups.location` on an existing cluster)."""
        ...
