"""HelmAddon: one upstream chart at a pinned version, in its own namespace behind default-deny.

Every add-on (ingress controller, cert-manager, External Secrets, metrics-server) is a HelmAddon
plus whatever the add-on adds on top. The chart is a `helm.v4.Chart`: Pulumi renders it and
manages each object itself, so previews diff per object, render mode writes them, and the policy
pack sees them (docs/addons.md has the measured trade-off against `helm.v3.Release`).
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field

from components.addons.chart_values import schema_errors, unknown_values
from components.meta import platform_labels
from components.namespace import LimitRangeSettings, PodSecurityLevel, QuotaSettings, compute_limits
from components.network_policy import (
    DnsSettings,
    default_deny,
    dns_egress,
    egress_to,
    in_namespace,
    ingress_from,
    ip_blocks,
)
from components.settings import DnsLabel, Settings, deep_merge

if TYPE_CHECKING:
    from components.cluster.base import Cluster

# A folder of charts laid out as `<chart>-<version>/` (or `<chart>-<version>.tgz`): an air-gapped
# mirror, or the test data. When set, every add-on installs from it instead of its repository.
CHARTS_DIR_ENV = "CLIPPER_CHARTS_DIR"
# Namespaces the cluster already has: never declared (and so never deleted) by an add-on, and
# left without our policies (default-deny there would cut off the cluster's own components).
SYSTEM_NAMESPACES = frozenset({"kube-system", "default"})
ANYWHERE = "0.0.0.0/0"
API_SERVER_PORTS = (443, 6443)  # managed control planes listen on 443; self-managed ones on 6443
# Add-on workloads are sized by their charts' own values: no quota in their namespaces, unless the add-on gives one.
ADDON_NAMESPACE_WAIVERS = {"waiver.policy.clipper.dev/namespace-resource-quota": "add-on workloads are sized by the chart's values"}


class AddonSettings(Settings):
    """Settings every add-on shares. Subclasses set the chart's defaults."""

    enabled: bool = True
    chart: str
    repository: str = Field(description="Helm repository URL (https:// or oci://).")
    version: str = Field(min_length=1, description="Chart version, pinned (upstream spelling, e.g. v1.21.1 or 2.9.0).")
    chart_path: Optional[str] = Field(
        default=None,
        description="Local chart directory or .tgz to install instead of `repository` (air-gapped clusters); "
        f"relative to the project root. Without it, `${CHARTS_DIR_ENV}/<chart>-<version>` is used when that "
        "variable is set.",
    )
    namespace: DnsLabel
    pod_security: PodSecurityLevel = "restricted"
    values: dict[str, Any] = Field(default_factory=dict, description="Chart values, merged over ours.")
    promotable: bool = Field(default=False, description="`ops promote` copies this add-on's chart version.")

    def local_chart(self) -> Optional[Path]:
        """Where the chart is read from on disk, or None when it comes from `repository`."""
        if self.chart_path:
            return Path(self.chart_path).resolve()
        mirror = os.environ.get(CHARTS_DIR_ENV)
        if not mirror:
            return None
        directory = Path(mirror).resolve() / f"{self.chart}-{self.version}"
        archive = directory.with_name(directory.name + ".tgz")
        return archive if archive.is_file() and not directory.exists() else directory


