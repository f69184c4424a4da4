"""The stack's configuration: read once, validated whole, before any resource is declared.

Every key lives under the `clipper:` namespace of `Pulumi.<stack>.yaml`. Each section is a
settings model owned by the component it configures (its defaults are the component's secure
defaults); this module composes them and checks what spans sections.
"""
from __future__ import annotations

import json
import re
from typing import Any, Literal, Optional

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import Field, ValidationError, field_validator, model_validator

from components.addons.backups import BackupSettings, backup_problems
from components.addons.cert_manager import CertManagerSettings
from components.addons.cluster_autoscaler import ClusterAutoscalerSettings, cluster_autoscaler_problems
from components.addons.external_secrets import ExternalSecretsSettings
from components.addons.helm_addon import AddonSettings, chart_source_problems
from components.addons.ingress import ENVOY_PROXY_PODS, EnvoyGatewaySettings, IngressNginxSettings, IngressSettings
from components.addons.metrics_server import CLOUDS_WITH_METRICS_SERVER, MetricsServerSettings
from components.addons.monitoring import MonitoringSettings, monitoring_problems
from components.addons.reloader import ReloaderSettings
from components.app import AppSettings
from components.cluster.aks.settings import AksSettings
from components.cluster.eks.settings import EksSettings
from components.cluster.existing import ExistingClusterSettings
from components.cluster.gke.settings import GkeSettings
from components.dns import DnsSettings, is_ip_address
from components.namespace import NamespaceSettings, NetworkSettings
from components.rbac import AccessSettings
from components.settings import DnsLabel, Settings

PROJECT = "clipper"
CLOUD_CLUSTERS = ("gke", "eks", "aks")
# Secret names each cloud's secret manager accepts (apps' `secrets` values are these names).
SECRET_NAME_RULES = {
    "gke": (r"^[A-Za-z0-9_-]{1,255}$", "Secret Manager ids: letters, digits, '_' and '-'"),
    "eks": (r"^[A-Za-z0-9/_+=.@-]{1,512}$", "Secrets Manager names: letters, digits and /_+=.@-"),
    "aks": (r"^[A-Za-z0-9-]{1,127}$", "Key Vault secret names: letters, digits and '-'"),
}


class ConfigError(pulumi.RunError):
    """Bad stack configuration. RunError makes the engine print the message without a traceback."""


class Addons(Settings):
    """The cluster add-ons, each a pinned Helm chart (Cluster Autoscaler: a pinned image), each switchable per stack."""

    ingress_nginx: IngressNginxSettings = Field(default=IngressNginxSettings(), alias="ingress-nginx")
    envoy_gateway: EnvoyGatewaySettings = Field(default=EnvoyGatewaySettings(), alias="envoy-gateway")
    cert_manager: CertManagerSettings = Field(default=CertManagerSettings(), alias="cert-manager")
    external_secrets: ExternalSecretsSettings = Field(default=ExternalSecretsSettings(), alias="external-secrets")
    metrics_server: MetricsServerSettings = Field(default=MetricsServerSettings(), alias="metrics-server")
    reloader: ReloaderSettings = ReloaderSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    backups: BackupSettings = BackupSettings()
    # Not a chart: objects the program declares itself (components/addons/cluster_autoscaler.py).
    cluster_autoscaler: ClusterAutoscalerSettings = Field(default=ClusterAutoscalerSettings(), alias="cluster-autoscaler")


