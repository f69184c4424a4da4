"""Monitoring: kube-prometheus-stack (Prometheus Operator, Prometheus, Alertmanager,
kube-state-metrics) from its official chart, the platform's alerting rules as PrometheusRules
(alert_rules.py), and scrape targets for the apps (ServiceMonitors) and the add-ons (PodMonitors).

Secure defaults: the `monitoring` namespace stays PSA restricted because node-exporter is off:
it needs hostNetwork, hostPID and hostPath, which restricted (and baseline) forbid; node pressure
is read from kube-state-metrics' node conditions and node CPU/disk from the cloud's own node
metrics. Grafana is off (its chown init container runs as root; dashboards are not part of this).
The operator's admission webhooks are off: their certificates come from a Helm hook that
helm.v4.Chart does not run, and our rules are checked by `promtool` in the tests instead. The
chart's default rules are off: the platform's own rules page for what the runbooks check, and
two rules for one problem page twice. Scrapers the managed control planes do not expose
(controller-manager, scheduler, etcd, kube-proxy) and CoreDNS in kube-system are off.
Prometheus may reach, besides the API server: the kubelets (10250), the app pods on their ports
and the add-ons' metrics ports (Velero's too: the backup alerts read them), each target namespace
admitting it by a policy of its own here. The namespace has a ResourceQuota (`quota`, the runbooks'
numbers) and container defaults (`limits`); the operator's config-reloader sidecars are sized here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.addons.alert_rules import rule_groups
from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.ingress import ENVOY_PROXY_PODS
from components.addons.spread import resources, topology_spread
from components.meta import app_selector, platform_labels
from components.namespace import LimitRangeSettings, QuotaSettings
from components.network_policy import in_namespace, ingress_from
from components.settings import CpuQuantity, MemoryQuantity

RELEASE = "monitoring"
# The labels the operator gives Prometheus' pods: the only senders of scrapes.
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus"}
KUBELET_PORT = 10250
KUBE_STATE_METRICS_PODS = {"app.kubernetes.io/name": "kube-state-metrics", "app.kubernetes.io/instance": RELEASE}
API_VERSION = "monitoring.coreos.com/v1"


class MonitoringQuotaSettings(QuotaSettings):
    """The quota the runbooks' hand-made `monitoring` namespace had: room for this add-on's defaults
    (two Prometheus and two Alertmanager replicas, the operator, kube-state-metrics) and a rolling update."""

    requests_cpu: CpuQuantity = "4"
    requests_memory: MemoryQuantity = "8Gi"
    limits_cpu: CpuQuantity = "8"
    limits_memory: MemoryQuantity = "16Gi"
    pods: int = Field(default=50, ge=1)


class MonitoringSettings(AddonSettings):
    enabled: bool = Field(
        default=False,
        description="Install kube-prometheus-stack in `namespace` with the platform's alerting rules and scrape "
        "targets for the apps and add-ons. The namespace is the add-on's: leave it out of `namespaces`.",
    )
    chart: str = "kube-prometheus-stack"
    repository: str = "https://prometheus-community.github.io/helm-charts"
    version: str = "88.5.3"
    namespace: str = "monitoring"
    retention: str = Field(default="15d", pattern=r"^\d+[hdwy]$", description="How long Prometheus keeps samples.")
    storage_size: str = Field(default="50Gi", description="Prometheus' persistent volume (one per replica).")
    app_metrics_path: str = Field(default="/metrics", pattern=r"^/", description="Where the apps serve metrics, on their HTTP port.")
    quota: MonitoringQuotaSettings = Field(
        default=MonitoringQuotaSettings(),
        description="The namespace's ResourceQuota; raise it with `storageSize`/`values` that grow Prometheus.",
    )
    limits: LimitRangeSettings = Field(
        default=LimitRangeSettings(),
        description="Defaults for containers of the namespace that declare no resources, and the most one may ask.",
    )


@dataclass(frozen=True)
class ScrapeTarget:
    """Pods of one namespace whose metrics Prometheus reads: their labels, port and path."""

    namespace: str
    pods: dict[str, str]
    port: int
    path: str = "/metrics"


@dataclass
class MonitoringArgs:
    settings: MonitoringSettings
    network: ClusterNetwork
    app_namespace: str
    apps: dict[str, int]  # app name: its container port
    ingress_controller: Literal["nginx", "gateway"]
    addon_targets: dict[str, ScrapeTarget] = field(default_factory=dict)  # by add-on name
    # addons.backups.rpo when Velero runs (BackupOlderThanRpo); None: no backups, no backup alerts.
    backup_rpo: Optional[str] = None


def addon_targets(installed: dict[str, AddonSettings]) -> dict[str, ScrapeTarget]:
    """The metrics endpoints of the installed add-ons (by config key, as PlatformConfig.installed_addons)."""
    targets = {}
    if "cert-manager" in installed:
        pods = {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"}
        targets["cert-manager"] = ScrapeTarget(installed["cert-manager"].namespace, pods, 9402)
    if "external-secrets" in installed:
        pods = {"app.kubernetes.io/name": "external-secrets", "app.kubernetes.io/instance": "external-secrets"}
        targets["external-secrets"] = ScrapeTarget(installed["external-secrets"].namespace, pods, 8080)
    if "ingress-nginx" in installed:
        pods = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
        targets["ingress-nginx"] = ScrapeTarget(installed["ingress-nginx"].namespace, pods, 10254)
    if "backups" in installed:  # Velero's backup metrics: what BackupFailed and BackupOlderThanRpo read
        pods = {"app.kubernetes.io/name": "velero", "app.kubernetes.io/instance": "velero"}
        targets["velero"] = ScrapeTarget(installed["backups"].namespace, pods, 8085)
    if "envoy-gateway" in installed:  # the proxies, which carry the traffic, in the controller's namespace
        targets["envoy-proxies"] = ScrapeTarget(installed["envoy-gateway"].namespace, dict(ENVOY_PROXY_PODS), 19001, "/stats/prometheus")
    return targets


def chart_values(s: MonitoringSettings) -> dict:
    off = {"enabled": False}
    return {
        "defaultRules": {"create": False},
        "windowsMonitoring": off,
        "nodeExporter": off,
        "grafana": off,
        **{part: off for part in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy", "coreDns", "kubeDns")},
        "prometheusOperator": {
            "admissionWebhooks": {"enabled": False},
            "tls": {"enabled": False},  # its certificate, too, would come from the webhook's hook
            "resources": resources(cpu="50m", memory="128Mi", cpu_limit="500m", memory_limit="512Mi"),
            # The sidecar the operator adds to Prometheus and Alertmanager pods: sized here, not by the
            # namespace's container defaults, which are made for a main container.
            "prometheusConfigReloader": {"resources": resources(cpu="10m", memory="32Mi", cpu_limit="100m", memory_limit="64Mi")},
        },
        "prometheus": {
            "prometheusSpec": {
                "replicas": 2,
                "retention": s.retention,
                # Every PrometheusRule, ServiceMonitor and PodMonitor, not only the chart's release label.
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "resources": resources(cpu="500m", memory="2Gi", cpu_limit="2", memory_limit="4Gi"),
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": s.storage_size}}}
                    }
                },
            }
        },
        "alertmanager": {
            # Alertmanager reads its config from its Secret's volume; it never calls the Kubernetes API.
            "serviceAccount": {"automountServiceAccountToken": False},
            "alertmanagerSpec": {
                "replicas": 2,
                "resources": resources(cpu="50m", memory="64Mi", cpu_limit="200m", memory_limit="256Mi"),
            }
        },
        "kube-state-metrics": {
            "resources": resources(cpu="50m", memory="128Mi", cpu_limit="500m", memory_limit="512Mi"),
            "topologySpreadConstraints": topology_spread(KUBE_STATE_METRICS_PODS),
        },
    }


def monitoring_problems(s: MonitoringSettings, namespaces: dict) -> list[str]:
    """Why the add-on cannot be installed as configured."""
    problems = []
    if s.namespace in namespaces:
        problems.append(
            f"namespaces.{s.namespace}: addons.monitoring declares this namespace itself (PSA, default-deny, "
            "Prometheus' traffic, quota from addons.monitoring.quota): remove it from namespaces, or set addons.monitoring.namespace"
        )
    node_exporter = (s.values.get("nodeExporter") or {}).get("enabled")
    if node_exporter and s.pod_security != "privileged":
        problems.append(
            "addons.monitoring.values.nodeExporter.enabled: node-exporter needs hostNetwork, hostPID and hostPath, "
            f"which PSA {s.pod_security} refuses: set addons.monitoring.podSecurity: privileged to run it"
        )
    return problems


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:Monitoring", name, None, opts)
        s = args.settings
        targets = {f"app-{app}": ScrapeTarget(args.app_namespace, app_selector(app), port, s.app_metrics_path) for app, port in args.apps.items()}
        targets |= args.addon_targets
        egress: dict[str, set[int]] = {}
        for target in targets.values():
            egress.setdefault(target.namespace, set()).add(target.port)
        traffic = AddonTraffic(
            internet_ports=(443, KUBELET_PORT),  # Alertmanager's receivers (webhooks); the kubelets' metrics
            to_namespaces={namespace: tuple(sorted(ports)) for namespace, ports in egress.items()},
            senders=PROMETHEUS_PODS,
            within_namespace=True,  # Prometheus to Alertmanager and kube-state-metrics; the operator
        )
        self.addon = HelmAddon(
            RELEASE,
            HelmAddonArgs(settings=s, network=args.network, traffic=traffic, values=chart_values(s), quota=s.quota, limits=s.limits),
            pulumi.ResourceOptions(parent=self),
        )
        # Custom resources after the chart's CRDs.
        after_chart = pulumi.ResourceOptions(parent=self, depends_on=[self.addon])
        labels = platform_labels("monitoring", name)
        self.rules = [
            k8s.apiextensions.CustomResource(
                f"{name}-{group['name']}",
                api_version=API_VERSION,
                kind="PrometheusRule",
                metadata={"name": group["name"], "namespace": s.namespace, "labels": labels},
                spec={"groups": [group]},
                opts=after_chart,
            )
            for group in rule_groups(args.ingress_controller, args.backup_rpo)
        ]
        self.monitors = []
        for target_name, target in sorted(targets.items()):
            endpoint = {"path": target.path, "interval": "30s"}
            if target_name.startswith("app-"):  # the app's Service (port `http`): scrapes follow its endpoints
                kind, endpoints = "ServiceMonitor", {"endpoints": [{"port": "http", **endpoint}]}
            else:  # add-on charts do not all give their metrics a Service: their pods
                kind, endpoints = "PodMonitor", {"podMetricsEndpoints": [{"portNumber": target.port, **endpoint}]}
            self.monitors.append(
                k8s.apiextensions.CustomResource(
                    f"{name}-{target_name}",
                    api_version=API_VERSION,
                    kind=kind,
                    metadata={"name": target_name, "namespace": s.namespace, "labels": labels},
                    spec={
                        "selector": {"matchLabels": target.pods},
                        "namespaceSelector": {"matchNames": [target.namespace]},
                        **endpoints,
                    },
                    opts=after_chart,
                )
            )
        # Each target namespace is default-deny: it admits Prometheus to the scraped pods' port.
        prometheus = {**in_namespace(s.namespace), "podSelector": {"matchLabels": PROMETHEUS_PODS}}
        self.policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-scrape-{target_name}",
                metadata={
                    "name": f"allow-scrape-{target_name}",
                    "namespace": target.namespace,
                    "labels": platform_labels("network-policy", name),
                },
                spec=ingress_from([prometheus], [target.port], {"matchLabels": target.pods}),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for target_name, target in sorted(targets.items())
        ]
        self.register_outputs({"namespace": s.namespace, "rules": len(self.rules), "monitors": len(self.monitors)})