def chart_file(chart: Path, name: str) -> Optional[str]:
    """The text of a top-level file of a chart directory or .tgz archive, None when absent."""
    if chart.is_dir():
        path = chart / name
        return path.read_text() if path.is_file() else None
    with tarfile.open(chart) as archive:
        member = next((m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/" + name)), None)
        return archive.extractfile(member).read().decode() if member else None


def chart_source_problems(key: str, settings: AddonSettings) -> list[str]:
    """Why the add-on's local chart cannot be installed as pinned (empty when it can, or is remote)."""
    chart = settings.local_chart()
    if chart is None:
        return []
    where = f"{key}.chartPath" if settings.chart_path else f"{key}.version (looked up in ${CHARTS_DIR_ENV})"
    if not chart.exists():
        return [f"{where}: no chart at {chart}"]
    try:
        meta = yaml.safe_load(chart_file(chart, "Chart.yaml") or "") or {}
    except (OSError, tarfile.TarError, yaml.YAMLError) as error:
        return [f"{where}: cannot read Chart.yaml in {chart}: {error}"]
    problems = []
    if meta.get("name") != settings.chart:
        problems.append(f"{where}: {chart} holds chart {meta.get('name')!r}, not {settings.chart!r}")
    if str(meta.get("version")) != settings.version:
        problems.append(f"{key}.version: pinned {settings.version} but {chart} is version {meta.get('version')}")
    elif chart.is_dir() and settings.values:
        # Helm ignores a values key the chart does not have: catch the misspelling here instead.
        problems += [f"{key}.values.{path}: not a key of {settings.chart} {settings.version}" for path in unknown_values(chart, settings.values)]
        problems += [f"{key}.values: {error}" for error in schema_errors(chart, settings.values)]
    return problems


@dataclass(frozen=True)
class ClusterNetwork:
    """What add-on policies need to know about the cluster around them."""

    dns: DnsSettings
    # Where the API server listens (controllers' watches) and calls webhooks from. Clouds don't
    # give the control plane a pod label, so it is addressed by CIDR.
    control_plane_cidrs: tuple[str, ...] = (ANYWHERE,)
    webhook_callers: tuple[str, ...] = (ANYWHERE,)

    @classmethod
    def around(cls, cluster: Cluster, dns: DnsSettings, configured: Optional[list[str]]) -> ClusterNetwork:
        """The configured control plane ranges, else: webhooks admit the range the cluster knows (if
        any), and controllers reach the API server anywhere (its address may sit outside that range)."""
        if configured:
            return cls(dns, tuple(configured), tuple(configured))
        return cls(dns, (ANYWHERE,), cluster.control_plane_cidrs or (ANYWHERE,))


@dataclass(frozen=True)
class AddonTraffic:
    """What an add-on's pods must send and receive; the namespace denies everything else."""

    webhook_ports: tuple[int, ...] = ()  # served to the API server (admission, aggregated APIs)
    public_ports: tuple[int, ...] = ()  # served to anyone (load-balanced proxies)
    internet_ports: tuple[int, ...] = (443,)  # egress to ACME, cloud APIs, kubelets...
    to_namespaces: dict[str, tuple[int, ...]] = field(default_factory=dict)  # e.g. a proxy to the app namespace
    senders: Optional[dict[str, str]] = None  # labels of the pods that send to_namespaces traffic; None: all
    within_namespace: bool = False  # e.g. Envoy proxies and their controller


@dataclass
class HelmAddonArgs:
    settings: AddonSettings
    network: ClusterNetwork
    traffic: AddonTraffic = AddonTraffic()
    values: dict[str, Any] = field(default_factory=dict)  # the component's defaults; config values win
    quota: Optional[QuotaSettings] = None  # a ResourceQuota for the namespace, with container defaults `limits`
    limits: LimitRangeSettings = LimitRangeSettings()


class HelmAddon(pulumi.ComponentResource):
    chart: k8s.helm.v4.Chart
    namespace: str

    def __init__(self, name: str, args: HelmAddonArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:HelmAddon", name, None, opts)
        s = args.settings
        self.namespace = s.namespace
        guard_rails: list[pulumi.Resource] = []
        if s.namespace not in SYSTEM_NAMESPACES:
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata={
                    "name": s.namespace,
                    "labels": {
                        **platform_labels("addon", name),
                        **{f"pod-security.kubernetes.io/{m}": s.pod_security for m in ("enforce", "audit", "warn")},
                    },
                    "annotations": {} if args.quota else ADDON_NAMESPACE_WAIVERS,
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            guard_rails = [namespace, *self._network_policies(name, args, namespace)]
            if args.quota:
                after = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
                guard_rails.append(compute_limits(name, s.namespace, args.quota, args.limits, after))
        local = s.local_chart()
        oci = s.repository.startswith("oci://")
        self.chart = k8s.helm.v4.Chart(
            name,
            name=name,  # the release name: charts derive object names and pod labels from it
            # A local chart is the version it holds (config validation checked it is the pinned one).
            chart=str(local) if local else (f"{s.repository.rstrip('/')}/{s.chart}" if oci else s.chart),
            version=None if local else s.version,
            repository_opts=None if local or oci else {"repo": s.repository},
            namespace=s.namespace,
            values=deep_merge(args.values, s.values),
            # No pod of the chart runs before its namespace's default-deny and allowances exist.
            opts=pulumi.ResourceOptions(parent=self, depends_on=guard_rails),
        )
        self.register_outputs({"namespace": s.namespace, "version": s.version})

    def _network_policies(self, name: str, args: HelmAddonArgs, namespace: pulumi.Resource) -> list[pulumi.Resource]:
        t, net = args.traffic, args.network
        control_plane = ip_blocks(net.control_plane_cidrs)
        specs = {
            "default-deny": default_deny(),
            "allow-dns": dns_egress(net.dns),
            "allow-api-server": egress_to(control_plane, API_SERVER_PORTS),
        }
        if t.webhook_ports:
            specs["allow-webhooks-from-api-server"] = ingress_from(ip_blocks(net.webhook_callers), t.webhook_ports)
        if t.public_ports:
            specs["allow-public-ingress"] = ingress_from([], t.public_ports)
        if t.internet_ports:
            specs["allow-internet-egress"] = egress_to(ip_blocks([ANYWHERE]), t.internet_ports)
        for target, ports in sorted(t.to_namespaces.items()):
            specs[f"allow-egress-to-{target}"] = egress_to(
                [in_namespace(target)], ports, {"matchLabels": t.senders} if t.senders else None
            )
        if t.within_namespace:
            same = [{"podSelector": {}}]
            specs["allow-within-namespace"] = {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": same}],
                "egress": [{"to": same}],
            }
        return [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy}",
                metadata={"name": policy, "namespace": self.namespace, "labels": platform_labels("network-policy", name)},
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
            for policy, spec in specs.items()
        ]
