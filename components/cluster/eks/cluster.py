"""EksCluster: EKS from plain AWS resources (no pulumi-eks component) with private nodes, KMS
secrets encryption, IRSA, VPC CNI network policy, plus IAM roles for workloads and Route 53 records."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.cluster.base import IdentityPermissions, WorkloadIdentity
from components.cluster.kubeconfig import ExecCredential, exec_kubeconfig
from components.cluster.settings import SPOT_TAINT, Cidr, CloudClusterSettings, NodePool, NodePools, region_validator
from components.dns import DnsSettings, is_ip_address
from components.settings import Settings

AwsRegion = Annotated[str, region_validator(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", "eu-west-1")]
_CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
_NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE"}


def partition(region: str) -> str:
    """The ARN partition of a region (aws, aws-us-gov, aws-cn)."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


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
    upgrade_support: Literal["STANDARD", "EXTENDED"] = Field(
        default="STANDARD", description="STANDARD: AWS upgrades the control plane when standard support ends."
    )
    admin_role_arns: list[str] = Field(
        default_factory=list, description="IAM roles granted cluster-admin through EKS access entries."
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
    def _zones_fit(self):
        if self.zones and any(not (z.startswith(self.region) and len(z) == len(self.region) + 1) for z in self.zones):
            raise ValueError(f"zones {self.zones} must be zones of {self.region} (e.g. {self.region}a)")
        network = ipaddress.ip_network(self.network.cidr)
        needed = 2 * len(self.availability_zones)  # a public and a private /20 per zone
        if not self.network.vpc_id and (network.prefixlen > 20 or 2 ** (20 - network.prefixlen) < needed):
            raise ValueError(f"network.cidr {self.network.cidr} is too small for {needed} /20 subnets")
        return self

    @property
    def availability_zones(self) -> list[str]:
        return self.zones or [f"{self.region}{letter}" for letter in "abc"]


def _assume_role_policy(service: str) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    )


@dataclass
class Route53Zone:
    """A Route 53 hosted zone. Hostname targets (AWS load balancers) get alias A records, which
    also work at the zone apex where a CNAME may not stand."""

    domain: str
    ref: pulumi.Input[str]  # hosted zone id
    region: str
    load_balancer_zone_id: pulumi.Output[str]
    provider: aws.Provider

    def record(self, host: str, target: pulumi.Input[str], ttl: int, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        address = pulumi.Output.from_input(target)
        aliases = pulumi.Output.all(address, self.load_balancer_zone_id).apply(
            lambda a: None if is_ip_address(a[0]) else [{"name": a[0], "zone_id": a[1], "evaluate_target_health": True}]
        )
        return aws.route53.Record(
            host,
            zone_id=self.ref,
            name=host,
            type="A",
            ttl=address.apply(lambda a: ttl if is_ip_address(a) else None),
            records=address.apply(lambda a: [a] if is_ip_address(a) else None),
            aliases=aliases,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=self.provider)),
        )

    def acme_dns01_solver(self, identity: WorkloadIdentity) -> dict:
        # Ambient credentials: cert-manager's ServiceAccount carries the IRSA role annotation.
        return {
            "selector": {"dnsZones": [self.domain]},
            "dns01": {"route53": {"region": self.region, "hostedZoneID": self.ref}},
        }


