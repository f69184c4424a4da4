"""Connectivity the platform's NetworkPolicies give, evaluated by tests/netpol.py (the local API
server enforces no NetworkPolicy): for each stack file, each cloud and each ingress controller, the
NetworkPolicies and namespaces the program registers, our app pods from its Deployments and Jobs,
the add-on pods with the labels and ports their official charts give them (the version the program
pins, from the charts_dir fixture; values.yaml merged with the program's values), and the endpoints
a cluster has around them (API server, kubelets, cluster DNS, the internet, the database).

Required flows must be allowed on every NetworkPolicy implementation (an ipBlock is not taken to
match pod IPs); flows that must be denied must be denied on every one (an ipBlock is taken to match
pod IPs, as Calico, Azure NPM and the AWS VPC CNI do). The API server sits where the cloud
resources put it (GKE's control plane range, the EKS cluster's own subnets, the AKS API server
subnet), read from those resources rather than from the policies under test.
"""
from __future__ import annotations

import functools
import gc
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from components.settings import deep_merge
from infra.simulate import DELETE, Simulation, apply_overrides, simulate, stack_config
from tests.netpol import Cluster, Endpoint, Port, external, pod, policy_types

CHART = "kubernetes:helm.sh/v4:Chart"
CLOUDS = {"staging": ["gke", "eks", "aks"], "production": ["gke", "eks", "aks"], "local-platform": [None]}
CONTROLLERS = ["nginx", "gateway"]
CASES = [(stack, cloud, controller) for stack, clouds in CLOUDS.items() for cloud in clouds for controller in CONTROLLERS]

