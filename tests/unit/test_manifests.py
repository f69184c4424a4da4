"""The objects the production stack declares pass independent checkers: the Kubernetes 1.33 API
schemas (strict) and checkov's Kubernetes checks, bar the commented skip list."""
import pytest

from infra.simulate import simulate
from tests.manifests import checkov_failures, schema_errors, write_manifests


@pytest.fixture(scope="module", params=["production", "staging"])
def manifests(request):
    return simulate(request.param).manifests()


def test_manifests_match_the_kubernetes_api_schemas(manifests):
    assert len(manifests) > 20
    assert schema_errors(manifests) == []


def test_schema_check_catches_what_it_should():
    bad = [
        {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "old"}, "spec": {}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two"}},
    ]
    errors = schema_errors(bad)
    assert len(errors) == 2 and "no schema" in errors[0] and "replicas" in errors[1]


@pytest.mark.slow
def test_manifests_pass_checkov(manifests, tmp_path):
    write_manifests(manifests, tmp_path)
    assert checkov_failures(tmp_path) == []


@pytest.mark.slow
def test_checkov_flags_an_insecure_deployment(tmp_path):
    insecure = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "insecure", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "nginx:1.27"}]}},
        },
    }
    write_manifests([insecure], tmp_path)
    failures = checkov_failures(tmp_path)
    assert any(f.startswith("CKV_K8S_20 ") for f in failures)  # allowPrivilegeEscalation
    assert any(f.startswith("CKV_K8S_11 ") for f in failures)  # CPU limits
