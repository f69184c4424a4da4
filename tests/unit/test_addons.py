"""The add-on layer under mocks: chart sources, chart values that fix what a real cluster would
show, and each add-on namespace behind default-deny."""
from __future__ import annotations

import shutil

import pytest
import yaml

from infra.simulate import ProgramFailed, simulate
from tests.charts import chart_installs, helm_binary, render_chart

CHART = "kubernetes:helm.sh/v4:Chart"


def _values(sim, name: str) -> dict:
    return sim.one(CHART, name).inputs["values"]


def _meta(resource) -> dict:
    return resource.inputs.get("metadata") or {}


def _policies(sim, namespace: str) -> dict[str, dict]:
    return {_meta(p)["name"]: p.inputs["spec"] for p in sim.of_type("NetworkPolicy") if _meta(p)["namespace"] == namespace}


def test_every_namespace_the_program_declares_has_default_deny(stack_run):
    namespaces = {_meta(n)["name"]: _meta(n) for n in stack_run.of_type("Namespace")}
    assert {"cert-manager", "external-secrets", "ingress-nginx"} <= set(namespaces)
    for name, meta in namespaces.items():
        deny = _policies(stack_run, name).get("default-deny")
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, name
        assert "waiver.policy.clipper.dev/namespace-default-deny-network-policy" not in meta.get("annotations", {})


