"""How traffic gets into the cluster, behind one interface.

`NginxIngress` (the default) installs ingress-nginx and routes with Ingress objects;
`GatewayIngress` installs Envoy Gateway and routes with Gateway API HTTPRoutes, the way off
ingress-nginx now that upstream has retired it. Apps only call `route(...)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Protocol, Union

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.addons.helm_addon import AddonSettings, HelmAddon, HelmAddonArgs
from components.meta import platform_labels
from components.settings import DnsLabel, Settings


class IngressSettings(Settings):
    controller: Literal["nginx", "gateway"] = Field(
        default="nginx", description="nginx: Ingress objects; gateway: Gateway API HTTPRoutes."
    )
    wait_for_address: bool = Field(
        default=True,
        description="Wait until the controller publishes an address on each Ingress; turn off where no "
        "controller runs (e.g. a local API server).",
    )


class IngressNginxSettings(AddonSettings):
    chart: str = "ingress-nginx"
    repository: str = "https://kubernetes.github.io/ingress-nginx"
    version: str = "4.13.3"
    namespace: str = "ingress-nginx"
    class_name: DnsLabel = "nginx"


class EnvoyGatewaySettings(AddonSettings):
    enabled: bool = False
    chart: str = "gateway-helm"
    repository: str = "oci://docker.io/envoyproxy"
    version: str = "v1.5.4"
    namespace: str = "envoy-gateway-system"
    class_name: DnsLabel = "envoy"


@dataclass(frozen=True)
class Route:
    """Public HTTPS entry to one app's Service."""

    app: str
    namespace: str
    host: str
    path: str
    service: str
    port: int
    tls_secret: str


class IngressController(Protocol):
    namespace: str  # where the proxies run: app NetworkPolicies admit traffic from here
    class_name: str

    def route(self, route: Route, opts: pulumi.ResourceOptions) -> pulumi.CustomResource: ...

    def address(self) -> Optional[pulumi.Output[str]]:
        """The public load-balancer IP or hostname, where it can be read; None where it cannot."""
        ...


def _lb_address(status) -> str:
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    return (ingress[0].ip or ingress[0].hostname or "") if ingress else ""


class NginxIngress(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: IngressNginxSettings,
        wait_for_address: bool = True,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("clipper:ingress:NginxIngress", name, None, opts)
        self.namespace, self.class_name = settings.namespace, settings.class_name
        # The provider waits for an Ingress's load-balancer address unless told not to.
        self._annotations = {} if wait_for_address else {"pulumi.com/skipAwait": "true"}
        values = {
            "controller": {
                "replicaCount": 2,
                "ingressClassResource": {"name": settings.class_name, "default": True},
                # Keep client source IPs for logs and allow-lists.
                "service": {"externalTrafficPolicy": "Local"},
                "metrics": {"enabled": True},
                "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
            }
        }
        self.addon = (
            HelmAddon(name, HelmAddonArgs(settings=settings, values=values), pulumi.ResourceOptions(parent=self))
            if settings.enabled
            else None
        )
        self.register_outputs({"namespace": self.namespace, "className": self.class_name})

    def route(self, route: Route, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
        return k8s.networking.v1.Ingress(
            f"{route.namespace}-{route.app}",
            metadata={
                "name": route.app,
                "namespace": route.namespace,
                "labels": platform_labels("ingress", route.app),
                "annotations": self._annotations,
            },
            spec={
                "ingressClassName": self.class_name,
                "tls": [{"hosts": [route.host], "secretName": route.tls_secret}],
                "rules": [
                    {
                        "host": route.host,
                        "http": {
                            "paths": [
                                {
                                    "path": route.path,
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": route.service, "port": {"number": route.port}}},
                                }
                            ]
                        },
                    }
                ],
            },
            opts=opts,
        )

    def address(self) -> pulumi.Output[str]:
        """The controller's load-balancer IP or hostname, once the cloud has assigned it."""
        service = k8s.core.v1.Service.get(
            f"{self.namespace}-controller-service",
            f"{self.namespace}/ingress-nginx-controller",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.release] if self.addon else []),
        )
        return service.status.apply(_lb_address)


@dataclass(frozen=True)
class Listener:
    namespace: str
    host: str
    tls_secret: str


class GatewayIngress(pulumi.ComponentResource):
    """Envoy Gateway with one Gateway per app namespace, an HTTPS listener per public host."""

    def __init__(
        self,
        name: str,
        settings: EnvoyGatewaySettings,
        listeners: list[Listener],
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("clipper:ingress:GatewayIngress", name, None, opts)
        self.namespace, self.class_name = settings.namespace, settings.class_name
        self.addon = (
            HelmAddon(name, HelmAddonArgs(settings=settings), pulumi.ResourceOptions(parent=self))
            if settings.enabled
            else None
        )
        after_addon = pulumi.ResourceOptions(parent=self, depends_on=[self.addon.release] if self.addon else [])
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-class",
            api_version="gateway.networking.k8s.io/v1",
            kind="GatewayClass",
            metadata={"name": settings.class_name, "labels": platform_labels("ingress")},
            spec={"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
            opts=after_addon,
        )
        self.gateways: dict[str, k8s.apiextensions.CustomResource] = {}
        for namespace in sorted({listener.namespace for listener in listeners}):
            self.gateways[namespace] = k8s.apiextensions.CustomResource(
                f"{namespace}-gateway",
                api_version="gateway.networking.k8s.io/v1",
                kind="Gateway",
                metadata={"name": "public", "namespace": namespace, "labels": platform_labels("ingress")},
                spec={
                    "gatewayClassName": settings.class_name,
                    "listeners": [
                        {
                            "name": l.host.replace(".", "-"),
                            "hostname": l.host,
                            "port": 443,
                            "protocol": "HTTPS",
                            "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": l.tls_secret}]},
                            "allowedRoutes": {"namespaces": {"from": "Same"}},
                        }
                        for l in listeners
                        if l.namespace == namespace
                    ],
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway_class]),
            )
        self.register_outputs({"namespace": self.namespace, "className": self.class_name})

    def route(self, route: Route, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
        gateway = self.gateways[route.namespace]
        return k8s.apiextensions.CustomResource(
            f"{route.namespace}-{route.app}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={"name": route.app, "namespace": route.namespace, "labels": platform_labels("ingress", route.app)},
            spec={
                "parentRefs": [{"name": "public", "sectionName": route.host.replace(".", "-")}],
                "hostnames": [route.host],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
                        "backendRefs": [{"name": route.service, "port": route.port}],
                    }
                ],
            },
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gateway])),
        )


    def address(self) -> None:
        # Envoy Gateway names each Gateway's Service with a hash: no fixed name to read it from.
        return None


def ingress_controller(
    settings: IngressSettings,
    nginx: IngressNginxSettings,
    gateway: EnvoyGatewaySettings,
    listeners: list[Listener],
    opts: pulumi.ResourceOptions,
) -> Union[NginxIngress, GatewayIngress]:
    if settings.controller == "gateway":
        return GatewayIngress("envoy-gateway", gateway, listeners, opts)
    return NginxIngress("ingress-nginx", nginx, settings.wait_for_address, opts)
