"""The AKS cluster's Key Vault: the KMS key that encrypts Kubernetes Secrets in etcd, and the
apps' secrets External Secrets reads."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

from components.cluster.aks.roles import RoleGrants
from components.cluster.aks.settings import AksSettings


@dataclass
class VaultAndKey:
    vault: azure.keyvault.Vault
    # The key's current version: AKS's KMS takes only a versioned key id.
    kms_key_id: pulumi.Output[str]
    # The control plane's right to use the key: the cluster must wait for it.
    kms_grant: pulumi.Resource


def vault_and_key(
    prefix: str,
    cluster_name: str,
    settings: AksSettings,
    tenant_id: pulumi.Input[str],
    control_plane: pulumi.Input[str],
    secrets_officers: list[tuple[str, pulumi.Input[str]]],
    grants: RoleGrants,
    opts: pulumi.ResourceOptions,
) -> VaultAndKey:
    """`control_plane` is the cluster identity's principal id; `secrets_officers` are (label,
    object id) of who may write the apps' secrets."""
    vault = azure.keyvault.Vault(
        f"{prefix}-vault",
        vault_name=settings.vault_name(cluster_name),
        properties={
            "tenant_id": tenant_id,
            "sku": {"family": "A", "name": "standard"},
            "enable_rbac_authorization": True,  # access by role assignment, never by access policy
            "enable_soft_delete": True,
            "soft_delete_retention_in_days": 90,
            "enable_purge_protection": True,
        },
        resource_group_name=settings.resource_group,
        location=settings.location,
        opts=opts,
    )
    key = azure.keyvault.Key(
        f"{prefix}-secrets-key",
        key_name=f"{cluster_name}-secrets",
        vault_name=vault.name,
        resource_group_name=settings.resource_group,
        properties={
            "kty": "RSA",
            "key_size": 2048,
            "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
            "rotation_policy": {
                "lifetime_actions": [{"action": {"type": "rotate"}, "trigger": {"time_after_create": "P90D"}}],
                "attributes": {"expiry_time": "P2Y"},
            },
        },
        opts=opts,
    )
    # Key Vault rotates the key every 90 days; a version the cluster stays pinned to would expire
    # after two years and stop it wrapping new data keys. Reading the current version on each run
    # (unknown until the key exists, so a first preview does not look it up) moves the cluster to
    # the newest version in place; older versions still unwrap what they wrapped.
    current = azure.keyvault.get_key_output(
        key_name=key.name,
        vault_name=vault.name,
        resource_group_name=settings.resource_group,
        opts=pulumi.InvokeOutputOptions(provider=opts.provider, parent=opts.parent),
    )
    kms_grant = grants.assign(f"{prefix}-kms", control_plane, "key-vault-crypto-user", vault.id)
    # Whole-vault grants: the apps' secrets are added after the vault exists, so a grant per secret
    # would name secrets that are not there yet. The vault holds only this stack's secrets.
    for label, principal in secrets_officers:
        grants.assign(f"{prefix}-{label}-secrets-officer", principal, "key-vault-secrets-officer", vault.id, principal_type=None)
    return VaultAndKey(vault=vault, kms_key_id=current.key_uri_with_version, kms_grant=kms_grant)
