"""Reloader: rolls an app's Deployment when the Secret External Secrets syncs for it changes.

External Secrets writes the app's Secret from the cloud secret manager; the program only ever
sees the secret's *key*, never its value, so it cannot put a checksum of the value on the pod
template. Reloader watches the Secret itself and, when its data changes, sets an annotation on
the pod template of every Deployment that asks for it (`secret.reloader.stakater.com/reload:
<secret>`), which rolls the Deployment like any other template change (maxUnavailable 0).

Secure defaults: Reloader watches the app namespace only (namespaced Roles, no ClusterRole, so
it reads Secrets there and nowhere else), ignores ConfigMaps, Jobs and CronJobs (a rotation never
re-runs a migration), uses the `annotations` strategy (no env var added to app containers), runs
two replicas with leader election under a PDB, non-root with a read-only root filesystem, and its
namespace allows nothing but DNS and the API server.
"""
from __future__ import annotations

from typing import Optional

import pulumi
from pydantic import Field

from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.spread import resources, topology_spread

# What an app's Deployment carries so Reloader rolls it when that Secret changes.
RELOAD_ON_SECRET_ANNOTATION = "secret.reloader.stakater.com/reload"
# What Reloader (annotations strategy) sets on the pod template when it rolls a Deployment.
RELOADED_FROM_ANNOTATION = "reloader.stakater.com/last-reloaded-from"


class ReloaderSettings(AddonSettings):
    enabled: bool = Field(
        default=True,
        description="Install Reloader: each app whose secrets External Secrets syncs rolls when that Secret "
        "changes (`ops rotate` relies on it). Installed wherever addons.external-secrets is enabled (nothing to "
        "reload without it); false turns it off.",
    )
    chart: str = "reloader"
    repository: str = "https://stakater.github.io/stakater-charts"
    version: str = "2.2.16"
    namespace: str = "reloader"

    def installed_with(self, external_secrets: bool) -> bool:
        # On by default, but only beside External Secrets: config validation refuses an explicit
        # `enabled: true` without it, and an unset one simply follows it.
        return self.enabled and external_secrets


def reload_annotations(secret_name: str) -> dict[str, str]:
    """The Deployment annotation that makes Reloader roll it when `secret_name` changes."""
    return {RELOAD_ON_SECRET_ANNOTATION: secret_name}


def chart_values(name: str, app_namespace: str) -> dict:
    pods = {"app.kubernetes.io/name": "reloader", "app.kubernetes.io/instance": name}
    return {
        "reloader": {
            # Scoped mode: a Role in the app namespace (and its own), no cluster-wide Secret access.
            "watchGlobally": False,
            "namespaces": [app_namespace],
            "ignoreConfigMaps": True,
            "ignoreJobs": True,
            "ignoreCronJobs": True,
            "reloadStrategy": "annotations",
            "enableHA": True,
            "readOnlyRootFileSystem": True,
            "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
            "deployment": {
                "replicas": 2,
                "topologySpreadConstraints": topology_spread(pods),
                "containerSecurityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "privileged": False,
                    "runAsNonRoot": True,
                },
                "resources": resources(cpu="10m", memory="64Mi", cpu_limit="200m", memory_limit="256Mi"),
            },
        }
    }


def reloader(
    settings: ReloaderSettings, network: ClusterNetwork, app_namespace: str, opts: Optional[pulumi.ResourceOptions] = None
) -> HelmAddon:
    # It only talks to the API server (watches, patches, its leader lease): no internet egress.
    traffic = AddonTraffic(internet_ports=())
    return HelmAddon(
        "reloader",
        HelmAddonArgs(settings=settings, network=network, traffic=traffic, values=chart_values("reloader", app_namespace)),
        opts,
    )
