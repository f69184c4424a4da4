"""EksCluster: EKS from plain AWS resources (no pulumi-eks component) with private nodes, KMS
secrets encryption, IRSA, VPC CNI network policy, Cluster Autoscaler's identity, plus IAM roles for
workloads and Route 53 records. Managed add-ons are in addons.py, IAM role plumbing in roles.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.backup_storage import BackupStorage, s3_bucket
from components.cluster.base import CLIPPER_SPOT, POOL_LABEL, IdentityPermissions, NodeAutoscaler, WorkloadIdentity
from components.cluster.eks import iam
from components.cluster.eks.addons import network_addon, node_addons
from components.cluster.eks.network import EksSubnets, create_vpc
from components.cluster.eks.roles import Roles
from components.cluster.eks.settings import EksSettings
from components.cluster.kubeconfig import ExecCredential, exec_kubeconfig
from components.cluster.naming import bounded_name
from components.cluster.settings import NodePool
from components.dns import DnsSettings, is_ip_address

_CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
_NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE"}
_AUTOSCALER_SERVICE_ACCOUNT = ("kube-system", "cluster-autoscaler")


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
        self.spot = CLIPPER_SPOT
        self._partition = iam.partition(s.region)
        cluster_name = s.cluster_name(pulumi.get_stack())
        self._aws = aws.Provider(f"{name}-aws", region=s.region, opts=pulumi.ResourceOptions(parent=self))
        self._child = pulumi.ResourceOptions(parent=self, provider=self._aws)
        self._invoke = pulumi.InvokeOutputOptions(provider=self._aws, parent=self)
        self._roles = Roles(self._partition, self._child)
        self._account_id = aws.get_caller_identity_output(opts=self._invoke).account_id

        if s.network.vpc_id:
            ids = list(s.network.private_subnet_ids)
            subnets = EksSubnets(nodes=ids, control_plane=ids, control_plane_cidrs=())
        else:
            subnets = create_vpc(name, cluster_name, s, self._child)
        self.control_plane_cidrs = subnets.control_plane_cidrs
        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes Secrets in {cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=self._child,
        )
        self.cluster = self._control_plane(cluster_name, subnets.control_plane, key)
        self._private_api_from_vpc()
        self.oidc_issuer = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=self.oidc_issuer, client_id_lists=["sts.amazonaws.com"], opts=self._child
        )
        self._roles.trust_oidc(oidc_provider.arn, self.oidc_issuer)
        cni = network_addon(name, self.cluster, self._roles)
        pools = [self._node_group(pool, cfg, subnets.nodes, cluster_name, depends_on=[cni]) for pool, cfg in s.node_pools if cfg.enabled]
        addons = node_addons(name, self.cluster, self._roles, pools)
        admins = [self._admin_access(i, role_arn) for i, role_arn in enumerate(s.admin_role_arns)]

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
        # In-cluster resources wait for nodes, the add-ons that serve them (DNS; the VolumeSnapshot
        # API the backups' VolumeSnapshotClass needs) and the access entries that let `pulumi up` in.
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=pools + addons + admins),
        )
        self.register_outputs({"name": self.name, "endpoint": self.endpoint})

    def _control_plane(self, cluster_name: str, subnet_ids: list[pulumi.Input[str]], key: aws.kms.Key) -> aws.eks.Cluster:
        s = self._settings
        role = self._roles.make(f"{self._prefix}-control-plane", iam.service_trust("eks.amazonaws.com"), ("AmazonEKSClusterPolicy",))
        return aws.eks.Cluster(
            self._prefix,
            name=cluster_name,
            role_arn=role.role.arn,
            version=s.kubernetes_version,
            vpc_config={
                "subnet_ids": subnet_ids,
                # Nodes and the VPC always use the private endpoint; the public one, only for the
                # listed ranges, is how `pulumi up` gets in from outside.
                "endpoint_private_access": True,
                "endpoint_public_access": bool(s.api.authorized_cidrs),
                "public_access_cidrs": s.api.authorized_cidrs or None,
            },
            encryption_config={"provider": {"key_arn": key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=_CONTROL_PLANE_LOGS,
            # Access entries (API), not the aws-auth ConfigMap; admins come from config only, so
            # whoever ran the first `up` holds no hidden, permanent cluster-admin.
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False},
            upgrade_policy={"support_type": s.upgrade_support},
            deletion_protection=s.deletion_protection,
            opts=self._roles.assuming(role),
        )

    def _private_api_from_vpc(self) -> None:
        """An existing VPC without a public endpoint: Pulumi runs inside it, but EKS's cluster security
        group admits only itself, so let the VPC reach the API (still authenticated by IAM)."""
        s = self._settings
        if not s.network.vpc_id or s.api.authorized_cidrs:
            return
        vpc = aws.ec2.get_vpc_output(id=s.network.vpc_id, opts=self._invoke)
        aws.vpc.SecurityGroupIngressRule(
            f"{self._prefix}-api-from-vpc",
            security_group_id=self.cluster.vpc_config.cluster_security_group_id,
            cidr_ipv4=vpc.cidr_block,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="Kubernetes API from the VPC",
            opts=self._child,
        )

    def _node_group(
        self,
        pool: str,
        cfg: NodePool,
        subnet_ids: list[pulumi.Input[str]],
        cluster_name: str,
        depends_on: list[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        role = self._roles.make(f"{self._prefix}-{pool}-nodes", iam.service_trust("ec2.amazonaws.com"), _NODE_POLICIES)
        # IMDSv2 only, one hop: pods cannot reach the node's instance credentials (they use IRSA).
        template = aws.ec2.LaunchTemplate(
            f"{self._prefix}-{pool}",
            # Here, not in the node group's instanceTypes (which forces a new group): a new template
            # version rolls the group's nodes in place.
            instance_type=cfg.machine_type,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            block_device_mappings=[
                {"device_name": "/dev/xvda", "ebs": {"volume_size": cfg.disk_size_gb, "volume_type": "gp3", "encrypted": "true"}}
            ],
            tag_specifications=[{"resource_type": "instance", "tags": {"Name": f"{cluster_name}-{pool}"}}],
            opts=self._child,
        )
        spot = pool == "spot"
        taint = {"key": CLIPPER_SPOT.taint_key, "value": CLIPPER_SPOT.taint_value, "effect": _TAINT_EFFECTS[CLIPPER_SPOT.taint_effect]}
        return aws.eks.NodeGroup(
            f"{self._prefix}-{pool}",
            cluster_name=self.cluster.name,
            node_group_name_prefix=f"{pool}-",
            node_role_arn=role.role.arn,
            subnet_ids=subnet_ids,  # private subnets only: nodes get no public IPs
            capacity_type="SPOT" if spot else "ON_DEMAND",
            scaling_config={"min_size": cfg.min_nodes, "max_size": cfg.max_nodes, "desired_size": max(cfg.min_nodes, 1 if not spot else 0)},
            update_config={"max_unavailable": 1},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            labels={POOL_LABEL: pool},
            taints=[taint] if spot else [],
            opts=pulumi.ResourceOptions.merge(
                self._roles.assuming(role, depends_on),
                # Cluster Autoscaler owns the size after creation.
                pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"]),
            ),
        )

    def _admin_access(self, index: int, role_arn: str) -> aws.eks.AccessPolicyAssociation:
        entry = aws.eks.AccessEntry(
            f"{self._prefix}-admin-{index}", cluster_name=self.cluster.name, principal_arn=role_arn, opts=self._child
        )
        return aws.eks.AccessPolicyAssociation(
            f"{self._prefix}-admin-{index}",
            cluster_name=self.cluster.name,
            principal_arn=entry.principal_arn,
            policy_arn=f"arn:{self._partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            access_scope={"type": "cluster"},
            opts=self._child,
        )

    def _workload_role(self, namespace: str, service_account: str, policy: Optional[pulumi.Input[str]]) -> WorkloadIdentity:
        prefix = f"{self._prefix}-{namespace}-{service_account}"
        role = self._roles.irsa(prefix, namespace, service_account).role
        if policy is not None:
            aws.iam.RolePolicy(prefix, role=role.id, policy=policy, opts=self._child)
        return WorkloadIdentity(
            namespace=namespace,
            service_account=service_account,
            service_account_annotations={"eks.amazonaws.com/role-arn": role.arn},
            principal=role.arn,
        )

    def identity_for(self, namespace: str, service_account: str, permissions: IdentityPermissions) -> WorkloadIdentity:
        policy = None
        if permissions.secrets or permissions.dns_zones or permissions.buckets:
            p, region = self._partition, self._settings.region
            zones, buckets = pulumi.Output.all(*permissions.dns_zones), pulumi.Output.all(*permissions.buckets)
            policy = pulumi.Output.all(self._account_id, zones, buckets).apply(
                lambda a: iam.workload_policy(permissions, p, region, a[0], a[1], a[2])
            )
        return self._workload_role(namespace, service_account, policy)

    def node_autoscaler(self) -> NodeAutoscaler:
        """EKS resizes managed node groups only when told to: Cluster Autoscaler (docs/clouds.md says
        why not Karpenter or Auto Mode) finds the groups by the tags EKS puts on them."""
        cluster_name = self._settings.cluster_name(pulumi.get_stack())
        namespace, service_account = _AUTOSCALER_SERVICE_ACCOUNT
        identity = self._workload_role(namespace, service_account, iam.cluster_autoscaler_policy(cluster_name))
        return NodeAutoscaler(cluster_name=cluster_name, region=self._settings.region, identity=identity)

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        return {
            "aws": {
                "service": "SecretsManager",
                "region": self._settings.region,
                "auth": {"jwt": {"serviceAccountRef": {"name": identity.service_account, "namespace": identity.namespace}}},
            }
        }

    def backup_storage(self) -> BackupStorage:
        s = self._settings
        # Bucket names are global: the account id keeps two accounts' clusters of one name apart.
        name = self._account_id.apply(lambda account: bounded_name(s.cluster_name(pulumi.get_stack()), "backups", account, limit=63))
        return s3_bucket(f"{self._prefix}-backups", name, s.region, self._partition, self._child)

    def dns_zone(self, settings: DnsSettings) -> Route53Zone:
        s = self._settings
        invoke = pulumi.InvokeOutputOptions(provider=self._aws, parent=self)
        zone_id = s.hosted_zone_id or aws.route53.get_zone_output(name=settings.zone, private_zone=False, opts=invoke).zone_id
        if s.ingress_load_balancer == "network":
            lb_zone = aws.lb.get_hosted_zone_id_output(load_balancer_type="network", region=s.region, opts=invoke).id
        else:
            lb_zone = aws.elb.get_hosted_zone_id_output(region=s.region, opts=invoke).id
        return Route53Zone(domain=settings.zone, ref=zone_id, region=s.region, load_balancer_zone_id=lb_zone, provider=self._aws)
