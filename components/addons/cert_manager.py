"""CertManager: the cert-manager chart plus Let's Encrypt ClusterIssuers (staging and production)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.spread import highly_available, resources
from components.cluster.base import WorkloadIdentity
from components.meta import platform_labels

ACME_SERVERS = {
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "letsencrypt-production": "https://acme-v02.api.letsencrypt.org/directory",
}
IssuerName = Literal["letsencrypt-staging", "letsencrypt-production"]
WEBHOOK_PORT = 10250  # the chart's webhook.securePort


class CertManagerSettings(AddonSettings):
    chart: str = "cert-manager"
    repository: str = "https://charts.jetstack.io"
    version: str = "v1.21.1"
    namespace: str = "cert-manager"
    email: str = Field(default="ops@clpr.tv", pattern=r"^[^@\s]+@[^@\s]+$", description="ACME account e-mail.")
    issuer: IssuerName = Field(default="letsencrypt-production", description="Issuer app certificates use.")
    solver: Literal["http01", "dns01"] = Field(default="http01", description="ACME challenge type.")


@dataclass
class CertManagerArgs:
    settings: CertManagerSettings
    network: ClusterNetwork
    # The ACME solver block: HTTP-01 through the stack's ingress controller, or DNS-01 through the
    # cloud zone (then `identity` is the cloud identity cert-manager answers challenges as).
    solver: dict
    gateway_api: bool = False  # HTTP-01 through Gateway API HTTPRoutes
    identity: Optional[WorkloadIdentity] = None


def chart_values(args: CertManagerArgs) -> dict:
    identity = args.identity or WorkloadIdentity(namespace=args.settings.namespace, service_account="cert-manager")
    values = {
        "crds": {"enabled": True, "keep": True},
        "serviceAccount": {"name": identity.service_account, "annotations": identity.service_account_annotations},
        "podLabels": identity.pod_labels,
        # Challenge propagation checks go through the cluster DNS (which the namespace may reach),
        # not straight to the zone's authoritative servers on port 53.
        "dns01RecursiveNameserversOnly": True,
        "config": {
            "apiVersion": "controller.config.cert-manager.io/v1alpha1",
            "kind": "ControllerConfiguration",
            "enableGatewayAPI": args.gateway_api,
        },
        # Two replicas of each part, spread over nodes and zones, and a PDB that lets one go at a time:
        # with the chart's single replica, its PDB (minAvailable 1) would block every node drain.
        **highly_available(_pods("controller"), replica_key="replicaCount"),
        "resources": resources(),
    }
    for part in ("webhook", "cainjector"):
        values[part] = {**highly_available(_pods(part), replica_key="replicaCount"), "resources": resources()}
    return values


def _pods(component: str) -> dict[str, str]:
    # The labels the chart's templates put on each part's pods (release name = add-on name).
    return {"app.kubernetes.io/instance": "cert-manager", "app.kubernetes.io/component": component}


class CertManager(pulumi.ComponentResource):
    addon: HelmAddon
    issuers: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: CertManagerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:CertManager", name, None, opts)
        s = args.settings
        if s.solver == "dns01" and args.identity is None:
            raise ValueError("cert-manager solver dns01 needs a cloud identity for the cluster")
        traffic = AddonTraffic(
            webhook_ports=(WEBHOOK_PORT,),
            # ACME and cloud DNS APIs on 443; the HTTP-01 self-check fetches the challenge on port 80.
            internet_ports=(443, 80),
        )
        self.addon = HelmAddon(
            name,
            HelmAddonArgs(settings=s, network=args.network, traffic=traffic, values=chart_values(args)),
            pulumi.ResourceOptions(parent=self),
        )
        # The chart's objects are awaited (CRDs established, webhook Ready) before issuers are sent.
        self.issuers = {
            issuer: k8s.apiextensions.CustomResource(
                issuer,
                api_version="cert-manager.io/v1",
                kind="ClusterIssuer",
                metadata={"name": issuer, "labels": platform_labels("tls")},
                spec={
                    "acme": {
                        "server": server,
                        "email": s.email,
                        "privateKeySecretRef": {"name": f"{issuer}-account-key"},
                        "solvers": [args.solver],
                    }
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.chart]),
            )
            for issuer, server in ACME_SERVERS.items()
        }
        self.register_outputs({"issuers": list(self.issuers)})