class PlatformConfig(Settings):
    environment: Literal["production", "staging", "development"] = Field(
        description="Drives production-only safeguards (resource protection, stricter policy levels)."
    )
    cloud: Literal["existing", "gke", "eks", "aks"] = Field(
        default="existing",
        description="Which cluster implementation to use: gke, eks, aks, or existing (a kubeconfig). "
        "The stack file may carry settings for every cloud; this key picks one.",
    )
    app_namespace: DnsLabel = Field(description="Namespace the apps run in; must be one of `namespaces`.")
    namespaces: dict[DnsLabel, NamespaceSettings] = Field(
        min_length=1, description="Namespaces to create, each with PSA labels, quota, limits and default-deny."
    )
    network: NetworkSettings = Field(default=NetworkSettings(), description="Traffic the app namespace allows.")
    rbac: AccessSettings = Field(default=AccessSettings(), description="Who may view, deploy and administer.")
    ingress: IngressSettings = Field(default=IngressSettings(), description="How traffic enters the cluster.")
    addons: Addons = Field(default=Addons(), description="Cluster add-ons (Helm charts), by name.")
    apps: dict[DnsLabel, AppSettings] = Field(min_length=1, description="Applications, by name.")
    existing: ExistingClusterSettings = Field(
        default=ExistingClusterSettings(), description="Settings for cloud: existing."
    )
    gke: Optional[GkeSettings] = Field(default=None, description="Settings for cloud: gke (Google Kubernetes Engine).")
    eks: Optional[EksSettings] = Field(default=None, description="Settings for cloud: eks (Amazon EKS).")
    aks: Optional[AksSettings] = Field(default=None, description="Settings for cloud: aks (Azure Kubernetes Service).")
    dns: Optional[DnsSettings] = Field(
        default=None, description="Public DNS zone in the stack's cloud: records for app hosts, DNS-01 challenges."
    )
    notification_webhook: str = Field(
        default="", description="Deploy notifications webhook URL; set it with `pulumi config set --secret`."
    )

    @field_validator("gke", "eks", "aks", "dns", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        # Pulumi.yaml declares `default: {}` for these (the CLI would otherwise demand them): {} is "not configured".
        return None if value == {} else value

    @model_validator(mode="after")
    def _references_resolve(self):
        problems = []
        if self.app_namespace not in self.namespaces:
            problems.append(f"appNamespace: {self.app_namespace!r} is not one of namespaces ({', '.join(self.namespaces)})")
        for i, rule in enumerate(self.network.app_traffic):
            for side, app in (("from", rule.source), ("to", rule.to)):
                if app not in self.apps:
                    problems.append(f"network.appTraffic.{i}.{side}: unknown app {app!r}")
        for i, rule in enumerate(self.network.egress):
            problems += [f"network.egress.{i}.apps: unknown app {a!r}" for a in rule.apps if a not in self.apps]
        hosts: dict[str, str] = {}
        for name, app in self.apps.items():
            if app.secrets and not self.addons.external_secrets.enabled:
                problems.append(f"apps.{name}.secrets: needs addons.external-secrets.enabled: true")
            if app.host in hosts:
                problems.append(f"apps.{name}.host: {app.host!r} is already used by app {hosts[app.host]!r}")
            elif app.host:
                hosts[app.host] = name
        if self.addons.cert_manager.enabled and self.addons.cert_manager.solver == "dns01" and self.cloud == "existing":
            problems.append("addons.cert-manager.solver: dns01 needs a cloud cluster (gke, eks or aks) for DNS access")
        problems += self._addon_problems()
        if self.cloud == "existing":
            problems += self._existing_cluster_problems()
        else:
            problems += self._cloud_cluster_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def installed_addons(self) -> dict[str, AddonSettings]:
        """The add-ons this stack installs, by config key: the chosen ingress controller's, and the enabled others."""
        a = self.addons
        chosen = {"ingress-nginx": self.ingress.controller == "nginx", "envoy-gateway": self.ingress.controller == "gateway"}
        candidates = {
            "cert-manager": a.cert_manager.enabled,
            "ingress-nginx": chosen["ingress-nginx"] and a.ingress_nginx.enabled,
            "envoy-gateway": chosen["envoy-gateway"] and a.envoy_gateway.enabled,
            "external-secrets": a.external_secrets.enabled,
            "metrics-server": a.metrics_server.installed_on(self.cloud),
            "reloader": a.reloader.installed_with(a.external_secrets.enabled),
            "monitoring": a.monitoring.enabled,
            "backups": a.backups.enabled,
        }
        return {key: getattr(a, key.replace("-", "_")) for key, on in candidates.items() if on}

    def _addon_problems(self) -> list[str]:
        a, problems = self.addons, []
        if self.ingress.controller == "gateway":
            if not a.envoy_gateway.enabled:
                problems.append("addons.envoy-gateway.enabled: ingress.controller gateway needs Envoy Gateway to serve its Gateways")
            if not a.cert_manager.enabled:
                problems.append(
                    "addons.cert-manager.enabled: ingress.controller gateway needs cert-manager "
                    "(it issues Envoy Gateway's control-plane certificates)"
                )
        if a.metrics_server.enabled and self.cloud in CLOUDS_WITH_METRICS_SERVER:
            problems.append(
                f"addons.metrics-server.enabled: {self.cloud} runs its own metrics-server; a second one collides "
                "with it (APIService v1beta1.metrics.k8s.io): leave the key unset"
            )
        if "enabled" in a.reloader.model_fields_set and a.reloader.enabled and not a.external_secrets.enabled:
            problems.append(
                "addons.reloader.enabled: Reloader rolls apps when External Secrets changes their Secrets: "
                "needs addons.external-secrets.enabled"
            )
        if a.backups.enabled:
            problems += backup_problems(a.backups, self.app_namespace, self.cloud)
        if a.monitoring.enabled:
            problems += monitoring_problems(a.monitoring, self.namespaces)
        if self.cloud != "eks" or self.eks is not None:  # a missing eks block is reported once, below
            problems += cluster_autoscaler_problems(a.cluster_autoscaler, self.cloud, self.eks.kubernetes_version if self.eks else None)
        for key, settings in self.installed_addons().items():
            problems += chart_source_problems(f"addons.{key}", settings)
        return problems

    def _existing_cluster_problems(self) -> list[str]:
        problems = []
        if self.addons.external_secrets.enabled and self.existing.secret_store is None:
            problems.append("existing.secretStore: External Secrets on an existing cluster needs a provider block")
        if self.existing.mode == "cluster" and not self.existing.kubeconfig_path().is_file():
            problems.append(
                f"existing.kubeconfig: no kubeconfig at {self.existing.kubeconfig_path()} "
                "(set existing.kubeconfig or $KUBECONFIG, or use mode: render)"
            )
        return problems

    def _cloud_cluster_problems(self) -> list[str]:
        problems = []
        if getattr(self, self.cloud) is None:
            problems.append(f"{self.cloud}: settings are required for cloud: {self.cloud} (see docs/clouds.md)")
        pattern, rule = SECRET_NAME_RULES[self.cloud]
        for name, app in self.apps.items():
            for var, ref in app.secret_refs().items():
                if not re.match(pattern, ref.key):
                    problems.append(f"apps.{name}.secrets.{var}: {ref.key!r} is not a valid name for {self.cloud} ({rule})")
        solver_dns01 = self.addons.cert_manager.enabled and self.addons.cert_manager.solver == "dns01"
        if solver_dns01 and self.dns is None:
            problems.append("addons.cert-manager.solver: dns01 needs dns.zone (the zone challenge records go in)")
        if self.dns is not None:
            for name, app in self.apps.items():
                if app.host and not self.dns.contains(app.host):
                    problems.append(f"apps.{name}.host: {app.host!r} is not in dns.zone {self.dns.zone!r}")
            apex = [name for name, app in self.apps.items() if app.host == self.dns.zone]
            hostname_target = self.dns.target and not is_ip_address(self.dns.target)
            if hostname_target and apex and self.cloud != "eks":  # Route 53 uses alias records instead
                problems.append(
                    f"dns.target: a hostname cannot be a CNAME at the zone apex {self.dns.zone!r} (app {apex[0]}); use an IP"
                )
        return problems

    @property
    def ingress_namespace(self) -> str:
        addon = self.addons.envoy_gateway if self.ingress.controller == "gateway" else self.addons.ingress_nginx
        return addon.namespace

    @property
    def ingress_pods(self) -> Optional[dict[str, str]]:
        """The pods of `ingress_namespace` that carry traffic to the apps (None: all of them)."""
        return ENVOY_PROXY_PODS if self.ingress.controller == "gateway" else None

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def _raw_config() -> dict[str, Any]:
    """Every `clipper:` key the engine (or the test mocks) passed, parsed from its wire form."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {}
    for key, raw in merged.items():
        namespace, _, name = key.partition(":")
        if namespace != PROJECT:
            continue
        try:
            # Structured values arrive as JSON text; plain strings stay strings.
            values[name] = json.loads(raw) if isinstance(raw, str) and raw.startswith(("[", "{")) else raw
        except json.JSONDecodeError as error:
            raise ConfigError(f"{stack_file()}: {PROJECT}:{name} is not valid structured config: {error}") from error
    return values


def stack_file() -> str:
    return f"Pulumi.{pulumi.get_stack()}.yaml"


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def describe(error: ValidationError) -> str:
    """One message naming every bad key as `clipper:<path>`, and the stack file to fix."""
    lines = []
    for e in error.errors():
        key = f"{PROJECT}:{_location(e['loc'])}" if e["loc"] else PROJECT
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README's configuration reference)"
        elif e["type"] == "missing":
            message = "required key is missing"
        elif e["type"] == "literal_error":
            message = f"{message} (got {e['input']!r})"
        lines.append(f"  {key}: {message}")
    return f"invalid configuration in {stack_file()}:\n" + "\n".join(lines)


def load_config() -> PlatformConfig:
    """Read and validate the whole stack configuration; raise ConfigError naming every bad key."""
    try:
        return PlatformConfig.model_validate(_raw_config())
    except ValidationError as error:
        raise ConfigError(describe(error)) from None
