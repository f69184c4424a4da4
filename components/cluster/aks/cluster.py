"""AksCluster: AKS with Entra ID-only access, the OIDC issuer and Azure workload identity, Azure CNI
with network policy, Key Vault KMS secrets encryption, plus managed identities and Azure DNS records."""
from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import pulumi
import pulumi_azure_native as azure
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field

from components.cluster.base import IdentityPermissions, WorkloadIdentity
from components.cluster.kubeconfig import ExecCredential, exec_kubeconfig
from components.cluster.naming import bounded_name
from components.cluster.settings import SPOT_TAINT, Cidr, CloudClusterSettings, NodePool, NodePools, region_validator
from components.dns import DnsSettings, is_ip_address
from components.settings import Settings

AzureRegion = Annotated[str, region_validator(r"^[a-z]+[a-z0-9]*$", "westeurope")]
# The AKS Entra ID server application: the audience of every user token for an AKS API server.
AKS_AAD_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"
# Built-in Azure role definition ids (the same in every tenant).
ROLES = {
    "key-vault-crypto-user": "12338af0-0e69-4776-bea7-57ae8d297424",
    "key-vault-secrets-user": "4633458b-17de-408a-b874-0445c86b69e6",
    "dns-zone-contributor": "befefa01-2a29-4197-83a8-272ff33ce314",
    "network-contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
    "aks-rbac-cluster-admin": "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
}


