"""metrics-server: the resource metrics API that HorizontalPodAutoscalers read.

GKE and AKS run their own metrics-server (APIService v1beta1.metrics.k8s.io, ClusterRole
system:metrics-server, Service kube-system/metrics-server): installing the chart there would
collide with it, so by default it is installed only where the cluster has none.
"""
from __future__ import annotations

from typing import Optional

import pulumi
from pydantic import Field

from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.spread import highly_available, resources

CLOUDS_WITH_METRICS_SERVER = frozenset({"gke", "aks"})
SECURE_PORT = 10250  # the chart's containerPort: the API server's aggregation layer calls it here


class MetricsServerSettings(AddonSettings):
    enabled: Optional[bool] = Field(
        default=None,
        description="Install the chart. Unset: only where the cloud runs none of its own (EKS, existing clusters); "
        "GKE and AKS ship one, and a second collides with it.",
    )
    chart: str = "metrics-server"
    repository: str = "https://kubernetes-sigs.github.io/metrics-server/"
    version: str = "3.13.1"
    namespace: str = "metrics-server"

    def installed_on(self, cloud: str) -> bool:
        return self.enabled if self.enabled is not None else cloud not in CLOUDS_WITH_METRICS_SERVER


def metrics_server(settings: MetricsServerSettings, network: ClusterNetwork, opts: Optional[pulumi.ResourceOptions] = None) -> HelmAddon:
    # Two replicas, spread, and a PDB: HPAs stop scaling while the metrics API is down.
    pods = {"app.kubernetes.io/name": "metrics-server", "app.kubernetes.io/instance": "metrics-server"}
    traffic = AddonTraffic(
        webhook_ports=(SECURE_PORT,),
        internet_ports=(SECURE_PORT,),  # it scrapes every node's kubelet on 10250
    )
    return HelmAddon(
        "metrics-server",
        HelmAddonArgs(settings=settings, network=network, traffic=traffic, values={**highly_available(pods), "resources": resources(cpu="100m", memory="200Mi")}),
        opts,
    )
