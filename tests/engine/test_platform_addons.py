"""The whole platform, every add-on on, through the real engine: the official charts (from
$CLIPPER_CHARTS_DIR) rendered by helm.v4.Chart, and every custom resource we declare sent to a
real API server, which validates it against the charts' CRDs.

The local API server runs without admission webhooks (toolchain/cluster.sh): kwok runs no
containers, so cert-manager's, External Secrets' and ingress-nginx's webhooks could never answer.
CRD schema validation and strict field validation are the API server's own.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from infra.rendered import rendered_objects
from tests.charts import charts_dir
from tests.engine.engine import ROOT, kubectl, preview_changes
from tests.manifests import CHART_CHECKOV_SKIPS, checkov_failures, schema_errors

STACK = "local-platform"
CUSTOM_KINDS = {"ClusterIssuer", "Certificate", "ClusterSecretStore", "ExternalSecret", "Issuer",
                "Gateway", "GatewayClass", "HTTPRoute", "EnvoyProxy"}
OLD_VERSIONS = {"ingress-nginx": "4.13.3", "cert-manager": "v1.19.1", "external-secrets": "0.20.4",
                "metrics-server": "3.13.0", "envoy-gateway": "v1.5.4"}


@pytest.fixture
def platform(project):
    project.env["CLIPPER_CHARTS_DIR"] = str(charts_dir())
    project.init(STACK)
    return project


def _summary(docs: list[dict]) -> dict:
    return {
        "objects": len(docs),
        "crds": sum(d["kind"] == "CustomResourceDefinition" for d in docs),
        "custom": sum(d["kind"] in CUSTOM_KINDS for d in docs),
    }


@pytest.mark.parametrize("controller", ["nginx", "gateway"])
def test_render_mode_writes_chart_objects_that_pass_the_checkers(platform, controller):
    platform.set(STACK, "ingress.controller", controller)
    platform.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=900)
    docs = rendered_objects(platform.dir / ".state/render" / STACK)
    kinds = Counter(d["kind"] for d in docs)
    print(f"{controller}: {_summary(docs)}")
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert {"cert-manager", "cert-manager-webhook", "cert-manager-cainjector", "external-secrets", "metrics-server"} <= deployments
    assert ("ingress-nginx-controller" in deployments) == (controller == "nginx")
    assert ("envoy-gateway" in deployments) == (controller == "gateway")
    assert kinds["CustomResourceDefinition"] >= 6 + 25
    assert schema_errors(docs) == []
    assert checkov_failures(platform.dir / ".state/render" / STACK, CHART_CHECKOV_SKIPS) == []
    assert preview_changes(platform.ok("preview", "--stack", STACK, "--json", timeout=900).json()) == {}


def _get(kubeconfig, *args) -> dict:
    return json.loads(kubectl(kubeconfig, "get", *args, "-o", "json"))


def _names(kubeconfig, *args) -> set[str]:
    return {i["metadata"]["name"] for i in _get(kubeconfig, *args)["items"]}


def _assert_platform_live(kubeconfig, controller: str) -> None:
    crds = _names(kubeconfig, "crd")
    assert {"certificates.cert-manager.io", "clusterissuers.cert-manager.io", "externalsecrets.external-secrets.io",
            "clustersecretstores.external-secrets.io"} <= crds
    assert _names(kubeconfig, "clusterissuers.cert-manager.io") == {"letsencrypt-staging", "letsencrypt-production"}
    assert _names(kubeconfig, "clustersecretstores.external-secrets.io") == {"cloud-secrets"}
    assert _names(kubeconfig, "externalsecrets.external-secrets.io", "-n", "clipper-local") == {"backend-secrets"}
    assert _names(kubeconfig, "certificates.cert-manager.io", "-n", "clipper-local") == {"backend", "frontend"}
    for namespace, deployment in (("cert-manager", "cert-manager-webhook"), ("external-secrets", "external-secrets"),
                                  ("metrics-server", "metrics-server")):
        status = _get(kubeconfig, "deployment", deployment, "-n", namespace)["status"]
        assert status.get("readyReplicas") == 2, f"{namespace}/{deployment} not Ready: {status}"
    for namespace in ("cert-manager", "external-secrets", "metrics-server", "clipper-local"):
        assert "default-deny" in _names(kubeconfig, "networkpolicy", "-n", namespace)
    if controller == "gateway":
        assert {"gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io"} <= crds
        assert _names(kubeconfig, "httproutes.gateway.networking.k8s.io", "-n", "clipper-local") == {
            "backend", "frontend", "https-redirect"}
        assert _names(kubeconfig, "gateways.gateway.networking.k8s.io", "-n", "clipper-local") == {"public"}
        assert not _names(kubeconfig, "ingress", "-n", "clipper-local")
        assert not kubectl(kubeconfig, "get", "namespace", "ingress-nginx", "--ignore-not-found", "-o", "name").strip() or \
            kubectl(kubeconfig, "get", "namespace", "ingress-nginx", "-o", "jsonpath={.status.phase}") == "Terminating"
    else:
        assert _names(kubeconfig, "ingress", "-n", "clipper-local") == {"backend", "frontend"}
        status = _get(kubeconfig, "deployment", "ingress-nginx-controller", "-n", "ingress-nginx")["status"]
        assert status.get("readyReplicas") == 2


def _on_local_api_server(platform, kubeconfig, **existing) -> None:
    platform.set(STACK, "existing", {**platform.stack_config(STACK)["clipper:existing"], "mode": "cluster",
                                     "kubeconfig": str(kubeconfig), **existing})
    # kwok runs no metrics-server container, so its APIService (v1beta1.metrics.k8s.io) could never
    # become Available, and an aggregated API nobody serves stalls every namespace deletion in the
    # cluster (the namespace controller cannot list that group). Everything else of the chart stays.
    platform.set(STACK, "addons.metrics-server.values", {"apiService": {"create": False}})


def test_upgrade_from_the_old_pins_then_switch_to_gateway(platform, own_cluster):
    """The runbook's "Update operators", and the move off the retired ingress-nginx."""
    _on_local_api_server(platform, own_cluster)
    for addon, version in OLD_VERSIONS.items():
        platform.set(STACK, f"addons.{addon}.version", version)
    try:
        platform.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=1200)
        crd = _get(own_cluster, "crd", "certificates.cert-manager.io")
        assert crd["metadata"]["labels"]["app.kubernetes.io/version"] == "v1.19.1"
        _assert_platform_live(own_cluster, "nginx")

        pinned = yaml.safe_load((ROOT / f"Pulumi.{STACK}.yaml").read_text())["config"]["clipper:addons"]
        for addon in OLD_VERSIONS:  # back to the versions the repo pins
            platform.set(STACK, f"addons.{addon}.version", pinned[addon]["version"])
        platform.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=1200)
        crd = _get(own_cluster, "crd", "certificates.cert-manager.io")
        assert crd["metadata"]["labels"]["app.kubernetes.io/version"] == "v1.21.1"
        _assert_platform_live(own_cluster, "nginx")
        assert preview_changes(platform.ok("preview", "--stack", STACK, "--json", timeout=900).json()) == {}

        platform.set(STACK, "ingress.controller", "gateway")
        platform.ok("up", "--stack", STACK, "--yes", "--skip-preview", timeout=1200)
        _assert_platform_live(own_cluster, "gateway")
        assert preview_changes(platform.ok("preview", "--stack", STACK, "--json", timeout=900).json()) == {}
    finally:
        platform.pulumi("destroy", "--stack", STACK, "--yes", "--skip-preview", timeout=1200)


def test_a_misspelt_field_of_a_custom_resource_is_refused_by_the_api_server(platform, own_cluster):
    store = platform.stack_config(STACK)["clipper:existing"]["secretStore"]
    _on_local_api_server(platform, own_cluster, secretStore={"fake": {"dataa": store["fake"]["data"]}})
    try:
        failed = platform.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", timeout=1200)
        assert failed.returncode != 0
        assert "dataa" in failed.output, failed.output[-3000:]
        assert not _names(own_cluster, "clustersecretstores.external-secrets.io")
    finally:
        platform.pulumi("destroy", "--stack", STACK, "--yes", "--skip-preview", timeout=1200)
