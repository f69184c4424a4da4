"""Azure role assignments by built-in role name, for the AKS modules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_azure_native as azure

# Built-in Azure role definition ids (the same in every tenant).
ROLES = {
    "key-vault-crypto-user": "12338af0-0e69-4776-bea7-57ae8d297424",
    "key-vault-secrets-user": "4633458b-17de-408a-b874-0445c86b69e6",
    "key-vault-secrets-officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "dns-zone-contributor": "befefa01-2a29-4197-83a8-272ff33ce314",
    "network-contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
    "aks-rbac-cluster-admin": "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
    "storage-blob-data-contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
}


@dataclass
class RoleGrants:
    subscription_id: pulumi.Output[str]
    opts: pulumi.ResourceOptions

    def assign(
        self,
        name: str,
        principal_id: pulumi.Input[str],
        role: str,
        scope: pulumi.Input[str],
        principal_type: Optional[str] = "ServicePrincipal",
    ) -> azure.authorization.RoleAssignment:
        """`principal_type` None: a user, group or service principal, as Azure finds it."""
        return azure.authorization.RoleAssignment(
            name,
            principal_id=principal_id,
            principal_type=principal_type,
            role_definition_id=self.subscription_id.apply(
                lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}"
            ),
            scope=scope,
            opts=self.opts,
        )
