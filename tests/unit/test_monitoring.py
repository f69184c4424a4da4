"""The monitoring add-on under mocks: kube-prometheus-stack on in staging and production, its values against the
official chart (keys, schema, and the objects `helm template` renders from them: nothing PSA
restricted refuses), the platform's PrometheusRules, ServiceMonitors for the apps, PodMonitors for
the add-ons, and the traffic Prometheus needs through default-deny on both sides."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from components.addons.alert_rules import rule_groups
from components.addons.chart_values import schema_errors, unknown_values
from components.settings import deep_merge
from infra.simulate import ProgramFailed, simulate
from tests.charts import RENDER_KUBE_VERSION, chart_installs, helm_binary

CHART = "kubernetes:helm.sh/v4:Chart"
VERSION = "88.5.3"


def _meta(resource) -> dict:
    return resource.inputs.get("metadata") or {}


def _policies(sim, namespace: str) -> dict[str, dict]:
    return {_meta(p)["name"]: p.inputs["spec"] for p in sim.of_type("NetworkPolicy") if _meta(p)["namespace"] == namespace}


def _helm_template(values: dict, chart: Path, helm: Path, workdir: Path) -> list[dict]:
    """The chart's objects as helm.v4.Chart renders them (no hooks), less its CRDs: the pods are
    what is checked here, and PyYAML cannot read one of the CRDs (a bare `=`)."""
    (workdir / "values.json").write_text(json.dumps(deep_merge(values, {"crds": {"enabled": False}})))
    env = {**os.environ, **{f"HELM_{d}_HOME": str(workdir / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}
    done = subprocess.run(
        [str(helm), "template", "monitoring", str(chart), "--namespace", "monitoring", "--kube-version", RENDER_KUBE_VERSION,
         "--no-hooks", "-f", str(workdir / "values.json")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def monitored():
    return simulate("production")


def test_staging_and_production_run_monitoring_and_a_stack_can_turn_it_off(stack_run):
    assert [c for c in stack_run.of_type(CHART) if c.name == "monitoring"]
    assert stack_run.of_type("PrometheusRule")
    off = simulate(stack_run.stack, {"addons.monitoring.enabled": False})
    assert not [c for c in off.of_type(CHART) if c.name == "monitoring"]
    assert not off.of_type("PrometheusRule") and not [n for n in off.of_type("Namespace") if _meta(n)["name"] == "monitoring"]


def test_the_namespace_has_the_quota_from_its_settings_not_a_waiver(monitored):
    [namespace] = [n for n in monitored.of_type("Namespace") if _meta(n)["name"] == "monitoring"]
    assert not any(key.startswith("waiver.policy.clipper.dev/") for key in _meta(namespace).get("annotations") or {})
    [quota] = [q for q in monitored.of_type("ResourceQuota") if _meta(q)["namespace"] == "monitoring"]
    assert quota.inputs["spec"]["hard"] == {
        "requests.cpu": "4", "requests.memory": "8Gi", "limits.cpu": "8", "limits.memory": "16Gi", "pods": "50"}
    [limits] = [r for r in monitored.of_type("LimitRange") if _meta(r)["namespace"] == "monitoring"]
    assert limits.inputs["spec"]["limits"][0]["default"] == {"cpu": "500m", "memory": "512Mi"}
    # No pod of the chart runs before the quota's container defaults exist.
    assert limits.urn in monitored.one(CHART, "monitoring").dependencies
    # Overridable, like every default.
    raised = simulate("production", {"addons.monitoring.quota.limitsMemory": "32Gi"})
    [quota] = [q for q in raised.of_type("ResourceQuota") if _meta(q)["namespace"] == "monitoring"]
    assert quota.inputs["spec"]["hard"]["limits.memory"] == "32Gi"


def test_the_default_workloads_fit_the_default_quota(monitored):
    """Prometheus and Alertmanager (two replicas each, with the operator's config-reloader sidecar),
    the operator and kube-state-metrics, by their limits, within the namespace's quota."""
    values = monitored.one(CHART, "monitoring").inputs["values"]
    cpu = lambda q: float(q[:-1]) / 1000 if q.endswith("m") else float(q)  # noqa: E731
    gib = lambda q: float(q[:-2]) / 1024 if q.endswith("Mi") else float(q[:-2])  # noqa: E731
    reloader = values["prometheusOperator"]["prometheusConfigReloader"]["resources"]["limits"]
    parts = [
        (2, values["prometheus"]["prometheusSpec"]["resources"]["limits"]), (2, reloader),
        (2, values["alertmanager"]["alertmanagerSpec"]["resources"]["limits"]), (2, reloader),
        (1, values["prometheusOperator"]["resources"]["limits"]), (1, values["kube-state-metrics"]["resources"]["limits"]),
    ]
    assert sum(n * cpu(limits["cpu"]) for n, limits in parts) <= 8
    assert sum(n * gib(limits["memory"]) for n, limits in parts) <= 16


def test_the_chart_is_the_official_one_at_the_pinned_version(monitored):
    chart = monitored.one(CHART, "monitoring").inputs
    assert chart["chart"] == "kube-prometheus-stack" and chart["version"] == VERSION
    assert chart["namespace"] == "monitoring"


def test_the_namespace_stays_psa_restricted_with_node_exporter_off(monitored):
    [namespace] = [n for n in monitored.of_type("Namespace") if _meta(n)["name"] == "monitoring"]
    labels = _meta(namespace)["labels"]
    assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == {"restricted"}
    values = monitored.one(CHART, "monitoring").inputs["values"]
    assert values["nodeExporter"] == {"enabled": False} and values["grafana"] == {"enabled": False}


def test_a_stack_that_declares_the_namespace_itself_is_refused():
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", {"namespaces.monitoring": {"podSecurity": "restricted"}})
    assert "namespaces.monitoring: addons.monitoring declares this namespace itself" in str(failure.value)
    assert failure.value.registered == []


def test_node_exporter_needs_a_privileged_namespace():
    node_exporter = {"addons.monitoring.values": {"nodeExporter": {"enabled": True}}}
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", node_exporter)
    assert "node-exporter needs hostNetwork, hostPID and hostPath, which PSA restricted refuses" in str(failure.value)
    privileged = simulate("production", {**node_exporter, "addons.monitoring.podSecurity": "privileged"})
    assert privileged.one(CHART, "monitoring").inputs["values"]["nodeExporter"] == {"enabled": True}


@pytest.mark.parametrize("controller", ["nginx", "gateway"])
def test_values_are_keys_of_the_chart_and_pass_its_schema(charts_dir, controller):
    sim = simulate("production", {"ingress.controller": controller, "addons.cert-manager.solver": "dns01", "dns": {"zone": "clpr.tv"}})
    [install] = [c for c in chart_installs(sim) if c.chart == "kube-prometheus-stack"]
    chart = charts_dir / f"kube-prometheus-stack-{VERSION}"
    assert unknown_values(chart, install.values) == []
    assert schema_errors(chart, install.values) == []


@pytest.mark.slow  # needs the toolchain's helm (make test builds it)
def test_the_rendered_chart_runs_no_pod_psa_restricted_refuses(monitored, charts_dir, tmp_path):
    helm = helm_binary()
    assert helm is not None, "the toolchain's helm is missing: run `make toolchain` (make test does)"
    [install] = [c for c in chart_installs(monitored) if c.chart == "kube-prometheus-stack"]
    docs = _helm_template(install.values, charts_dir / f"kube-prometheus-stack-{VERSION}", helm, tmp_path)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Prometheus", "Alertmanager"} <= kinds and "DaemonSet" not in kinds
    assert "ValidatingWebhookConfiguration" not in kinds and "Job" not in kinds
    assert not [d for d in docs if d["kind"] == "PrometheusRule"]  # the chart's default rules are off
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]
    pods += [d["spec"] for d in docs if d["kind"] in ("Prometheus", "Alertmanager")]
    assert len(pods) == 4  # operator, kube-state-metrics, Prometheus, Alertmanager
    for pod in pods:
        assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
        assert not [v for v in pod.get("volumes") or [] if "hostPath" in v]
        security = pod.get("securityContext") or {}
        assert security.get("runAsNonRoot") is True and security.get("runAsUser", 1) != 0
    for doc in docs:
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
                assert container["resources"]["limits"]


