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

from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.spread import resources, topology_spread
from components.meta import platform_labels
from components.namespace import ACME_SOLVER_PORT
from components.settings import DnsLabel, Settings

# The labels Envoy Gateway puts on the proxy pods it creates for each Gateway: only they, not the
# controller beside them, may reach the apps and the HTTP-01 solvers.
ENVOY_PROXY_PODS = {"app.kubernetes.io/managed-by": "envoy-gateway", "app.kubernetes.io/component": "proxy"}


class IngressSettings(Settings):
    controller: Literal["nginx", "gateway"] = Field(
        # ingress-nginx is retired upstream (no security fixes since March 2026): new stacks get Gateway API.
        default="gateway",
        description="gateway: Envoy Gateway and Gateway API HTTPRoutes; nginx: ingress-nginx (retired upstream) and "
        "Ingress objects. The chosen controller's add-on is installed, the other one is not.",
    )
    wait_for_address: bool = Field(
        default=True,
        description="Wait until the controller publishes an address on each Ingress; turn off where no "
        "controller runs (e.g. a local API server).",
    )


class IngressNginxSettings(AddonSettings):
    chart: str = "ingress-nginx"
    repository: str = "https://kubernetes.github.io/ingress-nginx"
    version: str = "4.15.1"
    namespace: str = "ingress-nginx"
    class_name: DnsLabel = "nginx"


class EnvoyGatewaySettings(AddonSettings):
    chart: str = "gateway-helm"
    repository: str = "oci://docker.io/envoyproxy"
    version: str = "v1.9.0"
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


ADMISSION_PORT = 8443  # ingress-nginx's admission webhook (controller.admissionWebhooks.port)
GATEWAY_WEBHOOK_PORT = 9443  # Envoy Gateway's webhook port
GATEWAY_NAME, HTTP_LISTENER = "public", "http"
# Service annotations for the public load balancer, per cloud. EKS: a Network Load Balancer, which
# with externalTrafficPolicy Local keeps client source IPs (the default classic ELB proxies TCP
# and hides them). GKE and AKS load balancers pass client IPs through as they are.
LOAD_BALANCER_ANNOTATIONS = {"eks": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}}


@dataclass(frozen=True)
class IngressArgs:
    settings: IngressSettings
    network: ClusterNetwork
    cloud: str
    app_namespace: str
    app_ports: tuple[int, ...]  # container ports of the apps the controller routes to
    listeners: list["Listener"]
    cert_manager: bool  # cert-manager runs: it issues the controller's own webhook certificates


def _to_apps(args: IngressArgs) -> dict[str, tuple[int, ...]]:
    # The proxies reach app pods and cert-manager's HTTP-01 solver pods directly, by pod IP.
    return {args.app_namespace: tuple(sorted({*args.app_ports, ACME_SOLVER_PORT}))}


def _lb_address(status) -> str:
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    return (ingress[0].ip or ingress[0].hostname or "") if ingress else ""


class NginxIngress(pulumi.ComponentResource):
    def __init__(self, name: str, settings: IngressNginxSettings, args: IngressArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:ingress:NginxIngress", name, None, opts)
        self.namespace, self.class_name = settings.namespace, settings.class_name
        # The provider waits for an Ingress's load-balancer address unless told not to.
        self._annotations = {} if args.settings.wait_for_address else {"pulumi.com/skipAwait": "true"}
        pods = {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "controller"}
        values = {
            "controller": {
                "replicaCount": 2,
                # The chart's PDB key: rendered whenever replicaCount > 1.
                "minAvailable": 1,
                "topologySpreadConstraints": topology_spread(pods),
                "resources": resources(cpu="100m", memory="90Mi", cpu_limit="1", memory_limit="512Mi"),
                "ingressClassResource": {"name": settings.class_name, "default": True},
                # Keep client source IPs for logs and allow-lists.
                "service": {
                    "externalTrafficPolicy": "Local",
                    # Without a cloud load balancer (a local API server) no address ever comes: don't wait.
                    "annotations": {**LOAD_BALANCER_ANNOTATIONS.get(args.cloud, {}), **self._annotations},
                },
                "metrics": {"enabled": True},
                # helm.v4.Chart runs no Helm hooks, and the chart's hook Jobs are what create the
                # admission webhook's certificate: cert-manager issues it instead, or, without
                # cert-manager, the webhook is off (the API server would call it with no certificate).
                "admissionWebhooks": (
                    {"enabled": True, "certManager": {"enabled": True}} if args.cert_manager else {"enabled": False}
                ),
            }
        }
        traffic = AddonTraffic(
            webhook_ports=(ADMISSION_PORT,) if args.cert_manager else (),
            public_ports=(80, 443),
            internet_ports=(),
            to_namespaces=_to_apps(args),
        )
        # Disabled: the cluster runs its own ingress-nginx; routes are still declared for it.
        self.addon = (
            HelmAddon(
                name,
                HelmAddonArgs(settings=settings, network=args.network, traffic=traffic, values=values),
                pulumi.ResourceOptions(parent=self),
            )
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.chart] if self.addon else []),
        )
        return service.status.apply(_lb_address)


