"""Named waivers for objects the add-on charts render (they cannot carry our waiver annotations).

Each entry waives one rule for the listed objects (``Kind/name``) of one release (the add-on's
Helm release, which is also its Chart's Pulumi name), with the upstream design reason in one line.
Keep them narrow: name objects, never a whole chart; fix what chart values can fix instead
(components/addons). ``tests/policy/test_waivers.py`` checks every entry names a waivable rule and
gives a reason, and ``tests/engine/test_rendered_stacks.py`` that every listed object is rendered
by some stack and still needs the waiver.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartWaiver:
    rule: str
    release: str
    objects: tuple[str, ...]
    reason: str


# Names of the workloads (Deployment) and their ServiceAccounts, per release.
_CERT_MANAGER = ("cert-manager", "cert-manager-cainjector", "cert-manager-webhook")
_EXTERNAL_SECRETS = ("external-secrets", "external-secrets-cert-controller", "external-secrets-webhook")


def _both(*names: str) -> tuple[str, ...]:
    return tuple(f"{kind}/{name}" for name in names for kind in ("Deployment", "ServiceAccount"))


def _deployments(*names: str) -> tuple[str, ...]:
    return tuple(f"Deployment/{name}" for name in names)


CHART_WAIVERS: tuple[ChartWaiver, ...] = (
    # --- upstream design ---------------------------------------------------------------------
    ChartWaiver("no-service-account-token-automount", "cert-manager", _both(*_CERT_MANAGER),
                "the controller, CA injector and webhook work through the Kubernetes API with their ServiceAccount token"),
    ChartWaiver("no-service-account-token-automount", "external-secrets", _both(*_EXTERNAL_SECRETS),
                "the controller, cert controller and webhook work through the Kubernetes API with their ServiceAccount token"),
    ChartWaiver("no-service-account-token-automount", "ingress-nginx",
                ("ServiceAccount/ingress-nginx", "Deployment/ingress-nginx-controller"),
                "the controller watches Ingresses, Services and EndpointSlices through the Kubernetes API"),
    ChartWaiver("no-service-account-token-automount", "metrics-server", _both("metrics-server"),
                "metrics-server reads nodes and serves the metrics API through the Kubernetes API"),
    ChartWaiver("no-service-account-token-automount", "envoy-gateway", _deployments("envoy-gateway"),
                "Envoy Gateway watches Gateway API objects and creates the Envoy proxies through the Kubernetes API"),
    ChartWaiver("image-allowed-registry", "cert-manager", _deployments(*_CERT_MANAGER),
                "cert-manager's official images (quay.io/jetstack) at the chart's appVersion; we mirror none into ghcr.io yet"),
    ChartWaiver("image-allowed-registry", "ingress-nginx", _deployments("ingress-nginx-controller"),
                "ingress-nginx's official image (registry.k8s.io, pinned by digest by the chart); we mirror none into ghcr.io yet"),
    ChartWaiver("image-allowed-registry", "metrics-server", _deployments("metrics-server"),
                "metrics-server's official image (registry.k8s.io) at the chart's appVersion; we mirror none into ghcr.io yet"),
    ChartWaiver("image-allowed-registry", "envoy-gateway", _deployments("envoy-gateway"),
                "Envoy Gateway's official image (docker.io/envoyproxy) at the chart's appVersion; we mirror none into ghcr.io yet"),
    ChartWaiver("container-probes-required", "cert-manager", _deployments("cert-manager"),
                "cert-manager's controller serves a liveness endpoint only: the chart has no readiness probe for it"),
    ChartWaiver("container-probes-required", "cert-manager", _deployments("cert-manager-cainjector"),
                "cert-manager's CA injector serves no health endpoint: the chart has no probes for it"),
    ChartWaiver("read-only-root-filesystem", "ingress-nginx", _deployments("ingress-nginx-controller"),
                "nginx writes its generated configuration and temp files in the image (the chart sets readOnlyRootFilesystem: false)"),
)
