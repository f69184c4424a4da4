"""The monitoring add-on installed for real: a `pulumi up` of local-platform in cluster mode, on an
API server of this module's own, with `addons.monitoring` (kube-prometheus-stack from
$CLIPPER_CHARTS_DIR) and `addons.backups` (Velero, so the backup alerts are declared too) on.

What runs for real: the engine, the chart's CRDs (established by the API server), our
PrometheusRules, ServiceMonitors and PodMonitors stored as the API server validated them against
those CRDs, the Prometheus object, the operator's and kube-state-metrics' Deployments (available
through kwok), the namespace's PSA labels and the NetworkPolicies on both sides of each scrape,
and the Services, EndpointSlices and pods the monitors select.

What cannot run here: kwok runs no container, so no operator turns the Prometheus object into
pods and nothing is scraped; the local API server has no admission webhooks (the chart's are off
anyway, monitoring.py says why). The rules themselves are run by promtool in
tests/unit/test_alert_rules.py.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from components.addons.alert_rules import rule_groups
from components.meta import platform_labels
from infra.simulate import DELETE
from tests.charts import charts_dir
from tests.engine.engine import ROOT, Project, kubectl, preview_changes

STACK, NS, MONITORING = "local-platform", "clipper-local", "monitoring"
GROUP = "monitoring.coreos.com"
CRDS = ("prometheuses", "prometheusrules", "servicemonitors", "podmonitors", "alertmanagers")
RETENTION, STORAGE, RPO = "7d", "20Gi", "2h"
# The add-ons installed here that the add-on scrapes (components/addons/monitoring.py addon_targets):
# PodMonitor name -> namespace.
ADDON_TARGETS = {"cert-manager": "cert-manager", "external-secrets": "external-secrets", "ingress-nginx": "ingress-nginx",
                 "velero": "velero"}
# Ours, not the chart's own ServiceMonitors (Prometheus, Alertmanager, the operator, the kubelets...).
OURS = ",".join(f"{k}={v}" for k, v in sorted(platform_labels("monitoring").items()))
LOCATION = {"provider": "aws", "bucket": "clipper-metrics", "config": {"region": "minio", "s3Url": "http://minio.invalid:9000"}}


def _json(kubeconfig, *args) -> dict:
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))


def _items(kubeconfig, *args) -> list[dict]:
    return _json(kubeconfig, "get", *args)["items"]


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _ours(kubeconfig, kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m["spec"] for m in _items(kubeconfig, f"{kind}.{GROUP}", "-n", MONITORING, "-l", OURS)}


def _scraped(kubeconfig) -> dict[str, tuple[str, dict, int]]:
    """Each of our monitors' targets as the cluster has them: (namespace, the pods' labels, the
    container port scraped). A ServiceMonitor reaches pods through its Service's selector and port."""
    found = {}
    for name, spec in _ours(kubeconfig, "podmonitors").items():
        [namespace] = spec["namespaceSelector"]["matchNames"]
        found[name] = (namespace, spec["selector"]["matchLabels"], spec["podMetricsEndpoints"][0]["portNumber"])
    for name, spec in _ours(kubeconfig, "servicemonitors").items():
        [namespace] = spec["namespaceSelector"]["matchNames"]
        [service] = _items(kubeconfig, "services", "-n", namespace, "-l", _selector(spec["selector"]["matchLabels"]))
        [service_port] = [p for p in service["spec"]["ports"] if p["name"] == spec["endpoints"][0]["port"]]
        pods = _items(kubeconfig, "pods", "-n", namespace, "-l", _selector(service["spec"]["selector"]))
        ports = {p["containerPort"] for pod in pods for c in pod["spec"]["containers"] for p in c.get("ports") or []
                 if p.get("name") == service_port["targetPort"]}
        assert len(ports) == 1, f"{name}: the pods behind {service['metadata']['name']} declare {sorted(ports)}"
        found[name] = (namespace, service["spec"]["selector"], ports.pop())
    return found