class AksNetworkSettings(Settings):
    """The VNet: created (default) or an existing subnet; pods get overlay addresses either way."""

    subnet_id: Optional[str] = Field(default=None, description="Existing subnet resource id for nodes; unset: create a VNet.")
    vnet_cidr: Cidr = "10.10.0.0/16"
    nodes_cidr: Cidr = "10.10.0.0/20"
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
    key_vault_name: Optional[str] = Field(
        default=None,
        pattern=r"^[a-zA-Z][-a-zA-Z0-9]{1,22}[a-zA-Z0-9]$",
        description="Key Vault for the KMS key and the apps' secrets (globally unique; default: <cluster>-kv).",
    )
    network: AksNetworkSettings = Field(default_factory=AksNetworkSettings)
    dns_zone_resource_group: Optional[str] = Field(default=None, description="Resource group of the dns.zone (default: resourceGroup).")
    log_retention_days: int = Field(default=30, ge=30, le=730)
    default_node_pools = NodePools(
        system=NodePool(machine_type="Standard_D2s_v5", min_nodes=2, max_nodes=3, disk_size_gb=64),
        workload=NodePool(machine_type="Standard_D2s_v5", min_nodes=2, max_nodes=10, disk_size_gb=64),
        spot=NodePool(machine_type="Standard_D2s_v5", min_nodes=0, max_nodes=10, disk_size_gb=64),
    )

    def vault_name(self, cluster_name: str) -> str:
        return self.key_vault_name or bounded_name(cluster_name, "kv", limit=24)


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
        control_plane = azure.managedidentity.UserAssignedIdentity(
            f"{name}-control-plane", resource_name_=f"{cluster_name}-control-plane", **self._place, opts=self._child
        )
        subnet_id = self._network(cluster_name, control_plane)
        self.vault, key, key_grant = self._vault_and_key(cluster_name, control_plane, client.tenant_id)
        workspace = azure.operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=cluster_name,
            sku={"name": "PerGB2018"},
            retention_in_days=s.log_retention_days,
            **self._place,
            opts=self._child,
        )
        self.cluster = self._control_plane(cluster_name, control_plane, subnet_id, key, workspace, depends_on=[key_grant])
        self._diagnostics(workspace)
        self._maintenance()
        pools = [self._agent_pool(pool, cfg, subnet_id) for pool, cfg in s.node_pools if cfg.enabled and pool != "system"]
        # Pulumi itself (the signed-in principal) and the admin groups administer through Azure RBAC.
        admins = [(client.object_id, "deployer")] + [(g, f"admins-{i}") for i, g in enumerate(s.admin_group_object_ids)]
        grants = [
            self._role_assignment(f"{name}-{label}-cluster-admin", principal, "aks-rbac-cluster-admin", self.cluster.id, principal_type=None)
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

    def _role_definition(self, role: str) -> pulumi.Output[str]:
        return self._subscription_id.apply(
            lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}"
        )

    def _role_assignment(
        self,
        name: str,
        principal_id: pulumi.Input[str],
        role: str,
        scope: pulumi.Input[str],
        principal_type: Optional[str] = "ServicePrincipal",
    ) -> azure.authorization.RoleAssignment:
        return azure.authorization.RoleAssignment(
            name,
            principal_id=principal_id,
            principal_type=principal_type,
            role_definition_id=self._role_definition(role),
            scope=scope,
            opts=self._child,
        )

    def _network(self, cluster_name: str, control_plane: azure.managedidentity.UserAssignedIdentity) -> pulumi.Input[str]:
        n = self._settings.network
        if n.subnet_id:
            subnet_id: pulumi.Input[str] = n.subnet_id
        else:
            vnet = azure.network.VirtualNetwork(
                f"{self._prefix}-vnet",
                virtual_network_name=cluster_name,
                address_space={"address_prefixes": [n.vnet_cidr]},
                **self._place,
                opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(ignore_changes=["subnets"])),
            )
            subnet_id = azure.network.Subnet(
                f"{self._prefix}-nodes",
                subnet_name="nodes",
                virtual_network_name=vnet.name,
                resource_group_name=self._settings.resource_group,
                address_prefix=n.nodes_cidr,
                # Nodes have no public IPs; egress goes through the cluster's load balancer.
                default_outbound_access=False,
                opts=self._child,
            ).id
        # AKS manages load balancers and routes in the node subnet as the control-plane identity.
        self._role_assignment(f"{self._prefix}-subnet-network", control_plane.principal_id, "network-contributor", subnet_id)
        return subnet_id

    def _vault_and_key(
        self, cluster_name: str, control_plane: azure.managedidentity.UserAssignedIdentity, tenant_id: pulumi.Output[str]
    ) -> tuple[azure.keyvault.Vault, azure.keyvault.Key, pulumi.Resource]:
        vault = azure.keyvault.Vault(
            f"{self._prefix}-vault",
            vault_name=self._settings.vault_name(cluster_name),
            properties={
                "tenant_id": tenant_id,
                "sku": {"family": "A", "name": "standard"},
                "enable_rbac_authorization": True,  # access by role assignment, scoped down to single secrets
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
                "enable_purge_protection": True,
            },
            **self._place,
            opts=self._child,
        )
        key = azure.keyvault.Key(
            f"{self._prefix}-secrets-key",
            key_name=f"{cluster_name}-secrets",
            vault_name=vault.name,
            resource_group_name=self._settings.resource_group,
            properties={
                "kty": "RSA",
                "key_size": 2048,
                "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
                "rotation_policy": {
                    "lifetime_actions": [{"action": {"type": "rotate"}, "trigger": {"time_after_create": "P90D"}}],
                    "attributes": {"expiry_time": "P2Y"},
                },
            },
            opts=self._child,
        )
        grant = self._role_assignment(f"{self._prefix}-kms", control_plane.principal_id, "key-vault-crypto-user", vault.id)
        return vault, key, grant

    def _system_pool(self, subnet_id: pulumi.Input[str]) -> dict:
        s = self._settings
        pool = s.node_pools.system
        return {
            **self._pool_profile(pool, subnet_id),
            "name": "system",
            "mode": "System",
            # Only cluster add-ons run here; the apps go to the workload pool.
            "node_taints": ["CriticalAddonsOnly=true:NoSchedule"],
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
            "upgrade_settings": {"max_surge": "33%"},
        }

    def _control_plane(
        self,
        cluster_name: str,
        control_plane: azure.managedidentity.UserAssignedIdentity,
        subnet_id: pulumi.Input[str],
        key: azure.keyvault.Key,
        workspace: azure.operationalinsights.Workspace,
        depends_on: list[pulumi.Resource],
    ) -> azure.containerservice.ManagedCluster:
        s = self._settings
        n = s.network
        api = (
            {"enable_private_cluster": True}
            if s.api.private_endpoint
            else {"enable_private_cluster": False, "authorized_ip_ranges": s.api.authorized_cidrs}
        )
        return azure.containerservice.ManagedCluster(
            self._prefix,
            resource_name_=cluster_name,
            dns_prefix=cluster_name,
            kubernetes_version=s.kubernetes_version,
            sku={"name": "Base", "tier": s.sku_tier},
            # A user-assigned identity exists before the cluster, so it can be granted the KMS key first.
            identity={"type": "UserAssigned", "user_assigned_identities": [control_plane.id]},
            agent_pool_profiles=[self._system_pool(subnet_id)],
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
                "azure_key_vault_kms": {"enabled": True, "key_id": key.key_uri_with_version, "key_vault_network_access": "Public"},
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
                "node_taints": [f"{SPOT_TAINT['key']}={SPOT_TAINT['value']}:{SPOT_TAINT['effect']}"],
            }
            if spot
            else {}
        )
        return azure.containerservice.AgentPool(
            f"{self._prefix}-{pool}",
            agent_pool_name=pool,
            resource_name_=self.cluster.name,
            resource_group_name=self._settings.resource_group,
            mode="User",
            node_labels={"clipper.dev/pool": pool},
            **profile,
            **extra,
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(ignore_changes=["count"])),
        )

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
        for secret in permissions.secrets:
            # Scoped to one secret: the identity can read exactly what the apps reference.
            self._role_assignment(
                f"{prefix}-{secret}",
                identity.principal_id,
                "key-vault-secrets-user",
                self.vault.id.apply(lambda vault_id, name=secret: f"{vault_id}/secrets/{name}"),
            )
        for i, zone in enumerate(permissions.dns_zones):
            self._role_assignment(f"{prefix}-dns-{i}", identity.principal_id, "dns-zone-contributor", zone)
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

    def dns_zone(self, settings: DnsSettings) -> AzureDnsZone:
        group = self._settings.dns_zone_resource_group or self._settings.resource_group
        zone_id = self._subscription_id.apply(
            lambda sub: f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/dnszones/{settings.zone}"
        )
        return AzureDnsZone(
            domain=settings.zone, ref=zone_id, subscription_id=self._subscription_id, resource_group=group, provider=self._azure
        )
