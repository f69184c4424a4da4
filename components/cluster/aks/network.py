"""The AKS cluster's network: a created VNet (node subnet, and the API server's delegated subnet
when it has VNet Integration) or existing subnets, with Network Contributor for the control plane."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_azure_native as azure

from components.cluster.aks.roles import RoleGrants
from components.cluster.aks.settings import AksSettings


@dataclass
class AksSubnets:
    nodes: pulumi.Input[str]
    api_server: Optional[pulumi.Input[str]]  # None: no API Server VNet Integration


def aks_network(
    prefix: str,
    cluster_name: str,
    settings: AksSettings,
    control_plane: pulumi.Input[str],
    grants: RoleGrants,
    opts: pulumi.ResourceOptions,
) -> AksSubnets:
    """`control_plane` is the principal id of the cluster's identity: AKS joins the subnets and
    manages load balancers and NSG rules in them as that identity."""
    n = settings.network
    if n.subnet_id:
        subnets = AksSubnets(n.subnet_id, n.api_server_subnet_id if settings.vnet_integration else None)
        grants.assign(f"{prefix}-subnet-network", control_plane, "network-contributor", subnets.nodes)
        if subnets.api_server:
            grants.assign(f"{prefix}-apiserver-subnet-network", control_plane, "network-contributor", subnets.api_server)
        return subnets
    vnet = azure.network.VirtualNetwork(
        f"{prefix}-vnet",
        virtual_network_name=cluster_name,
        address_space={"address_prefixes": [n.vnet_cidr]},
        resource_group_name=settings.resource_group,
        location=settings.location,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["subnets"])),
    )
    nodes = azure.network.Subnet(
        f"{prefix}-nodes",
        subnet_name="nodes",
        virtual_network_name=vnet.name,
        resource_group_name=settings.resource_group,
        address_prefix=n.nodes_cidr,
        # Nodes have no public IPs; egress goes through the cluster's load balancer.
        default_outbound_access=False,
        opts=opts,
    )
    api_server = None
    if settings.vnet_integration:
        api_server = azure.network.Subnet(
            f"{prefix}-apiserver",
            subnet_name="apiserver",
            virtual_network_name=vnet.name,
            resource_group_name=settings.resource_group,
            address_prefix=n.api_server_cidr,
            delegations=[{"name": "aks-apiserver", "service_name": "Microsoft.ContainerService/managedClusters"}],
            default_outbound_access=False,
            # Azure refuses concurrent changes to one VNet's subnets.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[nodes])),
        )
    # One grant over the VNet covers both subnets this program puts the cluster in.
    grants.assign(f"{prefix}-vnet-network", control_plane, "network-contributor", vnet.id)
    return AksSubnets(nodes.id, api_server.id if api_server else None)
