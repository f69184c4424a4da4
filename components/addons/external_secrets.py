"""ExternalSecrets: the External Secrets Operator chart and a ClusterSecretStore for the stack's
cloud secret manager. Apps then declare ExternalSecrets against that store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.cluster.base import WorkloadIdentity
from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.spread import highly_available, resources
from components.meta import platform_labels
from components.settings import DnsLabel

WEBHOOK_PORT = 10250  # the chart's webhook.port


class ExternalSecretsSettings(AddonSettings):
    chart: str = "external-secrets"
    repository: str = "https://charts.external-secrets.io"
    version: str = "2.9.0"
    namespace: str = "external-secrets"
    store_name: DnsLabel = Field(default="cloud-secrets", description="Name of the ClusterSecretStore.")
    refresh_interval: str = Field(
        default="1h", pattern=r"^\d+[smh]$", description="How often apps' ExternalSecrets re-read the secret manager."
    )
    wait_for_sync: bool = Field(
        default=True,
        description="Wait until each app's secrets are synced before its migration Job and pods start; turn off "
        "where no operator runs (a local API server).",
    )


@dataclass(frozen=True)
class SecretSync:
    """How apps' secrets are synced by External Secrets."""

    store: str  # the ClusterSecretStore
    refresh_interval: str  # how often an ExternalSecret re-reads the secret manager
    # Wait for the operator to sync each Secret before the migration Job and pods that read it start.
    wait: bool = True


@dataclass
class ExternalSecretsArgs:
    settings: ExternalSecretsSettings
    # ESO `spec.provider` block for the stack's cloud, authenticated as `identity`, the cloud
    # identity of the operator's ServiceAccount (from `Cluster.identity_for`).
    store_provider: pulumi.Input[dict]
    identity: WorkloadIdentity
    network: ClusterNetwork


class ExternalSecrets(pulumi.ComponentResource):
    addon: HelmAddon
    store: k8s.apiextensions.CustomResource
    store_name: str
    sync: SecretSync  # what apps' ExternalSecrets use

    def __init__(self, name: str, args: ExternalSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:ExternalSecrets", name, None, opts)
        s = args.settings
        values = {
            "installCRDs": True,
            "serviceAccount": {"name": args.identity.service_account, "annotations": args.identity.service_account_annotations},
            "podLabels": args.identity.pod_labels,
            **highly_available({"app.kubernetes.io/name": "external-secrets", "app.kubernetes.io/instance": name}, "replicaCount"),
            # Two replicas of the controller (and of the cert controller) without leader election would
            # both reconcile; the chart passes the flag to both.
            "leaderElect": True,
            # The chart ships these probes off: the controller's health server (port `live`) starts
            # when either is on. The webhook and cert controller have readiness on already, and serve
            # /healthz for liveness from v2.5.0 (external-secrets#6319; 2.4.x answered 404).
            "livenessProbe": {"enabled": True},
            "readinessProbe": {"enabled": True},
            "resources": resources(),
            "webhook": {
                **highly_available(
                    {"app.kubernetes.io/name": "external-secrets-webhook", "app.kubernetes.io/instance": name}, "replicaCount"
                ),
                "livenessProbe": {"enabled": True},
                "resources": resources(),
            },
            # It keeps the webhook's certificate and the CRDs' and webhook configurations' CA bundles
            # current; a non-leader replica reports Ready without reconciling (external-secrets#2857).
            "certController": {
                **highly_available(
                    {"app.kubernetes.io/name": "external-secrets-cert-controller", "app.kubernetes.io/instance": name},
                    "replicaCount",
                ),
                "livenessProbe": {"enabled": True},
                "resources": resources(),
            },
        }
        # The webhook validates stores and ExternalSecrets; secrets come from the cloud API on 443.
        traffic = AddonTraffic(webhook_ports=(WEBHOOK_PORT,))
        self.addon = HelmAddon(
            name,
            HelmAddonArgs(settings=s, network=args.network, traffic=traffic, values=values),
            pulumi.ResourceOptions(parent=self),
        )
        self.store_name = s.store_name
        self.sync = SecretSync(store=s.store_name, refresh_interval=s.refresh_interval, wait=s.wait_for_sync)
        self.store = k8s.apiextensions.CustomResource(
            s.store_name,
            api_version="external-secrets.io/v1",
            kind="ClusterSecretStore",
            metadata={"name": s.store_name, "labels": platform_labels("secrets")},
            spec={"provider": args.store_provider, "refreshInterval": 300},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.chart]),
        )
        self.register_outputs({"storeName": s.store_name})
