"""NamespaceBaseline: a namespace with Pod Security admission, quota, default limits and
NetworkPolicies that deny everything except DNS and the traffic the stack declares."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.meta import APP_LABEL, app_selector, platform_labels
from components.network_policy import DnsSettings, default_deny, dns_egress, egress_to, in_namespace, ingress_from, ip_blocks
from components.settings import ComputeResources, CpuQuantity, DnsLabel, MemoryQuantity, Port, Settings

PodSecurityLevel = Literal["privileged", "baseline", "restricted"]
Cidr = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")]
# cert-manager's HTTP-01 solver pods: their label and port (cert-manager's acmesolver defaults).
ACME_SOLVER_LABEL = "acme.cert-manager.io/http01-solver"
ACME_SOLVER_PORT = 8089


class QuotaSettings(Settings):
    requests_cpu: CpuQuantity = "8"
    requests_memory: MemoryQuantity = "16Gi"
    limits_cpu: CpuQuantity = "16"
    limits_memory: MemoryQuantity = "32Gi"
    pods: int = Field(default=100, ge=1)


class LimitRangeSettings(Settings):
    """Defaults for containers that declare no resources, and the most one container may ask."""

    default_request: ComputeResources = ComputeResources(cpu="100m", memory="128Mi")
    default_limit: ComputeResources = ComputeResources(cpu="500m", memory="512Mi")
    max: ComputeResources = ComputeResources(cpu="4", memory="8Gi")


class NamespaceSettings(Settings):
    pod_security: PodSecurityLevel = Field(
        default="restricted", description="Pod Security admission level, enforced, audited and warned."
    )
    quota: QuotaSettings = QuotaSettings()
    limits: LimitRangeSettings = LimitRangeSettings()


class AppTraffic(Settings):
    """Pod-to-pod traffic allowed inside the app namespace, e.g. frontend -> backend:8080."""

    source: str = Field(alias="from")
    to: str
    port: Port


class EgressRule(Settings):
    """Egress from app pods to an address range outside the cluster, e.g. the database."""

    name: DnsLabel
    cidr: Cidr
    ports: list[Port] = Field(min_length=1)
    apps: list[str] = Field(default_factory=list, description="Apps allowed; empty means every app.")


class NetworkSettings(Settings):
    dns: DnsSettings = DnsSettings()
    control_plane_cidrs: Optional[list[Cidr]] = Field(
        default=None,
        min_length=1,
        description="Where the Kubernetes API server connects from and listens: add-on controllers may reach it "
        "on 443/6443, and it may call their webhooks. Unset: webhooks admit only the control plane range the "
        "cluster knows (GKE controlPlaneCidr, the AKS API server subnet with VNet Integration), else anywhere; "
        "controllers may reach 443/6443 anywhere.",
    )
    app_traffic: list[AppTraffic] = []
    egress: list[EgressRule] = []


@dataclass(frozen=True)
class ExposedApp:
    """An app the ingress controller may reach, on its container port."""

    app: str
    port: int


@dataclass
class NamespaceBaselineArgs:
    name: str
    settings: NamespaceSettings
    dns: DnsSettings
    ingress_namespace: Optional[str] = None
    # The pods there that carry traffic to the apps (Envoy's proxies, not its controller); None: all.
    ingress_pods: Optional[dict[str, str]] = None
    exposed: list[ExposedApp] = field(default_factory=list)
    app_traffic: list[AppTraffic] = field(default_factory=list)
    egress: list[EgressRule] = field(default_factory=list)
    acme_http01: bool = False  # cert-manager solves HTTP-01 challenges for this namespace's hosts


def compute_limits(
    name: str, namespace: str, quota: QuotaSettings, limits: LimitRangeSettings, opts: pulumi.ResourceOptions
) -> k8s.core.v1.LimitRange:
    """The namespace's ResourceQuota (`compute`) and LimitRange (`container-defaults`, which gives
    containers that declare no resources the defaults the quota needs them to have). Returns the
    LimitRange: pods wait for it; the quota is not waited on (the provider waits for its status)."""
    k8s.core.v1.ResourceQuota(
        f"{name}-quota",
        metadata={"name": "compute", "namespace": namespace, "labels": platform_labels("quota")},
        spec={
            "hard": {
                "requests.cpu": quota.requests_cpu,
                "requests.memory": quota.requests_memory,
                "limits.cpu": quota.limits_cpu,
                "limits.memory": quota.limits_memory,
                "pods": str(quota.pods),
            }
        },
        opts=opts,
    )
    return k8s.core.v1.LimitRange(
        f"{name}-limits",
        metadata={"name": "container-defaults", "namespace": namespace, "labels": platform_labels("quota")},
        spec={
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": limits.default_request.model_dump(),
                    "default": limits.default_limit.model_dump(),
                    "max": limits.max.model_dump(),
                }
            ]
        },
        opts=opts,
    )


class NamespaceBaseline(pulumi.ComponentResource):
    """One namespace and the guard rails every namespace of the platform gets."""

    namespace: k8s.core.v1.Namespace
    name: pulumi.Output[str]
    # What must exist before any pod runs here: the namespace, its container defaults and its
    # NetworkPolicies (no pod ever runs before default-deny). The quota is not among them: the
    # provider waits for its status, and our workloads all declare resources anyway.
    guard_rails: list[pulumi.Resource]

    def __init__(self, name: str, args: NamespaceBaselineArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:platform:NamespaceBaseline", name, None, opts)
        self._args = args
        level = args.settings.pod_security
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata={
                "name": args.name,
                "labels": {
                    **platform_labels("namespace"),
                    **{f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "audit", "warn")},
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Everything else lives in the namespace: wait for it to exist.
        self._child_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        self.guard_rails = [self.namespace]
        self._quota()
        self._network_policies()
        self.name = self.namespace.metadata.apply(lambda m: m["name"])
        self.register_outputs({"name": self.name})

    def _meta(self, name: str, component: str) -> dict:
        return {"name": name, "namespace": self._args.name, "labels": platform_labels(component)}

    def _quota(self) -> None:
        settings = self._args.settings
        self.guard_rails.append(compute_limits(self._args.name, self._args.name, settings.quota, settings.limits, self._child_opts))

    def _policy(self, name: str, spec: dict) -> None:
        self.guard_rails.append(
            k8s.networking.v1.NetworkPolicy(
                f"{self._args.name}-{name}",
                metadata=self._meta(name, "network-policy"),
                spec=spec,
                opts=self._child_opts,
            )
        )

    def _network_policies(self) -> None:
        args = self._args
        self._policy("default-deny", default_deny())
        self._policy("allow-dns", dns_egress(args.dns))
        if args.ingress_namespace:
            proxies = in_namespace(args.ingress_namespace)
            if args.ingress_pods:
                proxies["podSelector"] = {"matchLabels": args.ingress_pods}
            for exposed in args.exposed:
                self._policy(
                    f"allow-ingress-to-{exposed.app}",
                    ingress_from([proxies], [exposed.port], {"matchLabels": app_selector(exposed.app)}),
                )
            if args.acme_http01:
                # cert-manager answers HTTP-01 challenges from solver pods it starts in this namespace;
                # the ingress controller (or gateway) must reach them or no certificate is ever issued.
                self._policy(
                    "allow-ingress-to-acme-solvers",
                    ingress_from(
                        [proxies],
                        [ACME_SOLVER_PORT],
                        {"matchLabels": {ACME_SOLVER_LABEL: "true"}},
                    ),
                )
        for rule in args.app_traffic:
            source = {"matchLabels": app_selector(rule.source)}
            target = {"matchLabels": app_selector(rule.to)}
            name = f"allow-{rule.source}-to-{rule.to}"
            self._policy(f"{name}-ingress", ingress_from([{"podSelector": source}], [rule.port], target))
            self._policy(f"{name}-egress", egress_to([{"podSelector": target}], [rule.port], source))
        for rule in args.egress:
            selector = (
                {"matchExpressions": [{"key": APP_LABEL, "operator": "In", "values": list(rule.apps)}]}
                if rule.apps
                else {}
            )
            self._policy(f"allow-egress-{rule.name}", egress_to(ip_blocks([rule.cidr]), rule.ports, selector))
