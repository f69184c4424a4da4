"""AksCluster: AKS with Entra ID-only access, the OIDC issuer and Azure workload identity, Azure CNI
with network policy, Key Vault KMS secrets encryption, plus managed identities and Azure DNS records."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_azure_native as azure
import pulumi_kubernetes as k8s
import yaml

from components.backup_storage import BackupStorage, azure_container
from components.cluster.aks.keys import vault_and_key
from components.cluster.aks.network import AksSubnets, aks_network
from components.cluster.aks.roles import RoleGrants
from components.cluster.aks.settings import AksSettings
from components.cluster.base import POOL_LABEL, IdentityPermissions, SpotPlacement, WorkloadIdentity
from components.cluster.kubeconfig import ExecCredential, exec_kubeconfig
from components.cluster.naming import bounded_name
from components.cluster.settings import NodePool
from components.dns import DnsSettings, is_ip_address

# The AKS Entra ID server application: the audience of every user token for an AKS API server.
AKS_AAD_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"
# AKS taints every spot node with this itself; declaring anything else would drift forever.
AKS_SPOT = SpotPlacement("kubernetes.azure.com/scalesetpriority", "spot")


@dataclass
class AzureDnsZone:
    """An Azure DNS zone; records are A for IP targets, CNAME for hostnames."""

    domain: str
    ref: pulumi.Output[str]  # the zone's resource id
    subscription_id: pulumi.Output[str]
    resource_group: str
    provider: azure.Provider

    def record(self, host: str, target: pulumi.Input[str], ttl: int, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        address = pulumi.Output.from_input(target)
        relative = "@" if host == self.domain else host.removesuffix("." + self.domain)
        return azure.dns.RecordSet(
            host,
            resource_group_name=self.resource_group,
            zone_name=self.domain,
            relative_record_set_name=relative,
            record_type=address.apply(lambda a: "A" if is_ip_address(a) else "CNAME"),
            ttl=ttl,
            a_records=address.apply(lambda a: [{"ipv4_address": a}] if is_ip_address(a) else None),
            cname_record=address.apply(lambda a: None if is_ip_address(a) else {"cname": a}),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=self.provider)),
        )

    def acme_dns01_solver(self, identity: WorkloadIdentity) -> dict:
        return {
            "selector": {"dnsZones": [self.domain]},
            "dns01": {
                "azureDNS": {
                    "subscriptionID": self.subscription_id,
                    "resourceGroupName": self.resource_group,
                    "hostedZoneName": self.domain,
                    "environment": "AzurePublicCloud",
                    "managedIdentity": {"clientID": identity.principal},
                }
            },
        }


def agent_pool_name(pool: str, vm_size: str) -> str:
    """`workload` + 4 hex digits of the VM size: at most 12 lowercase alphanumerics, as AKS requires
    of Linux pools, and a different name for each size so old and new pools can coexist."""
    return pool + hashlib.sha256(vm_size.encode()).hexdigest()[:4]


def _server_and_ca(kubeconfig_b64: str) -> tuple[str, str]:
    """Endpoint and CA from the user kubeconfig AKS returns (Entra ID exec format: no credentials)."""
    cluster = yaml.safe_load(base64.b64decode(kubeconfig_b64))["clusters"][0]["cluster"]
    return cluster["server"], cluster["certificate-authority-data"]


class AksCluster(pulumi.ComponentResource):
    def __init__(self, name: str, settings: AksSettings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:cluster:AksCluster", name, None, opts)
        s = self._settings = settings
        self._prefix = name
        self.region = s.location
        self.spot = AKS_SPOT
        # With VNet Integration the API server calls webhooks from its delegated subnet; without it,
        # through konnectivity agents in kube-system, so no narrower range is known.
        integrated_here = s.vnet_integration and s.network.subnet_id is None
        self.control_plane_cidrs = (s.network.api_server_cidr,) if integrated_here else ()
        cluster_name = s.cluster_name(pulumi.get_stack())
        self._azure = azure.Provider(
            f"{name}-azure", subscription_id=s.subscription_id, location=s.location, opts=pulumi.ResourceOptions(parent=self)
        )
        self._child = pulumi.ResourceOptions(parent=self, provider=self._azure)
        client = azure.authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(provider=self._azure, parent=self))
        self._subscription_id = client.subscription_id
        self._place = {"resource_group_name": s.resource_group, "location": s.location}

        group = (
            azure.resources.ResourceGroup(f"{name}-group", resource_group_name=s.resource_group, location=s.location, opts=self._child)
            if s.create_resource_group
            else None
        )
        if group:  # everything else in the group waits for it
            self._child = pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(depends_on=[group]))
        self._grants = RoleGrants(self._subscription_id, self._child)
        control_plane = azure.managedidentity.UserAssignedIdentity(
            f"{name}-control-plane", resource_name_=f"{cluster_name}-control-plane", **self._place, opts=self._child
        )
        subnets = aks_network(name, cluster_name, s, control_plane.principal_id, self._grants, self._child)
        # Whoever runs `pulumi up` and the configured officers can put the apps' secrets in the vault.
        officers = [("deployer", client.object_id)] + [(f"officer-{i}", o) for i, o in enumerate(s.secrets_officer_object_ids)]
        keys = vault_and_key(name, cluster_name, s, client.tenant_id, control_plane.principal_id, officers, self._grants, self._child)
        self.vault = keys.vault
        workspace = azure.operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=cluster_name,
            sku={"name": "PerGB2018"},
            retention_in_days=s.log_retention_days,
            **self._place,
            opts=self._child,
        )
        self.cluster = self._control_plane(cluster_name, control_plane, subnets, keys.kms_key_id, workspace, depends_on=[keys.kms_grant])
        self._diagnostics(workspace)
        self._maintenance()
        pools = [self._agent_pool(pool, cfg, subnets.nodes) for pool, cfg in s.node_pools if cfg.enabled and pool != "system"]
        # Pulumi itself (the signed-in principal) and the admin groups administer through Azure RBAC.
        admins = [(client.object_id, "deployer")] + [(g, f"admins-{i}") for i, g in enumerate(s.admin_group_object_ids)]
        grants = [
            self._grants.assign(f"{name}-{label}-cluster-admin", principal, "aks-rbac-cluster-admin", self.cluster.id, principal_type=None)
            for principal, label in admins
        ]

        self.name = self.cluster.name
        self.oidc_issuer = self.cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
        credentials = azure.containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=s.resource_group,
            resource_name=self.cluster.name,
            format="exec",
            opts=pulumi.InvokeOutputOptions(provider=self._azure, parent=self),
        )
        server_and_ca = credentials.kubeconfigs.apply(lambda ks: _server_and_ca(ks[0].value))
        self.endpoint = server_and_ca.apply(lambda x: x[0])
        self.kubeconfig = exec_kubeconfig(
            self.cluster.name,
            self.endpoint,
            server_and_ca.apply(lambda x: x[1]),
            ExecCredential(
                command="kubelogin",
                args=("get-token", "--login", "azurecli", "--server-id", AKS_AAD_SERVER_APP),
                install_hint="Install kubelogin (az aks install-cli) and sign in with az login.",
            ),
        )
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=pools + grants),
        )
        self.register_outputs({"name": self.name, "endpoint": self.endpoint})

    def _system_pool(self, subnet_id: pulumi.Input[str]) -> dict:
        s = self._settings
        pool = s.node_pools.system
        return {
            **self._pool_profile(pool, subnet_id),
            "name": "system",
            "mode": "System",
            # Only cluster add-ons run here; the apps go to the workload pool.
            "node_taints": ["CriticalAddonsOnly=true:NoSchedule"],
            "upgrade_settings": {"max_surge": "33%"},
        }

    def _pool_profile(self, pool: NodePool, subnet_id: pulumi.Input[str]) -> dict:
        return {
            "vm_size": pool.machine_type,
            "os_type": "Linux",
            "os_sku": "AzureLinux",
            "os_disk_size_gb": pool.disk_size_gb,
            "type": "VirtualMachineScaleSets",
            "availability_zones": self._settings.zones,
            "vnet_subnet_id": subnet_id,
            "enable_node_public_ip": False,
            "enable_auto_scaling": True,
            "min_count": pool.min_nodes,
            "max_count": pool.max_nodes,
            "count": pool.min_nodes,
        }

    def _control_plane(
        self,
        cluster_name: str,
        control_plane: azure.managedidentity.UserAssignedIdentity,
        subnets: AksSubnets,
        kms_key_id: pulumi.Input[str],
        workspace: azure.operationalinsights.Workspace,
        depends_on: list[pulumi.Resource],
    ) -> azure.containerservice.ManagedCluster:
        s = self._settings
        n = s.network
        if not s.api.authorized_cidrs:
            api: dict = {"enable_private_cluster": True}
        elif s.vnet_integration:
            # The API server gets an address in the VNet (nodes use it, privately) and keeps a public
            # one limited to the listed ranges: the way in for `pulumi up` from outside.
            api = {
                "enable_private_cluster": False,
                "enable_vnet_integration": True,
                "subnet_id": subnets.api_server,
                "authorized_ip_ranges": s.api.authorized_cidrs,
            }
        else:
            api = {"enable_private_cluster": False, "authorized_ip_ranges": s.api.authorized_cidrs}
        return azure.containerservice.ManagedCluster(
            self._prefix,
            resource_name_=cluster_name,
            dns_prefix=cluster_name,
            kubernetes_version=s.kubernetes_version,
            sku={"name": "Base", "tier": s.sku_tier},
            # A user-assigned identity exists before the cluster, so it can be granted the KMS key first.
            identity={"type": "UserAssigned", "user_assigned_identities": [control_plane.id]},
            agent_pool_profiles=[self._system_pool(subnets.nodes)],
            # Entra ID only: no local admin certificate, Kubernetes RBAC decided by Azure role assignments.
            aad_profile={"managed": True, "enable_azure_rbac": True, "admin_group_object_ids": s.admin_group_object_ids},
            disable_local_accounts=True,
            enable_rbac=True,
            api_server_access_profile=api,
            network_profile={
                "network_plugin": "azure",
                "network_plugin_mode": "overlay",
                "network_policy": n.network_policy,
                "network_dataplane": "cilium" if n.network_policy == "cilium" else "azure",
                "pod_cidr": n.pods_cidr,
                "service_cidr": n.services_cidr,
                "dns_service_ip": str(ipaddress.ip_network(n.services_cidr)[10]),  # AKS convention: .10 of the range
                "load_balancer_sku": "standard",
                "outbound_type": "loadBalancer",
            },
            oidc_issuer_profile={"enabled": True},
            security_profile={
                "workload_identity": {"enabled": True},
                "azure_key_vault_kms": {"enabled": True, "key_id": kms_key_id, "key_vault_network_access": "Public"},
                "image_cleaner": {"enabled": True, "interval_hours": 168},
            },
            auto_upgrade_profile={"upgrade_channel": s.upgrade_channel, "node_os_upgrade_channel": "NodeImage"},
            addon_profiles={
                "omsagent": {
                    "enabled": True,
                    "config": {"logAnalyticsWorkspaceResourceID": workspace.id, "useAADAuth": "true"},
                },
                "azurepolicy": {"enabled": True},
            },
            **self._place,
            opts=pulumi.ResourceOptions.merge(
                self._child,
                # The autoscaler owns the system pool's count; pools below are separate resources.
                pulumi.ResourceOptions(depends_on=depends_on, ignore_changes=["agentPoolProfiles[0].count"]),
            ),
        )

    def _diagnostics(self, workspace: azure.operationalinsights.Workspace) -> None:
        # Control-plane logs (API server, audit) are not collected unless asked for.
        azure.monitor.DiagnosticSetting(
            f"{self._prefix}-control-plane-logs",
            name="control-plane-logs",
            resource_uri=self.cluster.id,
            workspace_id=workspace.id,
            logs=[{"category": c, "enabled": True} for c in ("kube-apiserver", "kube-audit-admin", "kube-controller-manager", "guard")],
            opts=self._child,
        )

    def _maintenance(self) -> None:
        w = self._settings.maintenance
        # AKS takes one weekday per schedule: Kubernetes upgrades on the first day, node images on the last.
        for config_name, day in (("aksManagedAutoUpgradeSchedule", w.days[0]), ("aksManagedNodeOSUpgradeSchedule", w.days[-1])):
            azure.containerservice.MaintenanceConfiguration(
                f"{self._prefix}-{config_name}",
                config_name=config_name,
                resource_name_=self.cluster.name,
                resource_group_name=self._settings.resource_group,
                maintenance_window={
                    "schedule": {"weekly": {"day_of_week": day, "interval_weeks": 1}},
                    "duration_hours": w.duration_hours,
                    "start_time": f"{w.start_hour_utc:02d}:00",
                    "utc_offset": "+00:00",
                },
                opts=self._child,
            )

    def _agent_pool(self, pool: str, cfg: NodePool, subnet_id: pulumi.Input[str]) -> azure.containerservice.AgentPool:
        spot = pool == "spot"
        profile = self._pool_profile(cfg, subnet_id)
        extra = (
            {
                "scale_set_priority": "Spot",
                "scale_set_eviction_policy": "Delete",
                "spot_max_price": -1,  # pay up to the on-demand price; evictions are capacity-only
                # AKS's own taint, declared as AKS sets it; spot pools take no surge settings.
                "node_taints": [AKS_SPOT.taint],
            }
            if spot
            else {"upgrade_settings": {"max_surge": "33%"}}
        )
        return azure.containerservice.AgentPool(
            f"{self._prefix}-{pool}",
            agent_pool_name=agent_pool_name(pool, cfg.machine_type),
            resource_name_=self.cluster.name,
            resource_group_name=self._settings.resource_group,
            mode="User",
            node_labels={POOL_LABEL: pool},
            **profile,
            **extra,
            # A new VM size is a new pool name: Pulumi creates the new pool before deleting the old one,
            # which drains it - Microsoft's resize procedure, since AKS cannot change a pool's VM size.
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(ignore_changes=["count"])),
        )

    def node_autoscaler(self) -> None:
        return None  # AKS's own cluster autoscaler scales the pools

    def identity_for(self, namespace: str, service_account: str, permissions: IdentityPermissions) -> WorkloadIdentity:
        s = self._settings
        prefix = f"{self._prefix}-{namespace}-{service_account}"
        identity = azure.managedidentity.UserAssignedIdentity(
            prefix,
            resource_name_=bounded_name(s.cluster_name(pulumi.get_stack()), namespace, service_account, limit=128),
            **self._place,
            opts=self._child,
        )
        azure.managedidentity.FederatedIdentityCredential(
            prefix,
            federated_identity_credential_resource_name=f"{namespace}-{service_account}",
            resource_name_=identity.name,
            resource_group_name=s.resource_group,
            issuer=self.oidc_issuer,
            subject=f"system:serviceaccount:{namespace}:{service_account}",
            audiences=["api://AzureADTokenExchange"],
            opts=self._child,
        )
        if permissions.secrets:
            # The vault, not each secret: the secrets are written after this run creates the vault.
            self._grants.assign(f"{prefix}-secrets", identity.principal_id, "key-vault-secrets-user", self.vault.id)
        for i, zone in enumerate(permissions.dns_zones):
            self._grants.assign(f"{prefix}-dns-{i}", identity.principal_id, "dns-zone-contributor", zone)
        for i, container in enumerate(permissions.buckets):
            self._grants.assign(f"{prefix}-bucket-{i}", identity.principal_id, "storage-blob-data-contributor", container)
        return WorkloadIdentity(
            namespace=namespace,
            service_account=service_account,
            service_account_annotations={"azure.workload.identity/client-id": identity.client_id},
            pod_labels={"azure.workload.identity/use": "true"},
            principal=identity.client_id,
        )

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        return {
            "azurekv": {
                "authType": "WorkloadIdentity",
                "vaultUrl": self.vault.properties.vault_uri,
                "serviceAccountRef": {"name": identity.service_account, "namespace": identity.namespace},
            }
        }

    def backup_storage(self) -> BackupStorage:
        s = self._settings
        # Storage account names: 3-24 lower-case letters and digits, unique across Azure.
        account = bounded_name("".join(c for c in s.cluster_name(pulumi.get_stack()).lower() if c.isalnum()), "bk", limit=24, separator="")
        return azure_container(f"{self._prefix}-backups", account, self._place, self._subscription_id, self._child)

    def dns_zone(self, settings: DnsSettings) -> AzureDnsZone:
        group = self._settings.dns_zone_resource_group or self._settings.resource_group
        zone_id = self._subscription_id.apply(
            lambda sub: f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/dnszones/{settings.zone}"
        )
        return AzureDnsZone(
            domain=settings.zone, ref=zone_id, subscription_id=self._subscription_id, resource_group=group, provider=self._azure
        )