@dataclass(frozen=True)
class Listener:
    namespace: str
    host: str
    tls_secret: str


class GatewayIngress(pulumi.ComponentResource):
    """Envoy Gateway with one Gateway per app namespace: an HTTPS listener per public host, and an
    HTTP listener that redirects to HTTPS and serves cert-manager's HTTP-01 challenges."""

    def __init__(self, name: str, settings: EnvoyGatewaySettings, args: IngressArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:ingress:GatewayIngress", name, None, opts)
        self.namespace, self.class_name = settings.namespace, settings.class_name
        values = {
            "deployment": {
                "replicas": 2,
                "envoyGateway": {"resources": resources(cpu="100m", memory="256Mi", cpu_limit="1", memory_limit="1024Mi")},
                "pod": {"topologySpreadConstraints": topology_spread({"app.kubernetes.io/instance": name})},
            },
            "podDisruptionBudget": {"minAvailable": 1},
            # The Gateway API "safe upgrade" admission policy renders only after a `lookup` finds no
            # copy, or one labelled as owned by a Helm release: objects Pulumi manages carry no Helm
            # labels, so from the second `up` on it would drop out of the render and be deleted
            # (and render mode has no cluster to look up). CRD upgrades go through `pulumi preview`.
            "crds": {"gatewayAPI": {"safeUpgradePolicy": {"enabled": False}}},
        }
        traffic = AddonTraffic(
            webhook_ports=(GATEWAY_WEBHOOK_PORT,),
            # Proxies listen on the Gateway's ports + 10000 (Envoy Gateway runs them unprivileged).
            public_ports=(10080, 10443),
            internet_ports=(),
            to_namespaces=_to_apps(args),
            senders=ENVOY_PROXY_PODS,
            within_namespace=True,  # proxies fetch their configuration from the controller (xDS)
        )
        self.addon = HelmAddon(
            name,
            HelmAddonArgs(settings=settings, network=args.network, traffic=traffic, values=values),
            pulumi.ResourceOptions(parent=self),
        )
        after_addon = pulumi.ResourceOptions(parent=self, depends_on=[self.addon.chart])
        control_plane_tls = self._control_plane_certificates(name, pulumi.ResourceOptions(parent=self))
        proxy = k8s.apiextensions.CustomResource(
            f"{name}-proxy",
            api_version="gateway.envoyproxy.io/v1alpha1",
            kind="EnvoyProxy",
            metadata={"name": "public", "namespace": self.namespace, "labels": platform_labels("ingress")},
            spec={
                "provider": {
                    "type": "Kubernetes",
                    "kubernetes": {
                        # Keep client source IPs, as the nginx controller does.
                        "envoyService": {
                            "externalTrafficPolicy": "Local",
                            "annotations": LOAD_BALANCER_ANNOTATIONS.get(args.cloud, {}),
                        },
                        "envoyDeployment": {"replicas": 2},
                    },
                }
            },
            opts=after_addon,
        )
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-class",
            api_version="gateway.networking.k8s.io/v1",
            kind="GatewayClass",
            metadata={"name": settings.class_name, "labels": platform_labels("ingress")},
            spec={
                "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": "public",
                    "namespace": self.namespace,
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.addon.chart, proxy, *control_plane_tls]),
        )
        self.gateways: dict[str, k8s.apiextensions.CustomResource] = {}
        for namespace in sorted({listener.namespace for listener in args.listeners}):
            hosts = [l for l in args.listeners if l.namespace == namespace]
            self.gateways[namespace] = k8s.apiextensions.CustomResource(
                f"{namespace}-gateway",
                api_version="gateway.networking.k8s.io/v1",
                kind="Gateway",
                metadata={"name": GATEWAY_NAME, "namespace": namespace, "labels": platform_labels("ingress")},
                spec={
                    "gatewayClassName": settings.class_name,
                    "listeners": [
                        {"name": HTTP_LISTENER, "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}},
                        *(
                            {
                                "name": _listener_name(l.host),
                                "hostname": l.host,
                                "port": 443,
                                "protocol": "HTTPS",
                                "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": l.tls_secret}]},
                                "allowedRoutes": {"namespaces": {"from": "Same"}},
                            }
                            for l in hosts
                        ),
                    ],
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway_class]),
            )
            # Plain HTTP only redirects; cert-manager's challenge routes match exact paths, so they win.
            k8s.apiextensions.CustomResource(
                f"{namespace}-https-redirect",
                api_version="gateway.networking.k8s.io/v1",
                kind="HTTPRoute",
                metadata={"name": "https-redirect", "namespace": namespace, "labels": platform_labels("ingress")},
                spec={
                    "parentRefs": [{"name": GATEWAY_NAME, "sectionName": HTTP_LISTENER}],
                    "hostnames": [l.host for l in hosts],
                    "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gateways[namespace]]),
            )
        self.register_outputs({"namespace": self.namespace, "className": self.class_name})

    def _control_plane_certificates(self, name: str, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The TLS between Envoy Gateway and its proxies. The chart makes these Secrets in a Helm hook
        Job (certgen), which helm.v4.Chart does not run: cert-manager issues them from a private CA."""
        ns = self.namespace

        def cr(resource: str, kind: str, meta_name: str, spec: dict, depends_on: list) -> k8s.apiextensions.CustomResource:
            return k8s.apiextensions.CustomResource(
                f"{name}-{resource}",
                api_version="cert-manager.io/v1",
                kind=kind,
                metadata={"name": meta_name, "namespace": ns, "labels": platform_labels("tls")},
                spec=spec,
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=depends_on)),
            )

        bootstrap = cr("selfsigned-issuer", "Issuer", "selfsigned", {"selfSigned": {}}, [self.addon.chart])
        ca = cr(
            "ca",
            "Certificate",
            "envoy-gateway-ca",
            {
                "isCA": True,
                "commonName": "envoy-gateway-ca",
                "secretName": "envoy-gateway-ca",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"kind": "Issuer", "name": "selfsigned"},
            },
            [bootstrap],
        )
        issuer = cr("ca-issuer", "Issuer", "envoy-gateway-ca", {"ca": {"secretName": "envoy-gateway-ca"}}, [ca])
        # The Secret names and DNS names certgen would have made.
        services = {
            "envoy-gateway": ["envoy-gateway", f"envoy-gateway.{ns}", f"envoy-gateway.{ns}.svc", f"envoy-gateway.{ns}.svc.cluster.local"],
            "envoy": [f"*.{ns}", f"*.{ns}.svc", f"*.{ns}.svc.cluster.local"],
        }
        return [
            cr(
                f"{secret}-tls",
                "Certificate",
                secret,
                {
                    "secretName": secret,
                    "dnsNames": dns_names,
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                    "issuerRef": {"kind": "Issuer", "name": "envoy-gateway-ca"},
                },
                [issuer],
            )
            for secret, dns_names in services.items()
        ]

    def route(self, route: Route, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
        gateway = self.gateways[route.namespace]
        return k8s.apiextensions.CustomResource(
            f"{route.namespace}-{route.app}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={"name": route.app, "namespace": route.namespace, "labels": platform_labels("ingress", route.app)},
            spec={
                "parentRefs": [{"name": GATEWAY_NAME, "sectionName": _listener_name(route.host)}],
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


def _listener_name(host: str) -> str:
    return host.replace(".", "-")


def gateway_acme_solver(namespaces: list[str]) -> dict:
    """HTTP-01 through the Gateways' HTTP listeners: cert-manager attaches a challenge HTTPRoute."""
    return {
        "http01": {
            "gatewayHTTPRoute": {
                "parentRefs": [
                    {"name": GATEWAY_NAME, "namespace": ns, "kind": "Gateway", "sectionName": HTTP_LISTENER} for ns in namespaces
                ]
            }
        }
    }


def acme_http01_solver(settings: IngressSettings, nginx: IngressNginxSettings, listeners: list[Listener]) -> dict:
    """The HTTP-01 solver for the chosen controller, known before the controller is declared (cert-manager
    comes first: it issues the controllers' own webhook and control-plane certificates)."""
    if settings.controller == "gateway":
        return gateway_acme_solver(sorted({l.namespace for l in listeners}))
    return {"http01": {"ingress": {"ingressClassName": nginx.class_name}}}


def ingress_controller(
    nginx: IngressNginxSettings,
    gateway: EnvoyGatewaySettings,
    args: IngressArgs,
    opts: pulumi.ResourceOptions,
) -> Union[NginxIngress, GatewayIngress]:
    """The chosen controller. Only its add-on is installed; routes are declared either way."""
    if args.settings.controller == "gateway":
        return GatewayIngress("envoy-gateway", gateway, args, opts)
    return NginxIngress("ingress-nginx", nginx, args, opts)