def test_add_on_webhooks_are_open_to_the_api_server_on_their_port_only(production):
    for namespace, port in (("cert-manager", 10250), ("external-secrets", 10250), ("ingress-nginx", 8443)):
        webhook = _policies(production, namespace)["allow-webhooks-from-api-server"]
        # The stack file's GKE cluster: its private control plane range, not anywhere.
        assert webhook["ingress"] == [{"ports": [{"port": port, "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "172.16.0.0/28"}}]}]


def test_http01_solver_pods_are_reachable_from_the_ingress_controller(production):
    solvers = _policies(production, "clipper-production")["allow-ingress-to-acme-solvers"]
    assert solvers["podSelector"] == {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}
    assert solvers["ingress"][0]["ports"] == [{"port": 8089, "protocol": "TCP"}]
    assert solvers["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    # ... and the controller may send to them (its namespace is default-deny too).
    egress = _policies(production, "ingress-nginx")["allow-egress-to-clipper-production"]["egress"][0]
    assert {"port": 8089, "protocol": "TCP"} in egress["ports"]


def test_http01_solver_policy_is_absent_with_dns01():
    sim = simulate("production", {"addons.cert-manager.solver": "dns01", "dns": {"zone": "clpr.tv"}})
    assert "allow-ingress-to-acme-solvers" not in _policies(sim, "clipper-production")


@pytest.mark.parametrize("part", ["", "webhook", "cainjector"])
def test_cert_manager_runs_two_replicas_with_a_pdb_that_lets_drains_through(production, part):
    values = _values(production, "cert-manager")
    settings = values[part] if part else values
    assert settings["replicaCount"] == 2
    assert settings["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    spread = settings["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == (part or "controller")


def test_ingress_nginx_pdb_uses_the_charts_own_key_and_replicas_are_spread(production):
    controller = _values(production, "ingress-nginx")["controller"]
    assert "podDisruptionBudget" not in controller
    assert controller["minAvailable"] == 1 and controller["replicaCount"] == 2
    assert len(controller["topologySpreadConstraints"]) == 2
    # helm.v4.Chart runs no hooks: cert-manager issues the admission webhook's certificate.
    assert controller["admissionWebhooks"] == {"enabled": True, "certManager": {"enabled": True}}


def test_without_cert_manager_the_ingress_admission_webhook_is_off():
    sim = simulate("production", {"addons.cert-manager.enabled": False})
    assert _values(sim, "ingress-nginx")["controller"]["admissionWebhooks"] == {"enabled": False}
    assert "allow-webhooks-from-api-server" not in _policies(sim, "ingress-nginx")


@pytest.mark.parametrize("cloud,annotations", [("eks", {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}), ("gke", {})])
def test_load_balancers_keep_client_source_ips(cloud, annotations):
    sim = simulate("production", {"cloud": cloud})
    service = _values(sim, "ingress-nginx")["controller"]["service"]
    assert service == {"externalTrafficPolicy": "Local", "annotations": annotations}
    gateway = simulate("production", {"cloud": cloud, "ingress.controller": "gateway"})
    [proxy] = gateway.of_type("EnvoyProxy")
    assert proxy.inputs["spec"]["provider"]["kubernetes"]["envoyService"] == service


def test_gateway_mode_gets_control_plane_certificates_from_cert_manager():
    sim = simulate("production", {"ingress.controller": "gateway"})
    certificates = {_meta(c)["name"]: c.inputs["spec"] for c in sim.of_type("Certificate") if _meta(c)["namespace"] == "envoy-gateway-system"}
    # The Secrets the chart's certgen hook would make (helm.v4.Chart runs no hooks).
    assert {"envoy-gateway", "envoy"} <= set(certificates)
    assert "envoy-gateway.envoy-gateway-system.svc" in certificates["envoy-gateway"]["dnsNames"]
    [gateway_class] = sim.of_type("GatewayClass")
    assert gateway_class.inputs["spec"]["parametersRef"]["kind"] == "EnvoyProxy"


def test_external_secrets_refresh_interval_reaches_every_external_secret():
    sim = simulate("production", {"addons.external-secrets.refreshInterval": "15m"})
    secrets = sim.of_type("ExternalSecret")
    assert secrets and {s.inputs["spec"]["refreshInterval"] for s in secrets} == {"15m"}


def test_migration_waits_for_its_external_secret_to_sync(production):
    secret = production.one("ExternalSecret", "clipper-production-backend-secrets")
    assert _meta(secret)["annotations"] == {"pulumi.com/waitFor": "condition=Ready"}
    job = production.one("Job", "clipper-production-backend-migrate")
    assert secret.urn in job.dependencies


def test_metrics_server_values_spread_two_replicas():
    values = _values(simulate("production", {"cloud": "eks"}), "metrics-server")
    assert values["replicas"] == 2 and values["podDisruptionBudget"]["minAvailable"] == 1
    assert len(values["topologySpreadConstraints"]) == 2


def test_charts_come_from_the_official_repositories_by_default(production):
    chart = production.one(CHART, "cert-manager").inputs
    assert chart["chart"] == "cert-manager" and chart["version"] == "v1.21.1"
    assert chart["repositoryOpts"] == {"repo": "https://charts.jetstack.io"}


def test_charts_come_from_the_mirror_folder_when_set(monkeypatch, charts_dir):
    monkeypatch.setenv("CLIPPER_CHARTS_DIR", str(charts_dir))
    chart = simulate("production").one(CHART, "cert-manager").inputs
    assert chart["chart"] == str(charts_dir / "cert-manager-v1.21.1")
    assert "repositoryOpts" not in chart and "version" not in chart


BAD_CHART_SOURCES = {
    "missing chart path": ({"addons.cert-manager.chartPath": "/nonexistent/cert-manager"}, "clipper: addons.cert-manager.chartPath: no chart at /nonexistent/cert-manager"),
    "version not in the mirror": ({"addons.cert-manager.version": "v1.99.0"}, "addons.cert-manager.version (looked up in $CLIPPER_CHARTS_DIR): no chart at"),
    "gateway without Envoy Gateway": (
        {"ingress.controller": "gateway", "addons.envoy-gateway.enabled": False},
        "addons.envoy-gateway.enabled: ingress.controller gateway needs Envoy Gateway",
    ),
    "gateway without cert-manager": (
        {"ingress.controller": "gateway", "addons.cert-manager.enabled": False},
        "addons.cert-manager.enabled: ingress.controller gateway needs cert-manager",
    ),
    "misspelt chart value": (
        {"addons.cert-manager.values": {"webhook": {"replicaCout": 3}}},
        "addons.cert-manager.values.webhook.replicaCout: not a key of cert-manager v1.21.1",
    ),
    "chart value of the wrong type": (
        {"addons.cert-manager.values": {"webhook": {"replicaCount": "two"}}},
        "addons.cert-manager.values: webhook.replicaCount: 'two' is not of type",
    ),
    "metrics-server on GKE": ({"addons.metrics-server.enabled": True}, "addons.metrics-server.enabled: gke runs its own metrics-server"),
}


@pytest.mark.parametrize("overrides,expected", BAD_CHART_SOURCES.values(), ids=BAD_CHART_SOURCES.keys())
def test_bad_add_on_input_fails_before_any_resource(monkeypatch, charts_dir, overrides, expected):
    monkeypatch.setenv("CLIPPER_CHARTS_DIR", str(charts_dir))
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", overrides)
    assert expected in str(failure.value) and "Pulumi.production.yaml" in str(failure.value)
    assert failure.value.registered == []


def test_a_chart_directory_of_another_version_is_refused(tmp_path, charts_dir):
    copy = tmp_path / "cert-manager"
    shutil.copytree(charts_dir / "cert-manager-v1.19.1", copy)
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", {"addons.cert-manager.chartPath": str(copy)})
    assert f"addons.cert-manager.version: pinned v1.21.1 but {copy} is version v1.19.1" in str(failure.value)
    assert failure.value.registered == []
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    (copy / "Chart.yaml").write_text(yaml.safe_dump({**meta, "version": "v1.21.1"}))
    assert simulate("production", {"addons.cert-manager.chartPath": str(copy)}).one(CHART, "cert-manager")


def test_external_secrets_controllers_elect_a_leader(production):
    values = _values(production, "external-secrets")
    # The chart runs its two controller replicas without leader election unless told (leaderElect: false).
    assert values["replicaCount"] == 2 and values["leaderElect"] is True


@pytest.mark.slow  # needs the toolchain's helm (make test builds it)
def test_external_secrets_deployments_have_probes_and_two_spread_replicas_each(production, charts_dir, tmp_path):
    """What the chart renders from our values: every Deployment (the cert controller included,
    which the chart ships with one replica and no liveness probe) has both probes, two replicas
    spread over zones and nodes, a PDB, and leader election where two replicas would both reconcile."""
    helm = helm_binary()
    assert helm is not None, "the toolchain's helm is missing: run `make toolchain` (make test does)"
    [install] = [c for c in chart_installs(production) if c.chart == "external-secrets"]
    docs = render_chart(install, charts_dir / f"external-secrets-{install.version}", helm, tmp_path)
    deployments = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == ["external-secrets", "external-secrets-cert-controller", "external-secrets-webhook"]
    budgets = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    for name, spec in deployments.items():
        [container] = spec["template"]["spec"]["containers"]
        assert container.get("livenessProbe") and container.get("readinessProbe"), name
        assert spec["replicas"] == 2, name
        assert {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]} == {
            "topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        assert spec["selector"]["matchLabels"] in budgets, name
    for name in ("external-secrets", "external-secrets-cert-controller"):
        assert "--enable-leader-election=true" in deployments[name]["template"]["spec"]["containers"][0]["args"], name
    # The controller's probes go to the health server the chart starts for them, on a port it declares.
    controller = deployments["external-secrets"]["template"]["spec"]["containers"][0]
    assert controller["livenessProbe"]["httpGet"]["port"] == "live"
    assert "live" in {p["name"] for p in controller["ports"]}
