"""ExternalSecrets: the External Secrets Operator chart and a ClusterSecretStore for the stack's
cloud secret manager. Apps then declare ExternalSecrets against that store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.cluster.base import WorkloadIdentity
from components.addons.helm_addon import AddonSettings, HelmAddon, HelmAddonArgs
from components.meta import platform_labels
from components.settings import DnsLabel


class ExternalSecretsSettings(AddonSettings):
    chart: str = "external-secrets"
    repository: str = "https://charts.external-secrets.io"
    version: str = "0.20.4"
    namespace: str = "external-secrets"
    store_name: DnsLabel = Field(default="cloud-secrets", description="Name of the ClusterSecretStore.")
    refresh_interval: str = Field(default="1h", pattern=r"^\d+[smh]$", description="How often secrets sync.")


@dataclass
class ExternalSecretsArgs:
    settings: ExternalSecretsSettings
    # ESO `spec.provider` block for the stack's cloud, authenticated as `identity`, the cloud
    # identity of the operator's ServiceAccount (from `Cluster.identity_for`).
    store_provider: pulumi.Input[dict]
    identity: WorkloadIdentity


class ExternalSecrets(pulumi.ComponentResource):
    addon: HelmAddon
    store: k8s.apiextensions.CustomResource
    store_name: str

    def __init__(self, name: str, args: ExternalSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:ExternalSecrets", name, None, opts)
        s = args.settings
        values = {
            "installCRDs": True,
            "serviceAccount": {"name": args.identity.service_account, "annotations": args.identity.service_account_annotations},
            "podLabels": args.identity.pod_labels,
        }
        self.addon = HelmAddon(name, HelmAddonArgs(settings=s, values=values), pulumi.ResourceOptions(parent=self))
        self.store_name = s.store_name
        self.store = k8s.apiextensions.CustomResource(
            s.store_name,
            api_version="external-secrets.io/v1",
            kind="ClusterSecretStore",
            metadata={"name": s.store_name, "labels": platform_labels("secrets")},
            spec={"provider": args.store_provider, "refreshInterval": 300},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.release]),
        )
        self.register_outputs({"storeName": s.store_name})
