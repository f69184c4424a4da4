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
    # --- day-2 add-ons: Reloader, Velero, kube-prometheus-stack -----------------------------------
    ChartWaiver("no-service-account-token-automount", "reloader", _both("reloader-reloader"),
                "Reloader watches Secrets and patches Deployments through the Kubernetes API"),
    ChartWaiver("no-service-account-token-automount", "velero", _both("velero"),
                "Velero reads every object it backs up, creates every object it restores and runs its own custom resources "
                "through the Kubernetes API"),
    ChartWaiver("image-allowed-registry", "velero", _deployments("velero"),
                "Velero's official images (docker.io/velero: the server at the chart's appVersion, the cloud plugin at "
                "addons.backups.pluginVersion); we mirror none into ghcr.io yet"),
    ChartWaiver("deployment-min-replicas", "velero", _deployments("velero"),
                "Velero runs one server: it has no leader election, and a second would run every schedule again "
                "(the chart: one replica, Recreate)"),
    ChartWaiver("deployment-pdb-required", "velero", _deployments("velero"),
                "one replica: a PDB would block every node drain (the chart's PDB is for more replicas, which Velero does not support)"),
    ChartWaiver("topology-spread-required", "velero", _deployments("velero"),
                "one replica, and the chart's Deployment template has no topologySpreadConstraints"),
    ChartWaiver("no-service-account-token-automount", "monitoring",
                (*_both("monitoring-kube-prometheus-operator", "monitoring-kube-state-metrics"),
                 "ServiceAccount/monitoring-kube-prometheus-prometheus"),
                "the operator reconciles Prometheus and Alertmanager, kube-state-metrics lists every object's state and "
                "Prometheus discovers its scrape targets, each through the Kubernetes API"),
    ChartWaiver("image-allowed-registry", "monitoring",
                _deployments("monitoring-kube-prometheus-operator", "monitoring-kube-state-metrics"),
                "the official images (quay.io/prometheus-operator, registry.k8s.io/kube-state-metrics) at the chart's "
                "appVersions; we mirror none into ghcr.io yet"),
    ChartWaiver("deployment-min-replicas", "monitoring", _deployments("monitoring-kube-prometheus-operator"),
                "the chart runs one Prometheus Operator (replicas: 1 in its template); Prometheus and Alertmanager run two each"),
    ChartWaiver("deployment-min-replicas", "monitoring", _deployments("monitoring-kube-state-metrics"),
                "kube-state-metrics runs once: every replica exports every series, so a second doubles each alert's input"),
    ChartWaiver("deployment-pdb-required", "monitoring",
                _deployments("monitoring-kube-prometheus-operator", "monitoring-kube-state-metrics"),
                "one replica each: a PDB would block every node drain"),
    ChartWaiver("topology-spread-required", "monitoring", _deployments("monitoring-kube-prometheus-operator"),
                "one replica, and the chart has no topologySpreadConstraints for the operator"),
    ChartWaiver("no-plaintext-secret-data", "monitoring",
                ("Secret/alertmanager-monitoring-kube-prometheus-alertmanager",),
                "the chart's Alertmanager configuration (routes to a `null` receiver, no credentials); receivers with "
                "credentials belong in a Secret of their own (alertmanager.alertmanagerSpec.configSecret)"),
)
