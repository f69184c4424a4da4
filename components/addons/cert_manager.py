"""CertManager: the cert-manager chart plus Let's Encrypt ClusterIssuers (staging and production)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.cluster.base import WorkloadIdentity
from components.addons.helm_addon import AddonSettings, HelmAddon, HelmAddonArgs
from components.meta import platform_labels

ACME_SERVERS = {
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "letsencrypt-production": "https://acme-v02.api.letsencrypt.org/directory",
}
IssuerName = Literal["letsencrypt-staging", "letsencrypt-production"]


class CertManagerSettings(AddonSettings):
    chart: str = "cert-manager"
    repository: str = "https://charts.jetstack.io"
    version: str = "v1.19.1"
    namespace: str = "cert-manager"
    email: str = Field(default="ops@clpr.tv", pattern=r"^[^@\s]+@[^@\s]+$", description="ACME account e-mail.")
    issuer: IssuerName = Field(default="letsencrypt-production", description="Issuer app certificates use.")
    solver: Literal["http01", "dns01"] = Field(default="http01", description="ACME challenge type.")


@dataclass
class CertManagerArgs:
    settings: CertManagerSettings
    ingress_class: str
    # DNS-01 only: the solver block for the stack's cloud zone, and the cloud identity cert-manager
    # answers challenges as (on its ServiceAccount and pods). None for HTTP-01.
    dns01_solver: Optional[dict] = None
    identity: Optional[WorkloadIdentity] = None


class CertManager(pulumi.ComponentResource):
    addon: HelmAddon
    issuers: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: CertManagerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:CertManager", name, None, opts)
        s = args.settings
        if s.solver == "dns01" and args.dns01_solver is None:
            raise ValueError("cert-manager solver dns01 needs a DNS zone and a cloud identity for the cluster")
        identity = args.identity or WorkloadIdentity(namespace=s.namespace, service_account="cert-manager")
        values = {
            "crds": {"enabled": True, "keep": True},
            "serviceAccount": {"name": identity.service_account, "annotations": identity.service_account_annotations},
            "podLabels": identity.pod_labels,
            "podDisruptionBudget": {"enabled": True},
        }
        self.addon = HelmAddon(name, HelmAddonArgs(settings=s, values=values), pulumi.ResourceOptions(parent=self))
        solver = (
            args.dns01_solver
            if s.solver == "dns01"
            else {"http01": {"ingress": {"ingressClassName": args.ingress_class}}}
        )
        # The release waits for CRDs and the webhook, so issuers are only sent to a ready cert-manager.
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
                        "solvers": [solver],
                    }
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.release]),
            )
            for issuer, server in ACME_SERVERS.items()
        }
        self.register_outputs({"issuers": list(self.issuers)})