def test_the_platform_rules_are_one_prometheus_rule_per_concern(monitored):
    rules = {_meta(r)["name"]: r.inputs["spec"]["groups"] for r in monitored.of_type("PrometheusRule")}
    assert sorted(rules) == sorted(g["name"] for g in rule_groups("nginx", "1h"))
    assert rules["clipper-ingress"] == [g for g in rule_groups("nginx", "1h") if g["name"] == "clipper-ingress"]
    assert {_meta(r)["namespace"] for r in monitored.of_type("PrometheusRule")} == {"monitoring"}
    chart = monitored.one(CHART, "monitoring")
    # Custom resources after the chart (its CRDs), each alert with severity, for: and its texts.
    for rule in monitored.of_type("PrometheusRule"):
        assert chart.urn in rule.dependencies
        for alert in rule.inputs["spec"]["groups"][0]["rules"]:
            assert alert["labels"]["severity"] and alert["for"] and alert["annotations"].keys() == {"summary", "runbook"}


def _backup_rule(sim) -> str:
    [backups] = [r for r in sim.of_type("PrometheusRule") if _meta(r)["name"] == "clipper-backups"]
    return backups.inputs["spec"]["groups"][0]["rules"][1]["expr"]


def test_the_backup_alert_takes_the_rpo_the_schedules_are_checked_against(monitored):
    assert "> 3600" in _backup_rule(monitored)  # production: addons.backups.rpo 1h, the runbook's
    every_15m = {"addons.backups.rpo": "30m", "addons.backups.schedules": {"often": {"cron": "*/15 * * * *", "retention": "168h"}}}
    assert "> 1800" in _backup_rule(simulate("production", every_15m))