@pytest.fixture(scope="module")
def installed(bin_dir, tmp_path_factory, own_cluster):
    # The pack is left out: tests/engine/test_rendered_stacks.py holds these objects to it.
    project = Project.copy_of(ROOT, tmp_path_factory.mktemp("monitoring"), bin_dir, with_policies=False)
    project.env["CLIPPER_CHARTS_DIR"] = str(charts_dir())
    project.init(STACK)
    existing = project.stack_config(STACK).get("clipper:existing") or {}
    project.set(STACK, "existing", {**existing, "mode": "cluster", "kubeconfig": str(own_cluster)})
    # The add-on declares its namespace itself; a stack file may still list it (config refuses both).
    project.set(STACK, f"namespaces.{MONITORING}", DELETE)
    project.set(STACK, "addons.monitoring.enabled", True)
    project.set(STACK, "addons.monitoring.retention", RETENTION)
    project.set(STACK, "addons.monitoring.storageSize", STORAGE)
    project.set(STACK, "addons.backups", {"enabled": True, "location": LOCATION, "rpo": RPO})
    # metrics-server is not scraped; on kwok its APIService could never be served (test_platform_addons.py).
    project.set(STACK, "addons.metrics-server.enabled", False)
    started = time.monotonic()
    project.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=1500)
    print(f"\nup with monitoring: {time.monotonic() - started:.1f}s")
    return project


@pytest.fixture(scope="module")
def config(installed) -> dict:
    return installed.stack_config(STACK)


def _controller(config: dict) -> str:
    return config["clipper:ingress"]["controller"]


def test_the_charts_crds_are_established(installed, own_cluster):
    for plural in CRDS:
        crd = _json(own_cluster, "get", "crd", f"{plural}.{GROUP}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", plural


def test_every_platform_rule_is_stored_as_declared(installed, own_cluster, config):
    declared = rule_groups(_controller(config), RPO)
    assert {g["name"] for g in declared} >= {"clipper-pods", "clipper-secrets", "clipper-backups"}
    stored = {name: spec["groups"] for name, spec in _ours(own_cluster, "prometheusrules").items()}
    assert sorted(stored) == sorted(g["name"] for g in declared)
    for group in declared:
        # Nothing pruned or defaulted away: every alert with its expr, for, severity and runbook.
        assert stored[group["name"]] == [group], group["name"]
    alerts = {rule["alert"] for groups in stored.values() for g in groups for rule in g["rules"]}
    assert {"PodCrashLooping", "HpaAtMaxReplicas", "ExternalSecretNotSynced", "BackupOlderThanRpo"} <= alerts


def test_each_app_has_a_service_monitor_whose_service_routes_to_its_pods(installed, own_cluster, config):
    monitors = _ours(own_cluster, "servicemonitors")
    apps = sorted(config["clipper:apps"])
    assert sorted(monitors) == [f"app-{app}" for app in apps]
    for app in apps:
        spec = monitors[f"app-{app}"]
        assert spec["namespaceSelector"] == {"matchNames": [NS]}
        [endpoint] = spec["endpoints"]
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
        # A ServiceMonitor selects Services: exactly the app's, which has the named port...
        [service] = _items(own_cluster, "services", "-n", NS, "-l", _selector(spec["selector"]["matchLabels"]))
        assert service["metadata"]["name"] == app
        assert "http" in {p["name"] for p in service["spec"]["ports"]}
        # ...and whose endpoints are the app's Ready pods (kwok gives them IPs and readiness).
        pods = _items(own_cluster, "pods", "-n", NS, "-l", _selector(service["spec"]["selector"]))
        running = {p["status"]["podIP"] for p in pods if p["status"].get("phase") == "Running"}
        assert running and all(p["metadata"]["labels"]["app.kubernetes.io/name"] == app for p in pods)
        slices = _items(own_cluster, "endpointslices", "-n", NS, "-l", f"kubernetes.io/service-name={app}")
        ready = {a for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready") for a in e["addresses"]}
        assert ready == running, app


def test_each_add_on_has_a_pod_monitor_on_a_port_its_pods_declare(installed, own_cluster):
    monitors = _ours(own_cluster, "podmonitors")
    assert sorted(monitors) == sorted(ADDON_TARGETS)
    for name, namespace in ADDON_TARGETS.items():
        spec = monitors[name]
        assert spec["namespaceSelector"] == {"matchNames": [namespace]}
        [endpoint] = spec["podMetricsEndpoints"]
        pods = _items(own_cluster, "pods", "-n", namespace, "-l", _selector(spec["selector"]["matchLabels"]))
        assert pods, f"{name}: the PodMonitor selects no pod in {namespace}"
        # The operator keeps a target only where a container declares the port (pod role discovery).
        for pod in pods:
            ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []}
            assert endpoint["portNumber"] in ports, f"{name}: {pod['metadata']['name']} declares {sorted(ports)}"


def test_prometheus_has_our_retention_and_storage_and_the_operator_runs(installed, own_cluster):
    [prometheus] = _items(own_cluster, f"prometheuses.{GROUP}", "-n", MONITORING)
    spec = prometheus["spec"]
    assert spec["retention"] == RETENTION and spec["replicas"] == 2
    assert spec["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == STORAGE
    # Every rule and monitor, not only those labelled with the chart's release.
    for selector in ("ruleSelector", "serviceMonitorSelector", "podMonitorSelector"):
        assert spec[selector] == {}, selector
    assert len(_items(own_cluster, f"alertmanagers.{GROUP}", "-n", MONITORING)) == 1
    deployments = {d["metadata"]["name"]: d for d in _items(own_cluster, "deployments", "-n", MONITORING)}
    operator = [d for name, d in deployments.items() if name.endswith("-operator")]
    state_metrics = [d for name, d in deployments.items() if name.endswith("kube-state-metrics")]
    assert len(operator) == 1 and len(state_metrics) == 1, sorted(deployments)
    for deployment in operator + state_metrics:
        status = deployment["status"]
        assert status.get("availableReplicas") == deployment["spec"]["replicas"], (deployment["metadata"]["name"], status)


def test_the_namespace_is_psa_restricted_behind_default_deny(installed, own_cluster):
    labels = _json(own_cluster, "get", "namespace", MONITORING)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    policies = {p["metadata"]["name"]: p["spec"] for p in _items(own_cluster, "networkpolicies", "-n", MONITORING)}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_each_scraped_namespace_admits_prometheus_to_the_scraped_pods_and_port_only(installed, own_cluster, config):
    targets = _scraped(own_cluster)
    assert sorted(targets) == sorted([*(f"app-{app}" for app in config["clipper:apps"]), *ADDON_TARGETS])
    for target, (namespace, pods, port) in targets.items():
        policies = {p["metadata"]["name"]: p["spec"] for p in _items(own_cluster, "networkpolicies", "-n", namespace)}
        assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, namespace
        assert policies[f"allow-scrape-{target}"] == {
            "podSelector": {"matchLabels": pods},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}},
                                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
                         "ports": [{"port": port, "protocol": "TCP"}]}],
        }, target
    # And Prometheus may send to those ports, in those namespaces, and nowhere else in the cluster.
    policies = {p["metadata"]["name"]: p["spec"] for p in _items(own_cluster, "networkpolicies", "-n", MONITORING)}
    egress = {name.removeprefix("allow-egress-to-"): spec for name, spec in policies.items() if name.startswith("allow-egress-to-")}
    expected: dict[str, set[int]] = {}
    for namespace, _, port in targets.values():
        expected.setdefault(namespace, set()).add(port)
    assert {ns: {p["port"] for rule in spec["egress"] for p in rule["ports"]} for ns, spec in egress.items()} == expected
    for spec in egress.values():
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}