class EksCluster(pulumi.ComponentResource):
    def __init__(self, name: str, settings: EksSettings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:cluster:EksCluster", name, None, opts)
        s = self._settings = settings
        self._prefix = name
        self.region = s.region
        self._partition = partition(s.region)
        cluster_name = s.cluster_name(pulumi.get_stack())
        self._aws = aws.Provider(f"{name}-aws", region=s.region, opts=pulumi.ResourceOptions(parent=self))
        self._child = pulumi.ResourceOptions(parent=self, provider=self._aws)
        self._account_id = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(provider=self._aws, parent=self)
        ).account_id

        subnet_ids = self._network(cluster_name)
        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes Secrets in {cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=self._child,
        )
        self.cluster = self._control_plane(cluster_name, subnet_ids, key)
        self.oidc_issuer = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        self._oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=self.oidc_issuer, client_id_lists=["sts.amazonaws.com"], opts=self._child
        )
        cni = self._addon("vpc-cni", {"enableNetworkPolicy": "true"}, self._vpc_cni_role())
        pools = [self._node_group(pool, cfg, subnet_ids, cluster_name, depends_on=[cni]) for pool, cfg in s.node_pools if cfg.enabled]
        for addon in ("coredns", "kube-proxy"):
            self._addon(addon, None, None, depends_on=pools)
        for i, role_arn in enumerate(s.admin_role_arns):
            self._admin_access(i, role_arn)

        self.name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.kubeconfig = exec_kubeconfig(
            self.cluster.name,
            self.cluster.endpoint,
            self.cluster.certificate_authority.data,
            ExecCredential(
                command="aws",
                args=("eks", "get-token", "--cluster-name", cluster_name, "--region", s.region, "--output", "json"),
                install_hint="Install the AWS CLI v2 and sign in (aws sso login or AWS_PROFILE).",
            ),
        )
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=pools),
        )
        self.register_outputs({"name": self.name, "endpoint": self.endpoint})

    def _network(self, cluster_name: str) -> list[pulumi.Input[str]]:
        """Private subnet ids for nodes and the control plane's network interfaces."""
        n = self._settings.network
        if n.vpc_id:
            return list(n.private_subnet_ids)
        zones = self._settings.availability_zones
        blocks = list(ipaddress.ip_network(n.cidr).subnets(new_prefix=20))
        tags = {"Name": cluster_name}
        vpc = aws.ec2.Vpc(
            f"{self._prefix}-vpc", cidr_block=n.cidr, enable_dns_hostnames=True, enable_dns_support=True, tags=tags, opts=self._child
        )
        igw = aws.ec2.InternetGateway(f"{self._prefix}-igw", vpc_id=vpc.id, tags=tags, opts=self._child)
        public_routes = aws.ec2.RouteTable(
            f"{self._prefix}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{cluster_name}-public"},
            opts=self._child,
        )
        nats: list[aws.ec2.NatGateway] = []
        private: list[pulumi.Input[str]] = []
        for i, zone in enumerate(zones):
            # Public subnets hold only load balancers and NAT gateways; no instance gets a public IP.
            public = aws.ec2.Subnet(
                f"{self._prefix}-public-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=str(blocks[i]),
                map_public_ip_on_launch=False,
                tags={"Name": f"{cluster_name}-public-{zone}", "kubernetes.io/role/elb": "1"},
                opts=self._child,
            )
            aws.ec2.RouteTableAssociation(
                f"{self._prefix}-public-{zone}", subnet_id=public.id, route_table_id=public_routes.id, opts=self._child
            )
            if n.nat_gateway_per_zone or not nats:
                ip = aws.ec2.Eip(f"{self._prefix}-nat-{zone}", domain="vpc", tags=tags, opts=self._child)
                nats.append(
                    aws.ec2.NatGateway(
                        f"{self._prefix}-nat-{zone}", allocation_id=ip.id, subnet_id=public.id, tags=tags, opts=self._child
                    )
                )
            subnet = aws.ec2.Subnet(
                f"{self._prefix}-private-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=str(blocks[len(zones) + i]),
                tags={"Name": f"{cluster_name}-private-{zone}", "kubernetes.io/role/internal-elb": "1"},
                opts=self._child,
            )
            routes = aws.ec2.RouteTable(
                f"{self._prefix}-private-{zone}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nats[-1].id}],
                tags={"Name": f"{cluster_name}-private-{zone}"},
                opts=self._child,
            )
            aws.ec2.RouteTableAssociation(
                f"{self._prefix}-private-{zone}", subnet_id=subnet.id, route_table_id=routes.id, opts=self._child
            )
            private.append(subnet.id)
        return private

    def _role(self, name: str, assume_role_policy: pulumi.Input[str], managed: tuple[str, ...] = ()) -> aws.iam.Role:
        role = aws.iam.Role(name, assume_role_policy=assume_role_policy, opts=self._child)
        for policy in managed:
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy}",
                role=role.name,
                policy_arn=f"arn:{self._partition}:iam::aws:policy/{policy}",
                opts=self._child,
            )
        return role

    def _control_plane(self, cluster_name: str, subnet_ids: list[pulumi.Input[str]], key: aws.kms.Key) -> aws.eks.Cluster:
        s = self._settings
        role = self._role(f"{self._prefix}-control-plane", _assume_role_policy("eks.amazonaws.com"), ("AmazonEKSClusterPolicy",))
        return aws.eks.Cluster(
            self._prefix,
            name=cluster_name,
            role_arn=role.arn,
            version=s.kubernetes_version,
            vpc_config={
                "subnet_ids": subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": not s.api.private_endpoint,
                "public_access_cidrs": s.api.authorized_cidrs if not s.api.private_endpoint else None,
            },
            encryption_config={"provider": {"key_arn": key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=_CONTROL_PLANE_LOGS,
            # Access entries (API), not the aws-auth ConfigMap; whoever creates the cluster starts as admin.
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            upgrade_policy={"support_type": s.upgrade_support},
            deletion_protection=s.deletion_protection,
            opts=self._child,
        )

    def _irsa_trust(self, namespace: str, service_account: str) -> pulumi.Output[str]:
        """Trust policy letting exactly one Kubernetes ServiceAccount assume a role via the OIDC provider."""
        issuer_host = self.oidc_issuer.apply(lambda url: url.removeprefix("https://"))
        return pulumi.Output.all(self._oidc_provider.arn, issuer_host).apply(
            lambda a: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Federated": a[0]},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {
                                "StringEquals": {
                                    f"{a[1]}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                    f"{a[1]}:aud": "sts.amazonaws.com",
                                }
                            },
                        }
                    ],
                }
            )
        )

    def _vpc_cni_role(self) -> aws.iam.Role:
        # The CNI's AWS permissions go to its own ServiceAccount, not to every pod via the node role.
        return self._role(f"{self._prefix}-vpc-cni", self._irsa_trust("kube-system", "aws-node"), ("AmazonEKS_CNI_Policy",))

    def _addon(
        self,
        addon: str,
        configuration: Optional[dict],
        role: Optional[aws.iam.Role],
        depends_on: Optional[list[pulumi.Resource]] = None,
    ) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{self._prefix}-{addon}",
            cluster_name=self.cluster.name,
            addon_name=addon,
            configuration_values=json.dumps(configuration) if configuration else None,
            service_account_role_arn=role.arn if role else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(depends_on=depends_on or [])),
        )

    def _node_group(
        self,
        pool: str,
        cfg: NodePool,
        subnet_ids: list[pulumi.Input[str]],
        cluster_name: str,
        depends_on: list[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        role = self._role(f"{self._prefix}-{pool}-nodes", _assume_role_policy("ec2.amazonaws.com"), _NODE_POLICIES)
        # IMDSv2 only, one hop: pods cannot reach the node's instance credentials (they use IRSA).
        template = aws.ec2.LaunchTemplate(
            f"{self._prefix}-{pool}",
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            block_device_mappings=[
                {"device_name": "/dev/xvda", "ebs": {"volume_size": cfg.disk_size_gb, "volume_type": "gp3", "encrypted": "true"}}
            ],
            tag_specifications=[{"resource_type": "instance", "tags": {"Name": f"{cluster_name}-{pool}"}}],
            opts=self._child,
        )
        spot = pool == "spot"
        return aws.eks.NodeGroup(
            f"{self._prefix}-{pool}",
            cluster_name=self.cluster.name,
            node_group_name_prefix=f"{pool}-",
            node_role_arn=role.arn,
            subnet_ids=subnet_ids,  # private subnets only: nodes get no public IPs
            instance_types=[cfg.machine_type],
            capacity_type="SPOT" if spot else "ON_DEMAND",
            scaling_config={"min_size": cfg.min_nodes, "max_size": cfg.max_nodes, "desired_size": max(cfg.min_nodes, 1 if not spot else 0)},
            update_config={"max_unavailable": 1},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            labels={"clipper.dev/pool": pool},
            taints=[{**SPOT_TAINT, "effect": _TAINT_EFFECTS[SPOT_TAINT["effect"]]}] if spot else [],
            opts=pulumi.ResourceOptions.merge(
                self._child,
                # The autoscaler owns the size after creation.
                pulumi.ResourceOptions(depends_on=depends_on, ignore_changes=["scalingConfig.desiredSize"]),
            ),
        )

    def _admin_access(self, index: int, role_arn: str) -> None:
        entry = aws.eks.AccessEntry(
            f"{self._prefix}-admin-{index}", cluster_name=self.cluster.name, principal_arn=role_arn, opts=self._child
        )
        aws.eks.AccessPolicyAssociation(
            f"{self._prefix}-admin-{index}",
            cluster_name=self.cluster.name,
            principal_arn=entry.principal_arn,
            policy_arn=f"arn:{self._partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            access_scope={"type": "cluster"},
            opts=self._child,
        )

    def _permissions_policy(self, permissions: IdentityPermissions) -> pulumi.Output[str]:
        p, region = self._partition, self._settings.region
        zones = pulumi.Output.all(*permissions.dns_zones)

        def document(args: list) -> str:
            account, zone_ids = args[0], args[1]
            statements = []
            if permissions.secrets:
                statements.append(
                    {
                        "Sid": "ReadConfiguredSecrets",
                        "Effect": "Allow",
                        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                        # Secrets Manager appends a random 6-character suffix to every secret ARN.
                        "Resource": [f"arn:{p}:secretsmanager:{region}:{account}:secret:{key}-??????" for key in permissions.secrets],
                    }
                )
            if zone_ids:
                statements += [
                    {
                        "Sid": "ManageZoneRecords",
                        "Effect": "Allow",
                        "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
                        "Resource": [f"arn:{p}:route53:::hostedzone/{z}" for z in zone_ids],
                    },
                    {"Sid": "TrackChanges", "Effect": "Allow", "Action": "route53:GetChange", "Resource": f"arn:{p}:route53:::change/*"},
                    {"Sid": "FindZones", "Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"},
                ]
            return json.dumps({"Version": "2012-10-17", "Statement": statements})

        return pulumi.Output.all(self._account_id, zones).apply(document)

    def identity_for(self, namespace: str, service_account: str, permissions: IdentityPermissions) -> WorkloadIdentity:
        prefix = f"{self._prefix}-{namespace}-{service_account}"
        role = self._role(prefix, self._irsa_trust(namespace, service_account))
        if permissions.secrets or permissions.dns_zones:
            aws.iam.RolePolicy(prefix, role=role.id, policy=self._permissions_policy(permissions), opts=self._child)
        return WorkloadIdentity(
            namespace=namespace,
            service_account=service_account,
            service_account_annotations={"eks.amazonaws.com/role-arn": role.arn},
            principal=role.arn,
        )

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        return {
            "aws": {
                "service": "SecretsManager",
                "region": self._settings.region,
                "auth": {"jwt": {"serviceAccountRef": {"name": identity.service_account, "namespace": identity.namespace}}},
            }
        }

    def dns_zone(self, settings: DnsSettings) -> Route53Zone:
        s = self._settings
        invoke = pulumi.InvokeOutputOptions(provider=self._aws, parent=self)
        zone_id = s.hosted_zone_id or aws.route53.get_zone_output(name=settings.zone, private_zone=False, opts=invoke).zone_id
        if s.ingress_load_balancer == "network":
            lb_zone = aws.lb.get_hosted_zone_id_output(load_balancer_type="network", region=s.region, opts=invoke).id
        else:
            lb_zone = aws.elb.get_hosted_zone_id_output(region=s.region, opts=invoke).id
        return Route53Zone(domain=settings.zone, ref=zone_id, region=s.region, load_balancer_zone_id=lb_zone, provider=self._aws)