def test_without_backups_there_are_no_backup_alerts_and_no_rpo_of_its_own():
    sim = simulate("production", {"addons.backups.enabled": False})
    assert "clipper-backups" not in {_meta(r)["name"] for r in sim.of_type("PrometheusRule")}
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", {"addons.monitoring.backupRpo": "24h"})
    assert "clipper:addons.monitoring.backupRpo: unknown key" in str(failure.value)


def test_each_app_has_a_service_monitor_and_each_add_on_a_pod_monitor(monitored):
    services = {_meta(m)["name"]: m.inputs["spec"] for m in monitored.of_type("ServiceMonitor")}
    assert sorted(services) == ["app-backend", "app-frontend"]
    backend = services["app-backend"]
    assert backend["selector"]["matchLabels"]["app.kubernetes.io/name"] == "backend"
    assert backend["namespaceSelector"] == {"matchNames": ["clipper-production"]}
    assert backend["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    pods = {_meta(m)["name"]: m.inputs["spec"] for m in monitored.of_type("PodMonitor")}
    assert sorted(pods) == ["cert-manager", "external-secrets", "ingress-nginx", "velero"]
    assert pods["cert-manager"]["podMetricsEndpoints"][0]["portNumber"] == 9402
    # Velero's metrics (velero_backup_*) are what the backup alerts read.
    assert pods["velero"]["namespaceSelector"] == {"matchNames": ["velero"]}
    assert pods["velero"]["podMetricsEndpoints"][0]["portNumber"] == 8085


def test_with_envoy_gateway_the_proxies_are_scraped():
    sim = simulate("production", {"ingress.controller": "gateway"})
    pods = {_meta(m)["name"]: m.inputs["spec"] for m in sim.of_type("PodMonitor")}
    assert "ingress-nginx" not in pods
    proxies = pods["envoy-proxies"]
    assert proxies["namespaceSelector"] == {"matchNames": ["envoy-gateway-system"]}
    assert proxies["podMetricsEndpoints"][0] == {"portNumber": 19001, "path": "/stats/prometheus", "interval": "30s"}
    expr = [r for r in sim.of_type("PrometheusRule") if _meta(r)["name"] == "clipper-ingress"][0].inputs["spec"]["groups"][0]["rules"][0]["expr"]
    assert "envoy_http_downstream_rq_xx" in expr


def test_prometheus_reaches_its_targets_through_default_deny_on_both_sides(monitored):
    own = _policies(monitored, "monitoring")
    assert own["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    to_apps = own["allow-egress-to-clipper-production"]
    assert to_apps["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert to_apps["egress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert own["allow-egress-to-cert-manager"]["egress"][0]["ports"] == [{"port": 9402, "protocol": "TCP"}]
    assert {p["port"] for p in own["allow-internet-egress"]["egress"][0]["ports"]} == {443, 10250}
    assert "allow-public-ingress" not in own and "allow-webhooks-from-api-server" not in own
    # ... and the app namespace admits Prometheus, to the app's pods and port only.
    scrape = _policies(monitored, "clipper-production")["allow-scrape-app-backend"]
    assert scrape["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "backend"
    assert scrape["ingress"] == [{
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
    }]
    assert _policies(monitored, "ingress-nginx")["allow-scrape-ingress-nginx"]["ingress"][0]["ports"] == [{"port": 10254, "protocol": "TCP"}]


def test_the_chart_installs_from_the_mirror_folder(monkeypatch, charts_dir):
    monkeypatch.setenv("CLIPPER_CHARTS_DIR", str(charts_dir))
    chart = simulate("production").one(CHART, "monitoring").inputs
    assert chart["chart"] == str(charts_dir / f"kube-prometheus-stack-{VERSION}")