def test_a_second_preview_shows_no_changes(installed):
    started = time.monotonic()
    preview = installed.ok("preview", "--stack", STACK, "--json", timeout=900).json()
    print(f"\npreview: {time.monotonic() - started:.1f}s")
    assert preview_changes(preview) == {}


def _create(kubeconfig, path, rule: dict) -> subprocess.CompletedProcess:
    path.write_text(json.dumps({"apiVersion": f"{GROUP}/v1", "kind": "PrometheusRule",
                                "metadata": {"name": "broken", "namespace": MONITORING}, "spec": rule}))
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "--validate=strict", "-f", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_api_server_refuses_a_rule_the_crd_schema_does_not_allow(installed, own_cluster, tmp_path):
    good = {"alert": "Broken", "expr": "vector(1)", "for": "5m", "labels": {"severity": "warning"}}
    misspelt = _create(own_cluster, tmp_path / "misspelt.json", {"groups": [{"name": "broken", "rules": [{**good, "fro": "5m"}]}]})
    assert misspelt.returncode != 0 and 'unknown field "spec.groups[0].rules[0].fro"' in misspelt.stderr, misspelt.stderr
    bad_duration = _create(own_cluster, tmp_path / "duration.json", {"groups": [{"name": "broken", "rules": [{**good, "for": "5 minutes"}]}]})
    assert bad_duration.returncode != 0 and "spec.groups[0].rules[0].for" in bad_duration.stderr, bad_duration.stderr
    assert not _items(own_cluster, f"prometheusrules.{GROUP}", "-n", MONITORING, "--field-selector", "metadata.name=broken")
    # The same object without the mistakes is accepted: the refusals are the schema's, not the request's.
    accepted = _create(own_cluster, tmp_path / "good.json", {"groups": [{"name": "broken", "rules": [good]}]})
    assert accepted.returncode == 0, accepted.stderr
    kubectl(own_cluster, "delete", f"prometheusrules.{GROUP}", "broken", "-n", MONITORING)
