"""metrics-server: the resource metrics API that HorizontalPodAutoscalers read."""
from __future__ import annotations

from typing import Optional

import pulumi

from components.addons.helm_addon import AddonSettings, HelmAddon, HelmAddonArgs


class MetricsServerSettings(AddonSettings):
    chart: str = "metrics-server"
    repository: str = "https://kubernetes-sigs.github.io/metrics-server/"
    version: str = "3.13.0"
    namespace: str = "kube-system"


def metrics_server(settings: MetricsServerSettings, opts: Optional[pulumi.ResourceOptions] = None) -> HelmAddon:
    # Two replicas and a PDB: HPAs stop scaling while the metrics API is down.
    values = {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}
    return HelmAddon("metrics-server", HelmAddonArgs(settings=settings, values=values), opts)
