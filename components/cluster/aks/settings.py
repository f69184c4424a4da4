"""AksSettings: what a stack file says about its AKS cluster (no Azure SDK here: config validation
reads it for every cloud)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from components.cluster.settings import Cidr, CloudClusterSettings, NodePool, NodePools, region_validator
from components.settings import Settings

AzureRegion = Annotated[str, region_validator(r"^[a-z]+[a-z0-9]*$", "westeurope")]


class AksNetworkSettings(Settings):
    """The VNet: created (default) or an existing subnet; pods get overlay addresses either way."""

    subnet_id: Optional[str] = Field(default=None, description="Existing subnet resource id for nodes; unset: create a VNet.")
    api_server_subnet_id: Optional[str] = Field(
        default=None,
        description="Existing subnet (delegated to Microsoft.ContainerService/managedClusters, /28 or larger) for "
        "API Server VNet Integration; needed with subnetId when api.privateEndpoint has authorizedCidrs.",
    )
    vnet_cidr: Cidr = "10.10.0.0/16"
    nodes_cidr: Cidr = "10.10.0.0/20"
    api_server_cidr: Cidr = Field(default="10.10.16.0/28", description="Created VNet: the API server's delegated subnet.")
    pods_cidr: Cidr = Field(default="10.64.0.0/14", description="Azure CNI overlay pod range (not routed in the VNet).")
    services_cidr: Cidr = "10.68.0.0/20"
    network_policy: Literal["cilium", "azure", "calico"] = Field(
        default="cilium", description="NetworkPolicy engine; cilium is Azure CNI powered by Cilium."
    )


class AksSettings(CloudClusterSettings):
    subscription_id: Optional[str] = Field(default=None, description="Subscription (default: the az CLI's).")
    resource_group: str = Field(pattern=r"^[-\w._()]{1,90}$", description="Resource group for the cluster and its resources.")
    create_resource_group: bool = Field(default=True, description="false: the resource group already exists.")
    location: AzureRegion = Field(description="Azure region, e.g. westeurope.")
    zones: list[Literal["1", "2", "3"]] = Field(default_factory=lambda: ["1", "2", "3"], min_length=1)
    upgrade_channel: Literal["patch", "stable", "rapid", "node-image"] = Field(
        default="stable", description="Cluster auto-upgrade channel."
    )
    sku_tier: Literal["Free", "Standard", "Premium"] = Field(default="Standard", description="Standard: financially backed API SLA.")
    admin_group_object_ids: list[str] = Field(
        default_factory=list, description="Entra ID groups granted cluster-admin (Azure RBAC for Kubernetes)."
    )
    secrets_officer_object_ids: list[str] = Field(
        default_factory=list,
        description="Entra ID users or groups that write the apps' secrets into the Key Vault (Key Vault Secrets "
        "Officer); the principal running `pulumi up` gets the role too.",
    )
    key_vault_name: Optional[str] = Field(
        default=None,
        pattern=r"^[a-zA-Z][-a-zA-Z0-9]{1,22}[a-zA-Z0-9]$",
        description="Key Vault for the KMS key and the apps' secrets (globally unique; default: <cluster>-kv, "
        "plus -<incarnation> after the first).",
    )
    network: AksNetworkSettings = Field(default_factory=AksNetworkSettings)
    dns_zone_resource_group: Optional[str] = Field(default=None, description="Resource group of the dns.zone (default: resourceGroup).")
    log_retention_days: int = Field(default=30, ge=30, le=730)
    default_node_pools = NodePools(
        system=NodePool(machine_type="Standard_D2s_v5", min_nodes=2, max_nodes=3, disk_size_gb=64),
        workload=NodePool(machine_type="Standard_D2s_v5", min_nodes=2, max_nodes=10, disk_size_gb=64),
        spot=NodePool(machine_type="Standard_D2s_v5", min_nodes=0, max_nodes=10, disk_size_gb=64),
    )

    @model_validator(mode="after")
    def _has_a_way_in(self):
        creates_network = self.network.subnet_id is None
        if self.api.private_endpoint and not self.api.authorized_cidrs and creates_network:
            raise ValueError(
                "api.authorizedCidrs: required when the program creates the VNet: `pulumi up` runs from outside it "
                "and reaches the API through the public endpoint, limited to these ranges (or set network.subnetId "
                "to a network you run Pulumi from)"
            )
        if self.api.private_endpoint and self.api.authorized_cidrs and not creates_network and not self.network.api_server_subnet_id:
            raise ValueError(
                "network.apiServerSubnetId: required with network.subnetId when api.authorizedCidrs are set: the API "
                "server joins that subnet (VNet Integration) so nodes keep a private path"
            )
        return self

    @property
    def vnet_integration(self) -> bool:
        """Private path for nodes plus a public door for the listed ranges (API Server VNet Integration)."""
        return self.api.private_endpoint and bool(self.api.authorized_cidrs)

    def vault_name(self, cluster_name: str) -> str:
        return self.key_vault_name or self.unreleased_name(cluster_name, "kv", limit=24)
