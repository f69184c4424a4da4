"""GkeCluster: a regional, private GKE Standard cluster with Workload Identity, Dataplane V2 and
Cloud KMS secrets encryption, plus the Google identities and Cloud DNS records workloads need."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.backup_storage import BackupStorage, gcs_bucket
from components.cluster.base import CLIPPER_SPOT, POOL_LABEL, IdentityPermissions, WorkloadIdentity
from components.cluster.gke.settings import GkeSettings
from components.cluster.kubeconfig import ExecCredential, exec_kubeconfig
from components.cluster.naming import bounded_name
from components.cluster.settings import NodePool
from components.dns import DnsSettings, is_ip_address

_WEEKDAY_CODES = {"Monday": "MO", "Tuesday": "TU", "Wednesday": "WE", "Thursday": "TH", "Friday": "FR", "Saturday": "SA", "Sunday": "SU"}
_NODE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
)


@dataclass
class CloudDnsZone:
    """A Cloud DNS managed zone; records are A for IP targets, CNAME for hostnames."""

    domain: str
    ref: str  # the managed zone's name
    project: str
    provider: gcp.Provider

    def record(self, host: str, target: pulumi.Input[str], ttl: int, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        address = pulumi.Output.from_input(target)
        return gcp.dns.RecordSet(
            host,
            managed_zone=self.ref,
            project=self.project,
            name=f"{host}.",
            type=address.apply(lambda a: "A" if is_ip_address(a) else "CNAME"),
            ttl=ttl,
            rrdatas=address.apply(lambda a: [a if is_ip_address(a) else a.rstrip(".") + "."]),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=self.provider)),
        )

    def acme_dns01_solver(self, identity: WorkloadIdentity) -> dict:
        # Ambient credentials: cert-manager's KSA is annotated with the Google service account.
        return {
            "selector": {"dnsZones": [self.domain]},
            "dns01": {"cloudDNS": {"project": self.project, "hostedZoneName": self.ref}},
        }


class GkeCluster(pulumi.ComponentResource):
    def __init__(self, name: str, settings: GkeSettings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:cluster:GkeCluster", name, None, opts)
        s = self._settings = settings
        self._prefix = name
        self.region = s.region
        self.spot = CLIPPER_SPOT
        self.control_plane_cidrs = (s.network.control_plane_cidr,)
        cluster_name = s.cluster_name(pulumi.get_stack())
        # An explicit provider pins project and region from the stack file, not ambient gcloud config.
        self._gcp = gcp.Provider(f"{name}-gcp", project=s.project, region=s.region, opts=pulumi.ResourceOptions(parent=self))
        self._child = pulumi.ResourceOptions(parent=self, provider=self._gcp)

        network, subnetwork = self._network(cluster_name)
        key, key_grant = self._secrets_key(cluster_name)
        nodes = self._node_service_account(cluster_name)
        self._webhook_firewall(cluster_name, network, nodes)
        self.cluster = self._control_plane(cluster_name, network, subnetwork, key, nodes, depends_on=[key_grant])
        pools = [self._node_pool(pool, cfg, nodes) for pool, cfg in s.node_pools if cfg.enabled]

        self.name = self.cluster.name
        self.oidc_issuer = pulumi.Output.concat(
            "https://container.googleapis.com/v1/projects/", s.project, "/locations/", s.region, "/clusters/", self.cluster.name
        )
        if s.api.dns_endpoint:
            # Reachable from anywhere, authorised by IAM, with a publicly trusted certificate (no cluster CA).
            self.endpoint = self.cluster.control_plane_endpoints_config.apply(
                lambda c: f"https://{c.dns_endpoint_config.endpoint}"
            )
            ca_data = None
        else:
            self.endpoint = self.cluster.endpoint.apply(lambda host: f"https://{host}")
            ca_data = self.cluster.master_auth.cluster_ca_certificate
        self.kubeconfig = exec_kubeconfig(
            self.cluster.name,
            self.endpoint,
            ca_data,
            ExecCredential(
                command="gke-gcloud-auth-plugin",
                install_hint="Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
            ),
        )
        # In-cluster resources wait for nodes: the provider depends on every pool.
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=pools),
        )
        self.register_outputs({"name": self.name, "endpoint": self.endpoint})

    def _network(self, cluster_name: str) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        n = self._settings.network
        if n.network:
            return n.network, n.subnetwork
        vpc = gcp.compute.Network(
            f"{self._prefix}-vpc", name=cluster_name, auto_create_subnetworks=False, routing_mode="REGIONAL", opts=self._child
        )
        subnet = gcp.compute.Subnetwork(
            f"{self._prefix}-nodes",
            name=f"{cluster_name}-nodes",
            network=vpc.id,
            region=self._settings.region,
            ip_cidr_range=n.nodes_cidr,
            # Private nodes reach Google APIs (Artifact Registry, Secret Manager) without public IPs.
            private_ip_google_access=True,
            secondary_ip_ranges=[
                {"range_name": n.pods_range_name, "ip_cidr_range": n.pods_cidr},
                {"range_name": n.services_range_name, "ip_cidr_range": n.services_cidr},
            ],
            log_config={"aggregation_interval": "INTERVAL_5_SEC", "flow_sampling": 0.5, "metadata": "INCLUDE_ALL_METADATA"},
            opts=self._child,
        )
        # Private nodes have no public IPs: Cloud NAT gives them egress (image pulls from ghcr.io).
        router = gcp.compute.Router(f"{self._prefix}-router", name=cluster_name, network=vpc.id, region=self._settings.region, opts=self._child)
        gcp.compute.RouterNat(
            f"{self._prefix}-nat",
            name=cluster_name,
            router=router.name,
            region=self._settings.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=self._child,
        )
        return vpc.id, subnet.id

    def _webhook_firewall(self, cluster_name: str, network: pulumi.Input[str], nodes: gcp.serviceaccount.Account) -> None:
        """A private control plane reaches nodes only on 443 and 10250 until told otherwise (GKE docs,
        "add firewall rules for specific use cases"); admission webhooks on other ports need this rule."""
        n = self._settings.network
        if not n.webhook_ports:
            return
        gcp.compute.Firewall(
            f"{self._prefix}-webhooks",
            name=f"{cluster_name}-webhooks",
            network=network,
            direction="INGRESS",
            source_ranges=[n.control_plane_cidr],
            target_service_accounts=[nodes.email],
            allows=[{"protocol": "tcp", "ports": [str(p) for p in n.webhook_ports]}],
            opts=self._child,
        )

    def _secrets_key(self, cluster_name: str) -> tuple[gcp.kms.CryptoKey, pulumi.Resource]:
        s = self._settings
        # Key rings are never deleted (destroy only forgets them), so each incarnation needs a new name.
        ring = gcp.kms.KeyRing(
            f"{self._prefix}-keyring", name=s.unreleased_name(cluster_name, limit=63), location=s.region, opts=self._child
        )
        key = gcp.kms.CryptoKey(
            f"{self._prefix}-secrets-key",
            name=f"{cluster_name}-secrets",
            key_ring=ring.id,
            purpose="ENCRYPT_DECRYPT",
            rotation_period="7776000s",  # 90 days
            opts=self._child,
        )
        project = gcp.organizations.get_project_output(
            project_id=s.project, opts=pulumi.InvokeOutputOptions(provider=self._gcp, parent=self)
        )
        # GKE's service agent encrypts Kubernetes Secrets in etcd with this key.
        grant = gcp.kms.CryptoKeyIAMMember(
            f"{self._prefix}-secrets-key-gke",
            crypto_key_id=key.id,
            role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=project.number.apply(lambda n: f"serviceAccount:service-{n}@container-engine-robot.iam.gserviceaccount.com"),
            opts=self._child,
        )
        return key, grant

    def _node_service_account(self, cluster_name: str) -> gcp.serviceaccount.Account:
        # Nodes run as a least-privilege account instead of the Compute Engine default (project Editor).
        account = gcp.serviceaccount.Account(
            f"{self._prefix}-nodes",
            account_id=bounded_name(cluster_name, "nodes", limit=30),
            display_name=f"GKE nodes of {cluster_name}",
            opts=self._child,
        )
        for role in _NODE_ROLES:
            gcp.projects.IAMMember(
                f"{self._prefix}-nodes-{role.split('/')[1]}",
                project=self._settings.project,
                role=role,
                member=account.email.apply(lambda e: f"serviceAccount:{e}"),
                opts=self._child,
            )
        return account

    @staticmethod
    def _node_security(nodes: gcp.serviceaccount.Account) -> dict:
        return {
            "service_account": nodes.email,
            "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],  # IAM, not scopes, limits access
            "workload_metadata_config": {"mode": "GKE_METADATA"},  # pods see their own identity, never the node's
            "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
            "metadata": {"disable-legacy-endpoints": "true"},
        }

    def _node_config(self, pool: str, cfg: NodePool, nodes: gcp.serviceaccount.Account, spot: bool = False) -> dict:
        return {
            **self._node_security(nodes),
            "machine_type": cfg.machine_type,
            "disk_size_gb": cfg.disk_size_gb,
            "disk_type": "pd-balanced",
            "labels": {POOL_LABEL: pool},
            "spot": spot,
            "taints": [{"key": CLIPPER_SPOT.taint_key, "value": CLIPPER_SPOT.taint_value, "effect": "NO_SCHEDULE"}] if spot else [],
        }

    def _control_plane(
        self,
        cluster_name: str,
        network: pulumi.Input[str],
        subnetwork: pulumi.Input[str],
        key: gcp.kms.CryptoKey,
        nodes: gcp.serviceaccount.Account,
        depends_on: list[pulumi.Resource],
    ) -> gcp.container.Cluster:
        s = self._settings
        window = s.maintenance
        # Any past date works: only the time of day, length and RRULE recur.
        start = f"2025-01-04T{window.start_hour_utc:02d}:00:00Z"
        end_hour = window.start_hour_utc + window.duration_hours
        end = f"2025-01-{4 + end_hour // 24:02d}T{end_hour % 24:02d}:00:00Z"
        return gcp.container.Cluster(
            self._prefix,
            name=cluster_name,
            location=s.region,  # regional: control plane replicated across zones
            node_locations=s.zones,
            network=network,
            subnetwork=subnetwork,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy={
                "cluster_secondary_range_name": s.network.pods_range_name,
                "services_secondary_range_name": s.network.services_range_name,
            },
            # Pools are managed below; the default pool only exists while the cluster is created. Its
            # node_config stays secure but fixed: tied to a pool's settings, every pool change would
            # replace the cluster.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=self._node_security(nodes),
            control_plane_endpoints_config={"dns_endpoint_config": {"allow_external_traffic": s.api.dns_endpoint}},
            private_cluster_config={
                "enable_private_nodes": True,
                "enable_private_endpoint": s.api.private_endpoint,
                "master_ipv4_cidr_block": s.network.control_plane_cidr,
            },
            master_authorized_networks_config={
                "cidr_blocks": [{"cidr_block": c, "display_name": f"authorized-{i}"} for i, c in enumerate(s.api.authorized_cidrs)],
                "gcp_public_cidrs_access_enabled": False,
            },
            master_auth={"client_certificate_config": {"issue_client_certificate": False}},
            workload_identity_config={"workload_pool": s.workload_pool},
            datapath_provider="ADVANCED_DATAPATH",  # Dataplane V2: eBPF NetworkPolicy enforcement
            database_encryption={"state": "ENCRYPTED", "key_name": key.id},
            release_channel={"channel": s.release_channel},
            min_master_version=s.kubernetes_version,
            maintenance_policy={
                "recurring_window": {
                    "start_time": start,
                    "end_time": end,
                    "recurrence": "FREQ=WEEKLY;BYDAY=" + ",".join(_WEEKDAY_CODES[d] for d in window.days),
                }
            },
            enable_shielded_nodes=True,
            logging_config={"enable_components": ["SYSTEM_COMPONENTS", "APISERVER", "WORKLOADS"]},
            monitoring_config={"enable_components": ["SYSTEM_COMPONENTS"], "managed_prometheus": {"enabled": True}},
            deletion_protection=s.deletion_protection,
            opts=pulumi.ResourceOptions.merge(
                self._child,
                # Both describe only the default pool, gone after creation: a diff there is not a change.
                pulumi.ResourceOptions(depends_on=depends_on, ignore_changes=["nodeConfig", "initialNodeCount"]),
            ),
        )

    def _node_pool(self, pool: str, cfg: NodePool, nodes: gcp.serviceaccount.Account) -> gcp.container.NodePool:
        zones = len(self._settings.zones or ()) or 3
        return gcp.container.NodePool(
            f"{self._prefix}-{pool}",
            name=pool,
            cluster=self.cluster.id,
            location=self._settings.region,
            node_locations=self._settings.zones,
            initial_node_count=math.ceil(cfg.min_nodes / zones),  # per zone
            # Totals, so min/max mean the same on every cloud: nodes in the whole pool.
            autoscaling={"total_min_node_count": cfg.min_nodes, "total_max_node_count": cfg.max_nodes, "location_policy": "BALANCED"},
            management={"auto_repair": True, "auto_upgrade": True},
            upgrade_settings={"max_surge": 1, "max_unavailable": 0},
            node_config=self._node_config(pool, cfg, nodes, spot=pool == "spot"),
            # The size a pool starts at; it forces replacement, and the autoscaler owns the size afterwards.
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(ignore_changes=["initialNodeCount"])),
        )

    def node_autoscaler(self) -> None:
        return None  # GKE's own cluster autoscaler scales the pools

    def identity_for(self, namespace: str, service_account: str, permissions: IdentityPermissions) -> WorkloadIdentity:
        s = self._settings
        prefix = f"{self._prefix}-{namespace}-{service_account}"
        account = gcp.serviceaccount.Account(
            prefix,
            account_id=bounded_name(s.cluster_name(pulumi.get_stack()), service_account, limit=30),
            display_name=f"Kubernetes {namespace}/{service_account}",
            opts=self._child,
        )
        member = account.email.apply(lambda e: f"serviceAccount:{e}")
        # The workload pool exists once the cluster does.
        after_cluster = pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(depends_on=[self.cluster]))
        gcp.serviceaccount.IAMMember(
            f"{prefix}-wi",
            service_account_id=account.name,
            role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{s.workload_pool}[{namespace}/{service_account}]",
            opts=after_cluster,
        )
        for secret in permissions.secrets:
            # Per-secret grants: the identity reads exactly the secrets the apps reference.
            gcp.secretmanager.SecretIamMember(
                f"{prefix}-{secret}", project=s.project, secret_id=secret,
                role="roles/secretmanager.secretAccessor", member=member, opts=self._child,
            )
        for i, zone in enumerate(permissions.dns_zones):
            gcp.dns.DnsManagedZoneIamMember(
                f"{prefix}-dns-{i}", project=s.project, managed_zone=zone, role="roles/dns.admin", member=member, opts=self._child
            )
        for i, bucket in enumerate(permissions.buckets):
            gcp.storage.BucketIAMMember(
                f"{prefix}-bucket-{i}", bucket=bucket, role="roles/storage.objectAdmin", member=member, opts=self._child
            )
        return WorkloadIdentity(
            namespace=namespace,
            service_account=service_account,
            service_account_annotations={"iam.gke.io/gcp-service-account": account.email},
            principal=account.email,
        )

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        s = self._settings
        return {
            "gcpsm": {
                "projectID": s.project,
                "auth": {
                    "workloadIdentity": {
                        "clusterLocation": s.region,
                        "clusterName": self.name,
                        "clusterProjectID": s.project,
                        "serviceAccountRef": {"name": identity.service_account, "namespace": identity.namespace},
                    }
                },
            }
        }

    def backup_storage(self) -> BackupStorage:
        s = self._settings
        name = bounded_name(s.project, s.cluster_name(pulumi.get_stack()), "backups", limit=63)
        return gcs_bucket(f"{self._prefix}-backups", name, s.project, s.region, self._child)

    def dns_zone(self, settings: DnsSettings) -> CloudDnsZone:
        return CloudDnsZone(
            domain=settings.zone,
            ref=self._settings.dns_managed_zone or settings.zone.replace(".", "-"),
            project=self._settings.project,
            provider=self._gcp,
        )
