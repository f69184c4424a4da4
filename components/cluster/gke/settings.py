"""GkeSettings: what a stack file says about its GKE cluster (no Google SDK here: config
validation reads it for every cloud)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from components.cluster.settings import ApiAccess, Cidr, CloudClusterSettings, NodePool, NodePools, region_validator
from components.settings import Port, Settings

GcpRegion = Annotated[str, region_validator(r"^[a-z]+-[a-z]+\d+$", "europe-west4")]
# GKE refuses maintenance windows that leave less than 48 hours of availability in any 32 days.
_GKE_MIN_MAINTENANCE_HOURS_PER_32_DAYS = 48


class GkeNetworkSettings(Settings):
    """The VPC: created (default) or an existing network/subnetwork with secondary ranges."""

    network: Optional[str] = Field(default=None, description="Existing VPC name; unset: create one.")
    subnetwork: Optional[str] = Field(default=None, description="Existing subnetwork (with network).")
    nodes_cidr: Cidr = "10.10.0.0/20"
    pods_cidr: Cidr = "10.64.0.0/14"
    services_cidr: Cidr = "10.68.0.0/20"
    pods_range_name: str = "pods"
    services_range_name: str = "services"
    control_plane_cidr: Cidr = Field(default="172.16.0.0/28", description="/28 for the private control plane.")
    webhook_ports: list[Port] = Field(
        default=[8443, 9443],
        description="Admission webhook ports the control plane may call on the nodes, beyond the 443 and 10250 GKE "
        "opens itself (ingress-nginx 8443, Envoy Gateway 9443): without them a private cluster's webhooks time out.",
    )

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.network is None) != (self.subnetwork is None):
            raise ValueError("set both network and subnetwork to use an existing VPC, or neither to create one")
        return self


class GkeApiAccess(ApiAccess):
    dns_endpoint: bool = Field(
        default=True,
        description="Reach the API through GKE's DNS-based endpoint, from anywhere, authorised by IAM "
        "(container.clusters.connect) before Kubernetes RBAC; the kubeconfig uses it. false: only the IP endpoint.",
    )


class GkeSettings(CloudClusterSettings):
    project: Annotated[str, region_validator(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$", "clpr-production", "a Google Cloud project id")] = Field(
        description="Google Cloud project id (6-30 lowercase letters, digits and '-')."
    )
    region: GcpRegion = Field(description="Region; the cluster and its pools span the region's zones.")
    zones: Optional[list[str]] = Field(default=None, min_length=1, description="Zones for nodes (default: GKE picks three).")
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = Field(default="REGULAR", description="Upgrade cadence.")
    api: GkeApiAccess = Field(default_factory=GkeApiAccess, description="API server reachability.")
    network: GkeNetworkSettings = Field(default_factory=GkeNetworkSettings)
    dns_managed_zone: Optional[str] = Field(
        default=None, description="Cloud DNS managed zone for dns.zone (default: the domain with '.' as '-')."
    )
    default_node_pools = NodePools(
        system=NodePool(machine_type="e2-standard-2", min_nodes=3, max_nodes=6),
        workload=NodePool(machine_type="e2-standard-4", min_nodes=2, max_nodes=9),
        spot=NodePool(machine_type="e2-standard-4", min_nodes=0, max_nodes=6),
    )

    @model_validator(mode="after")
    def _meets_gke_rules(self):
        hours = len(self.maintenance.days) * self.maintenance.duration_hours * 32 / 7
        if hours < _GKE_MIN_MAINTENANCE_HOURS_PER_32_DAYS:
            raise ValueError(
                f"maintenance: GKE needs at least {_GKE_MIN_MAINTENANCE_HOURS_PER_32_DAYS} hours of maintenance "
                f"availability per 32 days; {len(self.maintenance.days)} day(s) x {self.maintenance.duration_hours}h "
                f"gives {hours:.0f}"
            )
        if self.zones and any(not z.startswith(self.region + "-") for z in self.zones):
            raise ValueError(f"zones {self.zones} must all be in region {self.region}")
        if self.api.private_endpoint and not self.api.dns_endpoint and self.network.network is None:
            raise ValueError(
                "api.dnsEndpoint: false with a private endpoint in a VPC this program creates leaves no way in "
                "for `pulumi up`; keep dnsEndpoint: true, or set privateEndpoint: false with authorizedCidrs"
            )
        return self

    @property
    def workload_pool(self) -> str:
        return f"{self.project}.svc.id.goog"
