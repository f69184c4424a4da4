"""EksSettings: what a stack file says about its EKS cluster (no AWS SDK here: config validation
reads it for every cloud)."""
from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from components.cluster.settings import Cidr, CloudClusterSettings, KubernetesVersion, NodePool, NodePools, region_validator
from components.settings import Settings

AwsRegion = Annotated[str, region_validator(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", "eu-west-1")]
IamRoleArn = Annotated[
    str, region_validator(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]+$", "arn:aws:iam::123456789012:role/ops", "an IAM role ARN")
]


class EksNetworkSettings(Settings):
    """The VPC: created (default: public subnets for load balancers, private ones for nodes) or existing."""

    vpc_id: Optional[str] = Field(default=None, description="Existing VPC id; unset: create one.")
    private_subnet_ids: list[str] = Field(default_factory=list, description="Existing private subnets (with vpcId).")
    cidr: Cidr = Field(default="10.10.0.0/16", description="CIDR of the created VPC (split into /20s per zone).")
    nat_gateway_per_zone: bool = Field(
        default=True, description="One NAT gateway per zone (zone-independent egress); false: one shared."
    )

    @model_validator(mode="after")
    def _existing_needs_subnets(self):
        if self.vpc_id and len(self.private_subnet_ids) < 2:
            raise ValueError("an existing vpcId needs privateSubnetIds in at least two zones")
        if self.private_subnet_ids and not self.vpc_id:
            raise ValueError("privateSubnetIds need vpcId")
        return self


class EksSettings(CloudClusterSettings):
    region: AwsRegion = Field(description="AWS region.")
    zones: Optional[list[str]] = Field(
        default=None, min_length=2, description="Availability zones (default: the region's a, b and c)."
    )
    kubernetes_version: KubernetesVersion = Field(
        default="1.33",
        description="Minor version. EKS has no release channel: the cluster upgrades when this changes, and "
        "addons.cluster-autoscaler.version changes with it (its minor must match).",
    )
    upgrade_support: Literal["STANDARD", "EXTENDED"] = Field(
        default="STANDARD", description="STANDARD: AWS upgrades the control plane when standard support ends."
    )
    admin_role_arns: list[IamRoleArn] = Field(
        default_factory=list,
        description="IAM roles granted cluster-admin through EKS access entries; the role that runs `pulumi up` "
        "must be one (the cluster's creator gets no admin rights of its own).",
    )
    network: EksNetworkSettings = Field(default_factory=EksNetworkSettings)
    hosted_zone_id: Optional[str] = Field(default=None, description="Route 53 zone for dns.zone (default: looked up by name).")
    ingress_load_balancer: Literal["classic", "network"] = Field(
        default="classic",
        description="Load balancer type of the ingress Service (for Route 53 alias records); "
        "classic is what ingress-nginx gets without AWS annotations.",
    )
    default_node_pools = NodePools(
        system=NodePool(machine_type="m6i.large", min_nodes=2, max_nodes=3, disk_size_gb=50),
        workload=NodePool(machine_type="m6i.large", min_nodes=2, max_nodes=10, disk_size_gb=50),
        spot=NodePool(machine_type="m6i.large", min_nodes=0, max_nodes=10, disk_size_gb=50),
    )

    @model_validator(mode="after")
    def _fits_eks(self):
        if self.zones and any(not (z.startswith(self.region) and len(z) == len(self.region) + 1) for z in self.zones):
            raise ValueError(f"zones {self.zones} must be zones of {self.region} (e.g. {self.region}a)")
        network = ipaddress.ip_network(self.network.cidr)
        needed = 2 * len(self.availability_zones) + 1  # a public and a private /20 per zone, one for the control plane
        if not self.network.vpc_id and (network.prefixlen > 20 or 2 ** (20 - network.prefixlen) < needed):
            raise ValueError(f"network.cidr {self.network.cidr} is too small for {needed} /20 subnets")
        if not self.network.vpc_id and not self.api.authorized_cidrs:
            raise ValueError(
                "api.authorizedCidrs: required when the program creates the VPC: `pulumi up` runs from outside it "
                "and reaches the API through the public endpoint, limited to these ranges (or set network.vpcId "
                "to a VPC you run Pulumi from)"
            )
        if not self.admin_role_arns:
            raise ValueError(
                "adminRoleArns: list at least one IAM role, the one that runs `pulumi up` among them: "
                "cluster admins come only from access entries"
            )
        return self

    @property
    def availability_zones(self) -> list[str]:
        return self.zones or [f"{self.region}{letter}" for letter in "abc"]
