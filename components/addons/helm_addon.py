"""HelmAddon: one upstream chart at a pinned version in its own namespace.

Every add-on (ingress controller, cert-manager, External Secrets, metrics-server) is a
HelmAddon plus whatever the add-on adds on top; the chart's contents are upstream's business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.meta import platform_labels
from components.namespace import PodSecurityLevel
from components.settings import DnsLabel, Settings, deep_merge

# Namespaces the cluster already has: never declared (and so never deleted) by an add-on.
SYSTEM_NAMESPACES = frozenset({"kube-system", "default"})
# Add-on namespaces hold controllers and webhooks the API server must reach, sized by their
# charts: our default-deny and quota baseline is waived there, visibly, with the reasons.
ADDON_NAMESPACE_WAIVERS = {
    "waiver.policy.clipper.dev/namespace-default-deny-network-policy": (
        "add-on controllers and webhooks must be reachable from the API server; the chart manages their traffic"
    ),
    "waiver.policy.clipper.dev/namespace-resource-quota": "add-on workloads are sized by the chart's own values",
}


class AddonSettings(Settings):
    """Settings every add-on shares. Subclasses set the chart's defaults."""

    enabled: bool = True
    chart: str
    repository: str = Field(description="Helm repository URL (https:// or oci://).")
    version: str = Field(min_length=1, description="Chart version, pinned.")
    namespace: DnsLabel
    pod_security: PodSecurityLevel = "restricted"
    values: dict[str, Any] = Field(default_factory=dict, description="Chart values, merged over ours.")
    promotable: bool = Field(default=False, description="`ops promote` copies this add-on's chart version.")
    timeout_seconds: int = Field(default=600, ge=60)


@dataclass
class HelmAddonArgs:
    settings: AddonSettings
    values: dict[str, Any] = field(default_factory=dict)  # the component's defaults; config values win


class HelmAddon(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    namespace: str

    def __init__(self, name: str, args: HelmAddonArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:HelmAddon", name, None, opts)
        s = args.settings
        self.namespace = s.namespace
        oci = s.repository.startswith("oci://")
        depends_on: list[pulumi.Resource] = []
        if s.namespace not in SYSTEM_NAMESPACES:
            depends_on.append(
                k8s.core.v1.Namespace(
                    f"{name}-namespace",
                    metadata={
                        "name": s.namespace,
                        "labels": {
                            **platform_labels("addon", name),
                            **{f"pod-security.kubernetes.io/{m}": s.pod_security for m in ("enforce", "audit", "warn")},
                        },
                        "annotations": ADDON_NAMESPACE_WAIVERS,
                    },
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        self.release = k8s.helm.v3.Release(
            name,
            name=name,
            # OCI charts are addressed by URL; classic repositories by name plus repo URL.
            chart=f"{s.repository.rstrip('/')}/{s.chart}" if oci else s.chart,
            version=s.version,
            repository_opts=None if oci else {"repo": s.repository},
            namespace=s.namespace,
            values=deep_merge(args.values, s.values),
            # Wait for every object (CRDs, webhooks, Jobs) so dependants start on a working add-on.
            wait_for_jobs=True,
            atomic=True,
            cleanup_on_fail=True,
            timeout=s.timeout_seconds,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        self.register_outputs({"namespace": s.namespace, "version": s.version})