# Addresses around the cluster (documentation ranges where public). Pods get 10.128.0.0/14.
API_SERVER_DEFAULT_IP = "172.16.0.2"  # used when controlPlaneCidrs (default 0.0.0.0/0) contains it
API_SERVER_PORTS = (443, 6443)
KUBELET_IP, KUBELET_PORT = "10.0.1.10", 10250
INTERNET_IP = "198.51.100.7"
# The cluster DNS pods on GKE (kube-dns), EKS and AKS (CoreDNS) alike carry k8s-app=kube-dns.
DNS_NAMESPACE, DNS_LABELS = "kube-system", {"k8s-app": "kube-dns"}
DNS_PORTS = (Port(53, "UDP", "dns"), Port(53, "TCP", "dns-tcp"))
# cert-manager's HTTP-01 solver pods: labels and port from cert-manager's pkg/issuer/acme/http/pod.go
# (podLabels: acme.cert-manager.io/http01-solver "true"; acmeSolverListenPort 8089, named "http").
SOLVER_LABELS, SOLVER_PORT = {"acme.cert-manager.io/http01-solver": "true"}, Port(8089, "TCP", "http")
# Envoy Gateway's proxy pods are made by its controller, not its chart: labels as in envoyproxy/gateway
# internal/infrastructure/kubernetes/proxy/testdata/deployments/default.yaml; each listener port below
# 1024 becomes container port + 10000 (internal/gatewayapi/helpers.go, servicePortToContainerPort).
PROXY_LABELS = {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy", "app.kubernetes.io/managed-by": "envoy-gateway"}
PROXY_XDS_PORT = "grpc"  # the controller's port proxies fetch their configuration from (deployment.ports)
PROXY_METRICS_PORT = Port(19001, "TCP", "metrics")  # the proxies' Prometheus stats: container port `metrics`, same testdata file
# Prometheus' and Alertmanager's pods are made by the Prometheus Operator, not the chart: labels as
# prometheus-operator's pkg/prometheus/statefulset.go and pkg/alertmanager/statefulset.go give them
# (app.kubernetes.io/name, /managed-by, /instance = the custom resource's name), ports as their containers'.
OPERATOR_PODS = {
    "prometheus": ("monitoring-kube-prometheus-prometheus", [Port(9090, "TCP", "web")]),
    "alertmanager": ("monitoring-kube-prometheus-alertmanager", [Port(9093, "TCP", "web"), Port(9094, "TCP", "mesh-tcp")]),
}


# --- the add-on pods, as each chart's templates label them ------------------------------------

RELEASE, NAME = "{release}", "{chart}"  # in label values: the release (our add-on name), the chart name
HELPERS = "templates/_helpers.tpl"
OPERATOR_HELPERS = "templates/prometheus-operator/_prometheus-operator.tpl"
KSM_HELPERS = "charts/kube-state-metrics/templates/_helpers.tpl"


@dataclass(frozen=True)
class ChartPod:
    """One pod template of a chart. `sources` are whole lines of the chart (file, line) the labels come
    from: test_chart_pod_labels_are_the_charts_own checks each is in the pinned chart."""

    part: str
    template: str
    labels: dict[str, str]
    sources: tuple[tuple[str, str], ...]
    extra_labels: tuple[tuple[str, ...], ...] = ()  # values maps the template adds (first non-empty of each group)
    ports: tuple[tuple[str, tuple], ...] = ()  # (name, values keys tried in turn, then a literal); "*" = a list of {name, port}
    port_when: dict[str, str] = field(default_factory=dict)  # port name -> values key that renders it
    when: tuple[str, ...] = ()  # values keys that must all be true for the pod to exist
    api_server_calls: tuple[str, ...] = ()  # ports the API server calls (admission webhooks, aggregated APIs)


CHART_PODS: dict[str, list[ChartPod]] = {
    "ingress-nginx": [
        ChartPod(
            "controller", "templates/controller-deployment.yaml",
            {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "controller",
             "app.kubernetes.io/part-of": NAME, "app.kubernetes.io/managed-by": "Helm"},
            (("templates/controller-deployment.yaml", '{{- include "ingress-nginx.labels" . | nindent 8 }}'),
             ("templates/controller-deployment.yaml", "app.kubernetes.io/component: controller"),
             (HELPERS, '{{ include "ingress-nginx.selectorLabels" . }}'),
             (HELPERS, 'app.kubernetes.io/name: {{ include "ingress-nginx.name" . }}'),
             (HELPERS, "app.kubernetes.io/instance: {{ .Release.Name }}"),
             (HELPERS, 'app.kubernetes.io/part-of: {{ template "ingress-nginx.name" . }}'),
             (HELPERS, "app.kubernetes.io/managed-by: {{ .Release.Service }}"),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}')),
            extra_labels=(("controller.labels",), ("controller.podLabels",)),
            ports=(("http", ("controller.containerPort.http",)), ("https", ("controller.containerPort.https",)),
                   ("metrics", ("controller.metrics.port",)), ("webhook", ("controller.admissionWebhooks.port",))),
            port_when={"metrics": "controller.metrics.enabled", "webhook": "controller.admissionWebhooks.enabled"},
            api_server_calls=("webhook",),
        ),
    ],
    "cert-manager": [
        ChartPod(
            "controller", "templates/deployment.yaml",
            {"app": NAME, "app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "controller"},
            (("templates/deployment.yaml", 'app: {{ template "cert-manager.name" . }}'),
             ("templates/deployment.yaml", 'app.kubernetes.io/name: {{ template "cert-manager.name" . }}'),
             ("templates/deployment.yaml", "app.kubernetes.io/instance: {{ .Release.Name }}"),
             ("templates/deployment.yaml", 'app.kubernetes.io/component: "controller"'),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}')),
            extra_labels=(("podLabels",),),
            ports=(("http-metrics", (9402,)), ("http-healthz", (9403,))),
        ),
        ChartPod(
            "webhook", "templates/webhook-deployment.yaml",
            {"app": "webhook", "app.kubernetes.io/name": "webhook", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "webhook"},
            (("templates/webhook-deployment.yaml", 'app: {{ include "webhook.name" . }}'),
             ("templates/webhook-deployment.yaml", 'app.kubernetes.io/name: {{ include "webhook.name" . }}'),
             ("templates/webhook-deployment.yaml", "app.kubernetes.io/instance: {{ .Release.Name }}"),
             ("templates/webhook-deployment.yaml", 'app.kubernetes.io/component: "webhook"'),
             (HELPERS, '{{- printf "webhook" -}}')),
            extra_labels=(("webhook.podLabels",),),
            ports=(("https", ("webhook.config.securePort", "webhook.securePort", 6443)), ("healthcheck", ("webhook.config.healthzPort", 6080))),
            api_server_calls=("https",),
        ),
        ChartPod(
            "cainjector", "templates/cainjector-deployment.yaml",
            {"app": "cainjector", "app.kubernetes.io/name": "cainjector", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "cainjector"},
            (("templates/cainjector-deployment.yaml", 'app: {{ include "cainjector.name" . }}'),
             ("templates/cainjector-deployment.yaml", 'app.kubernetes.io/name: {{ include "cainjector.name" . }}'),
             ("templates/cainjector-deployment.yaml", "app.kubernetes.io/instance: {{ .Release.Name }}"),
             ("templates/cainjector-deployment.yaml", 'app.kubernetes.io/component: "cainjector"'),
             (HELPERS, '{{- printf "cainjector" -}}')),
            extra_labels=(("cainjector.podLabels",),),
            ports=(("http-metrics", (9402,)),),
            port_when={"http-metrics": "prometheus.enabled"},
            when=("cainjector.enabled",),
        ),
    ],
    "external-secrets": [
        ChartPod(
            part, template,
            {"app.kubernetes.io/name": NAME + suffix, "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/managed-by": "Helm"},
            ((template, "{{- include \"%s.labels\" . | nindent 8 }}" % helper),
             (HELPERS, "app.kubernetes.io/name: {{ include \"external-secrets.name\" . }}" + suffix),
             (HELPERS, "app.kubernetes.io/instance: {{ .Release.Name }}"),
             (HELPERS, "app.kubernetes.io/managed-by: {{ .Release.Service }}"),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}')),
            extra_labels=((f"{prefix}podLabels", "global.podLabels"),),
            ports=ports,
            when=when,
            api_server_calls=calls,
        )
        for part, template, suffix, helper, prefix, ports, when, calls in (
            ("controller", "templates/deployment.yaml", "", "external-secrets", "",
             (("metrics", ("metrics.listen.port",)),), ("createOperator",), ()),
            ("webhook", "templates/webhook-deployment.yaml", "-webhook", "external-secrets-webhook", "webhook.",
             (("metrics", ("webhook.metrics.listen.port",)), ("webhook", ("webhook.port",)), ("ready", ("webhook.readinessProbe.port",))),
             ("webhook.create",), ("webhook",)),
            ("cert-controller", "templates/cert-controller-deployment.yaml", "-cert-controller", "external-secrets-cert-controller", "certController.",
             (("metrics", ("certController.metrics.listen.port",)), ("ready", ("certController.readinessProbe.port",))),
             ("certController.create", "!webhook.certManager.enabled"), ()),
        )
    ],
    "metrics-server": [
        ChartPod(
            "server", "templates/deployment.yaml",
            {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE},
            (("templates/deployment.yaml", '{{- include "metrics-server.selectorLabels" . | nindent 8 }}'),
             (HELPERS, 'app.kubernetes.io/name: {{ include "metrics-server.name" . }}'),
             (HELPERS, "app.kubernetes.io/instance: {{ .Release.Name }}"),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}')),
            extra_labels=(("podLabels",),),
            ports=(("https", ("containerPort",)),),
            api_server_calls=("https",),  # the aggregated metrics API
        ),
    ],
    "gateway-helm": [
        ChartPod(
            "controller", "templates/envoy-gateway-deployment.yaml",
            {"control-plane": "envoy-gateway", "app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE},
            (("templates/envoy-gateway-deployment.yaml", "control-plane: envoy-gateway"),
             ("templates/envoy-gateway-deployment.yaml", '{{- include "eg.selectorLabels" . | nindent 8 }}'),
             (HELPERS, 'app.kubernetes.io/name: {{ include "eg.name" . }}'),
             (HELPERS, "app.kubernetes.io/instance: {{ .Release.Name }}"),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}')),
            extra_labels=(("deployment.pod.labels",),),
            # deployment.ports (grpc 18000 for xDS, ...), and the topology injector webhook's literal 9443.
            ports=(("*", ("deployment.ports",)), ("webhook", (9443,))),
            port_when={"webhook": "topologyInjector.enabled"},
            api_server_calls=("webhook",),
        ),
    ],
    "reloader": [
        ChartPod(
            "reloader", "templates/deployment.yaml",
            {"release": RELEASE, "app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE},
            (("templates/deployment.yaml", '{{ include "reloader-labels.chart" . | indent 8 }}'),
             (HELPERS, '{{ include "reloader-match-labels.chart" . }}'),
             (HELPERS, "release: {{ .Release.Name | quote }}"),
             (HELPERS, 'app.kubernetes.io/name: {{ template "reloader-name" . }}'),
             (HELPERS, "app.kubernetes.io/instance: {{ .Release.Name | quote }}"),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" | lower -}}')),
            extra_labels=(("reloader.deployment.labels",), ("reloader.matchLabels",)),
            ports=(("http", (9090,)),),
        ),
    ],
    "kube-prometheus-stack": [
        ChartPod(
            "operator", "templates/prometheus-operator/deployment.yaml",
            {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/part-of": NAME,
             "release": RELEASE, "heritage": "Helm", "app": NAME + "-operator", "app.kubernetes.io/name": NAME + "-prometheus-operator",
             "app.kubernetes.io/component": "prometheus-operator"},
            (("templates/prometheus-operator/deployment.yaml", '{{- include "kube-prometheus-stack.prometheus-operator.labels" . | nindent 8 }}'),
             (OPERATOR_HELPERS, '{{- include "kube-prometheus-stack.labels" . }}'),
             (OPERATOR_HELPERS, 'app: {{ template "kube-prometheus-stack.name" . }}-operator'),
             (OPERATOR_HELPERS, 'app.kubernetes.io/name: {{ template "kube-prometheus-stack.name" . }}-prometheus-operator'),
             (OPERATOR_HELPERS, "app.kubernetes.io/component: prometheus-operator"),
             (HELPERS, "app.kubernetes.io/managed-by: {{ .Release.Service }}"),
             (HELPERS, "app.kubernetes.io/instance: {{ .Release.Name }}"),
             (HELPERS, 'app.kubernetes.io/part-of: {{ template "kube-prometheus-stack.name" . }}'),
             (HELPERS, 'release: {{ $.Release.Name | quote }}'),
             (HELPERS, 'heritage: {{ $.Release.Service | quote }}'),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 50 | trimSuffix "-" -}}')),
            extra_labels=(("commonLabels",), ("prometheusOperator.podLabels",)),
            ports=(("http", (8080,)),),  # tls.enabled false: the operator serves plain HTTP on 8080
        ),
        ChartPod(
            "kube-state-metrics", "charts/kube-state-metrics/templates/deployment.yaml",
            {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/component": "metrics", "app.kubernetes.io/part-of": "kube-state-metrics",
             "app.kubernetes.io/name": "kube-state-metrics", "app.kubernetes.io/instance": RELEASE, "release": RELEASE},
            (("charts/kube-state-metrics/templates/deployment.yaml", '{{- include "kube-state-metrics.labels" . | indent 8 }}'),
             (KSM_HELPERS, "app.kubernetes.io/managed-by: {{ .Release.Service }}"),
             (KSM_HELPERS, "app.kubernetes.io/component: metrics"),
             (KSM_HELPERS, 'app.kubernetes.io/part-of: {{ template "kube-state-metrics.name" . }}'),
             (KSM_HELPERS, 'app.kubernetes.io/name: {{ include "kube-state-metrics.name" . }}'),
             (KSM_HELPERS, "app.kubernetes.io/instance: {{ .Release.Name }}"),
             (KSM_HELPERS, "release: {{ .Release.Name }}"),
             (KSM_HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}')),
            extra_labels=(("kube-state-metrics.podLabels",),),
            ports=(("http", ("kube-state-metrics.service.port", 8080)), ("metrics", ("kube-state-metrics.selfMonitor.telemetryPort", 8081))),
        ),
    ],
    "velero": [
        ChartPod(
            "server", "templates/deployment.yaml",
            {"name": "velero", "app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/managed-by": "Helm"},
            (("templates/deployment.yaml", "name: velero"),
             ("templates/deployment.yaml", 'app.kubernetes.io/name: {{ include "velero.name" . }}'),
             ("templates/deployment.yaml", "app.kubernetes.io/instance: {{ .Release.Name }}"),
             ("templates/deployment.yaml", "app.kubernetes.io/managed-by: {{ .Release.Service }}"),
             (HELPERS, '{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}')),
            extra_labels=(("podLabels",),),
            ports=(("http-monitoring", (8085,)),),
            port_when={"http-monitoring": "metrics.enabled"},
        ),
    ],
}


def _get(values: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(part)
    return values


def _truthy(values: dict, key: str) -> bool:
    return not _get(values, key[1:]) if key.startswith("!") else bool(_get(values, key))


@dataclass
class InstalledChart:
    release: str
    namespace: str
    chart: str  # the chart's name
    directory: Path
    values: dict  # the chart's values.yaml with the program's values over it


@functools.lru_cache(maxsize=None)
def _chart_defaults(directory: Path) -> dict:
    return yaml.load((directory / "values.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def _installed_charts(sim: Simulation, charts_dir: Path) -> list[InstalledChart]:
    charts = []
    for registered in sim.of_type(CHART):
        inputs = registered.inputs
        chart = inputs["chart"].rstrip("/").rsplit("/", 1)[-1]
        directory = charts_dir / f"{chart}-{inputs['version']}"
        assert directory.is_dir(), f"{registered.name}: no chart {chart} {inputs['version']} in {charts_dir}"
        defaults = _chart_defaults(directory)
        charts.append(InstalledChart(inputs.get("name") or registered.name, inputs["namespace"], chart, directory, deep_merge(defaults, inputs.get("values") or {})))
    return charts


def _chart_pods(installed: InstalledChart) -> list[tuple[ChartPod, Endpoint]]:
    assert installed.chart in CHART_PODS, f"chart {installed.chart}: model its pods in CHART_PODS"
    found = []
    for spec in CHART_PODS[installed.chart]:
        values = installed.values
        if not all(_truthy(values, key) for key in spec.when):
            continue
        labels = {k: v.format(release=installed.release, chart=installed.chart) for k, v in spec.labels.items()}
        for group in spec.extra_labels:
            labels.update(next((_get(values, key) for key in group if _get(values, key)), {}))
        ports = []
        for name, sources in spec.ports:
            if name in spec.port_when and not _truthy(values, spec.port_when[name]):
                continue
            value = next((v for v in (s if isinstance(s, int) else _get(values, s) for s in sources) if v), None)
            assert value, f"{installed.chart}: no value for port {name} at {sources}"
            ports += [Port(p["port"], "TCP", p["name"]) for p in value] if name == "*" else [Port(int(value), "TCP", name)]
        found.append((spec, pod(f"{installed.release}-{spec.part}", installed.namespace, labels, ports)))
    return found


# --- one platform per stack x cloud x controller ----------------------------------------------


@dataclass
class Platform:
    case: str
    sim: Simulation
    config: dict
    cluster: Cluster
    app_namespace: str
    controller: str
    apps: dict[str, Endpoint]  # app name -> its Deployment's pods
    migrations: dict[str, Endpoint]  # app name -> its migration Job's pods
    charts: list[InstalledChart]
    chart_pods: dict[tuple[str, str], Endpoint]  # (release, part) -> pods
    api_server_calls: list[tuple[str, Endpoint, Port]]  # (release, pod, port) the API server calls
    ingress_pods: list[Endpoint]  # what carries public traffic to the apps
    api_server: Endpoint
    monitoring_pods: dict[str, Endpoint] = field(default_factory=dict)  # the operator's: prometheus, alertmanager
    checked: int = 0  # flows evaluated so far

    def port(self, endpoint: Endpoint, name: str) -> Port:
        return next(p for p in endpoint.ports if p.name == name)

    def problems(self, required=(), forbidden=()) -> list[str]:
        """Required flows not allowed on every implementation; forbidden flows allowed on some."""
        found = []
        for src, dst, port, protocol in required:
            self.checked += 1
            verdict = self.cluster.allowed(src, dst, port, protocol, ipblock_matches_pods=False)
            if not verdict:
                found.append(f"required but denied: {verdict.reason}")
            elif dst.in_cluster and (port, protocol) not in {(p.number, p.protocol) for p in dst.ports}:
                found.append(f"allowed, but {dst} listens on no {port}/{protocol} (its ports: {dst.ports})")
        for src, dst, port, protocol in forbidden:
            self.checked += 1
            verdict = self.cluster.allowed(src, dst, port, protocol, ipblock_matches_pods=True)
            if verdict:
                found.append(f"must be denied but allowed: {verdict.reason}")
        return found


def _overrides(stack: str, cloud: Optional[str], controller: str) -> dict:
    config = stack_config(stack)
    overrides = {key: DELETE for key, value in config.items() if isinstance(value, dict) and "secure" in value}
    overrides["ingress.controller"] = controller
    if cloud:
        overrides["cloud"] = cloud
    return overrides


def _control_plane_range(sim) -> list[str]:
    """Where the cloud resources put the API server, read from them (not from the policies under
    test): GKE's private control plane range, the EKS cluster's subnets, AKS's API Server VNet
    Integration subnet."""
    for cluster in sim.of_type("gcp:container/cluster:Cluster"):
        return [cluster.inputs["privateClusterConfig"]["masterIpv4CidrBlock"]]
    for cluster in sim.of_type("aws:eks/cluster:Cluster"):  # the subnets EKS puts its interfaces in
        ids = set(cluster.inputs["vpcConfig"]["subnetIds"])  # mock ids: "<resource name>-id"
        return [s.inputs["cidrBlock"] for s in sim.of_type("aws:ec2/subnet:Subnet") if f"{s.name}-id" in ids]
    for subnet in sim.of_type("azure-native:network:Subnet"):
        if any(d.get("serviceName") == "Microsoft.ContainerService/managedClusters" for d in subnet.inputs.get("delegations") or []):
            return [subnet.inputs["addressPrefix"]]
    return []


def build_platform(stack: str, cloud: Optional[str], controller: str, charts_dir: Path, extra: Optional[dict] = None) -> Platform:
    overrides = {**_overrides(stack, cloud, controller), **(extra or {})}
    config = apply_overrides(stack_config(stack), overrides)
    # The run allocates much and frees little: cyclic GC passes over the cloud SDKs' objects cost
    # ~40% of it and reclaim nearly nothing, so they wait until it is done.
    gc.disable()
    try:
        sim = simulate(stack, overrides)
    finally:
        gc.enable()
    manifests = sim.manifests()
    app_namespace = config["appNamespace"]
    cidrs = (config.get("network") or {}).get("controlPlaneCidrs") or _control_plane_range(sim) or ["0.0.0.0/0"]
    api_ip = API_SERVER_DEFAULT_IP
    if not any(ipaddress.ip_address(api_ip) in ipaddress.ip_network(c) for c in cidrs):
        api_ip = str(next(ipaddress.ip_network(cidrs[0]).hosts()))
    cluster = Cluster(manifests)
    chart_pods, calls, charts = {}, [], _installed_charts(sim, charts_dir)
    for installed in charts:
        for spec, endpoint in _chart_pods(installed):
            chart_pods[(installed.release, spec.part)] = cluster.add(endpoint)
            calls += [(installed.release, endpoint, port) for port in endpoint.ports if port.name in spec.api_server_calls]
    if controller == "gateway":
        # The proxies run in the controller's namespace unless Envoy Gateway deploys them per Gateway namespace.
        gateway = next(c for c in charts if c.release == "envoy-gateway")
        assert _get(gateway.values, "config.envoyGateway.provider.kubernetes.deploy.type") != "GatewayNamespace"
        gateway_ns = gateway.namespace
        ingress_pods = [
            cluster.add(pod(
                f"envoy-{gw['metadata']['namespace']}-{gw['metadata']['name']}", gateway_ns,
                {**PROXY_LABELS, "gateway.envoyproxy.io/owning-gateway-name": gw["metadata"]["name"],
                 "gateway.envoyproxy.io/owning-gateway-namespace": gw["metadata"]["namespace"]},
                [*(Port(l["port"] + 10000 if l["port"] < 1024 else l["port"], "TCP", l["name"]) for l in gw["spec"]["listeners"]),
                 PROXY_METRICS_PORT],
            ))
            for gw in manifests if gw.get("kind") == "Gateway"
        ]
    else:
        ingress_pods = [chart_pods[("ingress-nginx", "controller")]]
    monitoring_pods = {}
    for installed in charts:
        if installed.chart == "kube-prometheus-stack":
            for name, (instance, ports) in OPERATOR_PODS.items():
                labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "prometheus-operator", "app.kubernetes.io/instance": instance}
                monitoring_pods[name] = cluster.add(pod(name, installed.namespace, labels, ports))
    cluster.add(pod("kube-dns", DNS_NAMESPACE, DNS_LABELS, DNS_PORTS))
    cluster.add(pod("cm-acme-http-solver", app_namespace, SOLVER_LABELS, [SOLVER_PORT]))
    cluster.add(pod("stray", app_namespace))  # a pod with no labels in the app namespace
    cluster.add(pod("intruder", "intruder"))  # a pod in a namespace the program does not manage
    api_server = cluster.add(external("api-server", api_ip))
    cluster.add(external("kubelet", KUBELET_IP))
    cluster.add(external("internet", INTERNET_IP))
    for rule in (config.get("network") or {}).get("egress") or []:
        cluster.add(external(f"egress-{rule['name']}", str(next(ipaddress.ip_network(rule["cidr"]).hosts()))))
    jobs = [m for m in manifests if m["kind"] == "Job"]
    migrations = {j["spec"]["template"]["metadata"]["labels"]["clipper.dev/app"]: cluster[f"{app_namespace}/{j['metadata']['name']}"] for j in jobs}
    apps = {name: cluster[f"{app_namespace}/{name}"] for name in config.get("apps") or {}}
    return Platform(
        case=f"{stack}-{cloud or 'existing'}-{controller}", sim=sim, config=config, cluster=cluster, app_namespace=app_namespace,
        controller=controller, apps=apps, migrations=migrations, charts=charts, chart_pods=chart_pods, api_server_calls=calls,
        ingress_pods=ingress_pods, api_server=api_server, monitoring_pods=monitoring_pods,
    )


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{c or 'existing'}-{i}" for s, c, i in CASES])
def platform(request, charts_dir) -> Platform:
    return build_platform(*request.param, charts_dir)


def _assert_none(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} flow(s) wrong:\n  " + "\n  ".join(problems)


def _tcp(port: Port) -> tuple[int, str]:
    return port.number, port.protocol


def _addon_pods(p: Platform) -> list[Endpoint]:
    return [*p.chart_pods.values(), *(p.ingress_pods if p.controller == "gateway" else [])]


def _public_apps(p: Platform) -> dict[str, Endpoint]:
    return {name: p.apps[name] for name, app in p.config["apps"].items() if app.get("host")}


def _http01(p: Platform) -> bool:
    cert_manager = p.config["addons"].get("cert-manager") or {}
    return cert_manager.get("enabled", True) and cert_manager.get("solver", "http01") == "http01"


@functools.lru_cache(maxsize=None)
def _chart_lines(path: Path) -> frozenset[str]:
    """The lines of a chart file, whitespace-normalised."""
    return frozenset(" ".join(line.split()) for line in path.read_text().splitlines())


@functools.lru_cache(maxsize=None)
def _network_policy_switches(directory: Path) -> dict[str, list[str]]:
    """Each template rendering a NetworkPolicy -> the values switches in its opening `if`."""
    found = {}
    for template in sorted((directory / "templates").rglob("*.yaml")):
        text = template.read_text()
        if re.search(r"^kind: NetworkPolicy", text, re.M):
            found[str(template)] = re.findall(r"\.Values\.([\w.]*(?:networkPolicy|netpol)\.enabled)", text.split("\n", 1)[0])
    return found


# --- tests ------------------------------------------------------------------------------------


def test_chart_pod_labels_are_the_charts_own(platform):
    """Every line the modelled labels are cited from is in the chart version the program pins, and no
    value renames the chart's pods (nameOverride)."""
    missing = []
    for installed in platform.charts:
        assert not _get(installed.values, "nameOverride") and not _get(installed.values, "fullnameOverride"), installed.release
        for spec in CHART_PODS[installed.chart]:
            for path, line in spec.sources:
                if " ".join(line.split()) not in _chart_lines(installed.directory / path):
                    missing.append(f"{installed.chart} {installed.directory.name}/{path}: no line {line!r}")
    assert not missing, "\n".join(missing)


def test_chart_network_policies_stay_off(platform):
    """The charts can render NetworkPolicies of their own, each behind a values switch that is off by
    default: the evaluation sees only ours (under mocks no chart renders), so every switch stays off."""
    for installed in platform.charts:
        for template, switches in _network_policy_switches(installed.directory).items():
            assert switches, f"{template}: a NetworkPolicy behind no switch this test knows"
            assert not any(_get(installed.values, key) for key in switches), f"{installed.release}: {switches} on"


def test_every_namespace_the_program_registers_has_default_deny(platform):
    namespaces = {m["metadata"]["name"] for m in platform.sim.manifests() if m["kind"] == "Namespace"}
    assert platform.app_namespace in namespaces
    for name in sorted(namespaces):
        policies = [m for m in platform.sim.manifests() if m["kind"] == "NetworkPolicy" and m["metadata"].get("namespace") == name]
        assert policies, f"namespace {name} has no NetworkPolicy"
        assert any(
            p["spec"]["podSelector"] == {} and policy_types(p["spec"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress")
            for p in policies
        ), f"namespace {name} has no default-deny policy"


def test_ingress_controller_reaches_each_public_app_and_the_acme_solvers(platform):
    p = platform
    required = [(proxy, app, *_tcp(p.port(app, "http"))) for proxy in p.ingress_pods for app in _public_apps(p).values()]
    if _http01(p):
        required += [(proxy, p.cluster[f"{p.app_namespace}/cm-acme-http-solver"], *_tcp(SOLVER_PORT)) for proxy in p.ingress_pods]
    assert len(required) >= 2
    _assert_none(p.problems(required))


def test_public_traffic_reaches_the_ingress_controller(platform):
    p = platform
    internet = p.cluster["internet"]
    if p.controller == "gateway":
        required = [(internet, proxy, *_tcp(port)) for proxy in p.ingress_pods for port in proxy.ports if port != PROXY_METRICS_PORT]
    else:
        controller = p.ingress_pods[0]
        required = [(internet, controller, *_tcp(p.port(controller, name))) for name in ("http", "https")]
    _assert_none(p.problems(required))


def test_api_server_reaches_every_webhook(platform):
    p = platform
    expected = {"cert-manager", "external-secrets", "envoy-gateway" if p.controller == "gateway" else "ingress-nginx"}
    assert expected <= {release for release, _, _ in p.api_server_calls}
    _assert_none(p.problems([(p.api_server, endpoint, *_tcp(port)) for _, endpoint, port in p.api_server_calls]))


def test_add_on_controllers_reach_the_api_server_and_dns(platform):
    p = platform
    dns = p.cluster[f"{DNS_NAMESPACE}/kube-dns"]
    required = [(pod_, p.api_server, port, "TCP") for pod_ in p.chart_pods.values() for port in API_SERVER_PORTS]
    required += [(pod_, dns, 53, protocol) for pod_ in p.chart_pods.values() for protocol in ("UDP", "TCP")]
    _assert_none(p.problems(required))


def test_add_ons_reach_what_they_work_with(platform):
    p = platform
    internet, kubelet = p.cluster["internet"], p.cluster["kubelet"]
    required = [(p.chart_pods[("cert-manager", "controller")], internet, port, "TCP") for port in (443, 80)]  # ACME; HTTP-01 self-check
    required.append((p.chart_pods[("external-secrets", "controller")], internet, 443, "TCP"))  # the cloud secret manager
    if ("velero", "server") in p.chart_pods:
        required.append((p.chart_pods[("velero", "server")], internet, 443, "TCP"))  # the backup bucket
    if ("metrics-server", "server") in p.chart_pods:
        required.append((p.chart_pods[("metrics-server", "server")], kubelet, KUBELET_PORT, "TCP"))  # scrapes every kubelet
    if p.controller == "gateway":
        controller = p.chart_pods[("envoy-gateway", "controller")]
        required += [(proxy, controller, *_tcp(p.port(controller, PROXY_XDS_PORT))) for proxy in p.ingress_pods]
        # ... at the address they resolve through the cluster DNS (the xds_cluster is STRICT_DNS).
        dns = p.cluster[f"{DNS_NAMESPACE}/kube-dns"]
        required += [(proxy, dns, 53, protocol) for proxy in p.ingress_pods for protocol in ("UDP", "TCP")]
    _assert_none(p.problems(required))


def test_app_traffic_and_dns(platform):
    p = platform
    network = p.config.get("network") or {}
    dns = p.cluster[f"{DNS_NAMESPACE}/kube-dns"]
    required = [(p.apps[r["from"]], p.apps[r["to"]], r["port"], "TCP") for r in network.get("appTraffic") or []]
    required += [(app, dns, 53, proto) for app in [*p.apps.values(), *p.migrations.values()] for proto in ("UDP", "TCP")]
    for rule in network.get("egress") or []:
        target = p.cluster[f"egress-{rule['name']}"]
        required += [(p.apps[name], target, port, "TCP") for name in rule.get("apps") or p.apps for port in rule["ports"]]
    _assert_none(p.problems(required))


def test_migration_jobs_reach_the_database_of_their_app(platform):
    p = platform
    rules = [r for r in (p.config.get("network") or {}).get("egress") or [] if not r.get("apps") or set(r["apps"]) & set(p.migrations)]
    if not rules or not p.migrations:
        pytest.skip("no migration Job with a database egress rule in this stack")
    required = [
        (job, p.cluster[f"egress-{rule['name']}"], port, "TCP")
        for rule in rules for app, job in p.migrations.items() if not rule.get("apps") or app in rule["apps"] for port in rule["ports"]
    ]
    _assert_none(p.problems(required))


def test_unrelated_pods_cannot_reach_the_apps(platform):
    p = platform
    strangers = [p.cluster[f"{p.app_namespace}/stray"], p.cluster["intruder/intruder"]]
    targets = [(app, *_tcp(p.port(app, "http"))) for app in p.apps.values()] + [(p.cluster[f"{p.app_namespace}/cm-acme-http-solver"], *_tcp(SOLVER_PORT))]
    _assert_none(p.problems(forbidden=[(s, dst, port, proto) for s in strangers for dst, port, proto in targets]))


def test_unrelated_pods_cannot_reach_the_webhooks(platform):
    p = platform
    intruder = p.cluster["intruder/intruder"]
    _assert_none(p.problems(forbidden=[(intruder, endpoint, *_tcp(port)) for _, endpoint, port in p.api_server_calls]))


def test_narrowed_control_plane_cidrs_keep_unrelated_pods_off_the_webhooks(charts_dir):
    """A range in network.controlPlaneCidrs wins over the cluster's own (EKS with gateway: the most
    webhooks, metrics-server's among them)."""
    p = build_platform("staging", "eks", "gateway", charts_dir, {"network.controlPlaneCidrs": ["10.0.0.0/24"]})
    assert p.api_server.ip == "10.0.0.1"
    intruder, stray = p.cluster["intruder/intruder"], p.cluster[f"{p.app_namespace}/stray"]
    calls = [(endpoint, *_tcp(port)) for _, endpoint, port in p.api_server_calls]
    assert len(calls) == 4
    required = [(p.api_server, dst, port, proto) for dst, port, proto in calls]
    required += [(pod_, p.api_server, 443, "TCP") for pod_ in p.chart_pods.values()]
    forbidden = [(src, dst, port, proto) for src in (intruder, stray) for dst, port, proto in calls]
    _assert_none(p.problems(required, forbidden))


def test_stray_pods_of_the_app_namespace_cannot_reach_the_webhooks(platform):
    p = platform
    stray = p.cluster[f"{p.app_namespace}/stray"]
    _assert_none(p.problems(forbidden=[(stray, endpoint, *_tcp(port)) for _, endpoint, port in p.api_server_calls]))


def test_app_pods_cannot_reach_add_ons_or_the_internet(platform):
    p = platform
    sources = [*p.apps.values(), *p.migrations.values()]
    forbidden = [(src, dst, *_tcp(port)) for src in sources for dst in _addon_pods(p) for port in dst.ports]
    forbidden += [(src, p.cluster["internet"], port, "TCP") for src in sources for port in (80, 443)]
    forbidden += [(src, p.api_server, port, "TCP") for src in sources for port in API_SERVER_PORTS]
    _assert_none(p.problems(forbidden=forbidden))


def test_add_on_pods_reach_app_pods_only_where_needed(platform):
    p = platform
    solver = p.cluster[f"{p.app_namespace}/cm-acme-http-solver"]
    targets = [(app, *_tcp(p.port(app, "http"))) for app in p.apps.values()] + [(solver, *_tcp(SOLVER_PORT))]
    forwarders = {id(e) for e in p.ingress_pods}
    if p.controller == "gateway":  # its namespace-wide egress: the next test
        forwarders.add(id(p.chart_pods[("envoy-gateway", "controller")]))
    forbidden = [(src, dst, port, proto) for src in _addon_pods(p) if id(src) not in forwarders for dst, port, proto in targets]
    # The proxies themselves: the app port and the solver port only.
    forbidden += [(proxy, dst, port, "TCP") for proxy in p.ingress_pods for dst in [*p.apps.values(), solver] for port in (22, 5432, 9090)]
    _assert_none(p.problems(forbidden=forbidden))


def test_envoy_gateway_controller_cannot_reach_app_pods(platform):
    p = platform
    if p.controller != "gateway":
        pytest.skip("nginx: the controller is the proxy")
    controller, solver = p.chart_pods[("envoy-gateway", "controller")], p.cluster[f"{p.app_namespace}/cm-acme-http-solver"]
    targets = [(app, *_tcp(p.port(app, "http"))) for app in p.apps.values()] + [(solver, *_tcp(SOLVER_PORT))]
    _assert_none(p.problems(forbidden=[(controller, dst, port, proto) for dst, port, proto in targets]))


def test_cluster_autoscaler_reaches_dns_the_api_server_and_aws_and_nothing_reaches_it(platform):
    """EKS only: its pods in kube-system get their own policy (kube-system's other pods keep the cloud's defaults)."""
    p = platform
    autoscaler = p.cluster.endpoints.get("kube-system/cluster-autoscaler")
    if "-eks-" not in p.case:
        assert autoscaler is None
        return
    dns, internet = p.cluster[f"{DNS_NAMESPACE}/kube-dns"], p.cluster["internet"]
    required = [(autoscaler, p.api_server, port, "TCP") for port in API_SERVER_PORTS]
    required += [(autoscaler, dns, 53, protocol) for protocol in ("UDP", "TCP")]
    required.append((autoscaler, internet, 443, "TCP"))  # Auto Scaling, EC2, EKS and STS APIs
    metrics = p.port(autoscaler, "http")
    forbidden = [(src, autoscaler, *_tcp(metrics)) for src in (p.cluster["intruder/intruder"], *p.apps.values())]
    forbidden += [(autoscaler, app, *_tcp(p.port(app, "http"))) for app in p.apps.values()]
    forbidden.append((autoscaler, internet, 80, "TCP"))
    _assert_none(p.problems(required, forbidden))


def _selected(p: Platform, namespace: str, labels: dict[str, str]) -> list[Endpoint]:
    return [e for e in p.cluster.endpoints.values() if e.namespace == namespace and labels.items() <= dict(e.labels).items()]


def test_prometheus_scrapes_every_monitored_target_and_nothing_else_of_theirs(platform):
    """Each ServiceMonitor and PodMonitor the program declares: Prometheus reaches the pods it selects
    on the port it names (and they listen there); the kubelets; Alertmanager. Not the apps' other ports,
    the ACME solver or the add-ons' webhooks."""
    p = platform
    if not p.monitoring_pods:
        pytest.skip("addons.monitoring is off in this stack")
    prometheus, alertmanager = p.monitoring_pods["prometheus"], p.monitoring_pods["alertmanager"]
    required = [(prometheus, p.cluster["kubelet"], KUBELET_PORT, "TCP"), (prometheus, alertmanager, 9093, "TCP")]
    required.append((alertmanager, p.cluster["internet"], 443, "TCP"))  # its receivers (webhooks)
    monitors = [m for m in p.sim.manifests() if m["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert {m["metadata"]["name"] for m in monitors} >= {f"app-{app}" for app in p.apps}
    for monitor in monitors:
        [namespace] = monitor["spec"]["namespaceSelector"]["matchNames"]
        targets = _selected(p, namespace, monitor["spec"]["selector"]["matchLabels"])
        assert targets, f"{monitor['kind']} {monitor['metadata']['name']} selects no pod in {namespace}"
        for target in targets:
            if monitor["kind"] == "ServiceMonitor":  # the app Service's port `http`: the pods' http port
                required.append((prometheus, target, *_tcp(p.port(target, "http"))))
            else:
                required += [(prometheus, target, e["portNumber"], "TCP") for e in monitor["spec"]["podMetricsEndpoints"]]
    solver = p.cluster[f"{p.app_namespace}/cm-acme-http-solver"]
    forbidden = [(prometheus, app, port, "TCP") for app in p.apps.values() for port in (22, 5432)]
    forbidden.append((prometheus, solver, *_tcp(SOLVER_PORT)))
    forbidden += [(prometheus, endpoint, *_tcp(port)) for _, endpoint, port in p.api_server_calls]
    # ... and no one else reaches Prometheus' scrape targets' metrics ports through those allowances.
    forbidden += [(p.cluster["intruder/intruder"], dst, port, proto) for _, dst, port, proto in required[3:]]
    _assert_none(p.problems(required, forbidden))
