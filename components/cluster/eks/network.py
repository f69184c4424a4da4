"""The VPC an EKS cluster gets when the stack names none: public subnets for load balancers and
NAT gateways, private ones for nodes, and small ones of their own for the control plane's network
interfaces, so NetworkPolicies can tell the API server's calls from pods' (the VPC CNI gives pods
addresses from the node subnets)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.cluster.eks.settings import EksSettings


@dataclass(frozen=True)
class EksSubnets:
    nodes: list[pulumi.Input[str]]  # private, one per zone
    control_plane: list[pulumi.Input[str]]  # where EKS puts the API server's interfaces
    control_plane_cidrs: tuple[str, ...]  # () when the stack brings its own VPC


def create_vpc(prefix: str, cluster_name: str, settings: EksSettings, opts: pulumi.ResourceOptions) -> EksSubnets:
    n, zones = settings.network, settings.availability_zones
    blocks = list(ipaddress.ip_network(n.cidr).subnets(new_prefix=20))
    # The /20 after the public and private ones, in /28s (EKS's minimum): one per zone.
    control_plane_blocks = list(blocks[2 * len(zones)].subnets(new_prefix=28))[: len(zones)]
    control_plane: list[pulumi.Output[str]] = []
    tags = {"Name": cluster_name}
    vpc = aws.ec2.Vpc(f"{prefix}-vpc", cidr_block=n.cidr, enable_dns_hostnames=True, enable_dns_support=True, tags=tags, opts=opts)
    igw = aws.ec2.InternetGateway(f"{prefix}-igw", vpc_id=vpc.id, tags=tags, opts=opts)
    # An EIP and a NAT gateway need the VPC's internet gateway attached (AWS documents the ordering).
    after_igw = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[igw]))
    public_routes = aws.ec2.RouteTable(
        f"{prefix}-public",
        vpc_id=vpc.id,
        routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
        tags={"Name": f"{cluster_name}-public"},
        opts=opts,
    )
    nats: list[aws.ec2.NatGateway] = []
    private: list[pulumi.Output[str]] = []
    for i, zone in enumerate(zones):
        # Public subnets hold only load balancers and NAT gateways; no instance gets a public IP.
        public = aws.ec2.Subnet(
            f"{prefix}-public-{zone}",
            vpc_id=vpc.id,
            availability_zone=zone,
            cidr_block=str(blocks[i]),
            map_public_ip_on_launch=False,
            tags={"Name": f"{cluster_name}-public-{zone}", "kubernetes.io/role/elb": "1"},
            opts=opts,
        )
        aws.ec2.RouteTableAssociation(f"{prefix}-public-{zone}", subnet_id=public.id, route_table_id=public_routes.id, opts=opts)
        if n.nat_gateway_per_zone or not nats:
            ip = aws.ec2.Eip(f"{prefix}-nat-{zone}", domain="vpc", tags=tags, opts=after_igw)
            nats.append(aws.ec2.NatGateway(f"{prefix}-nat-{zone}", allocation_id=ip.id, subnet_id=public.id, tags=tags, opts=after_igw))
        subnet = aws.ec2.Subnet(
            f"{prefix}-private-{zone}",
            vpc_id=vpc.id,
            availability_zone=zone,
            cidr_block=str(blocks[len(zones) + i]),
            tags={"Name": f"{cluster_name}-private-{zone}", "kubernetes.io/role/internal-elb": "1"},
            opts=opts,
        )
        routes = aws.ec2.RouteTable(
            f"{prefix}-private-{zone}",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nats[-1].id}],
            tags={"Name": f"{cluster_name}-private-{zone}"},
            opts=opts,
        )
        aws.ec2.RouteTableAssociation(f"{prefix}-private-{zone}", subnet_id=subnet.id, route_table_id=routes.id, opts=opts)
        private.append(subnet.id)
        api = aws.ec2.Subnet(
            f"{prefix}-control-plane-{zone}",
            vpc_id=vpc.id,
            availability_zone=zone,
            cidr_block=str(control_plane_blocks[i]),
            tags={"Name": f"{cluster_name}-control-plane-{zone}"},
            opts=opts,
        )
        aws.ec2.RouteTableAssociation(f"{prefix}-control-plane-{zone}", subnet_id=api.id, route_table_id=routes.id, opts=opts)
        control_plane.append(api.id)
    return EksSubnets(private, control_plane, tuple(str(b) for b in control_plane_blocks))
