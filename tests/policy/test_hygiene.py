from policies import kube
from policies.rules import hygiene as h
from tests.policy.builders import container, meta, pod_spec, violations, workload


def test_secrets_declared_by_the_program_carry_no_data():
    empty = {"metadata": meta("tls"), "type": "kubernetes.io/tls"}
    assert violations(h.NO_PLAINTEXT_SECRET_DATA, kube.SECRET, empty) == []
    inline = {"metadata": meta("db"), "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "app"}}
    found = violations(h.NO_PLAINTEXT_SECRET_DATA, kube.SECRET, inline)
    assert found == ["Secret declares data keys password in the program", "Secret declares stringData keys user in the program"]
    assert "aHVudGVyMg" not in " ".join(found)


def env_workload(*env):
    return workload(spec=pod_spec(containers=[container(env=list(env))]))


def test_secret_looking_env_vars_must_use_value_from():
    fine = env_workload({"name": "LOG_LEVEL", "value": "info"},
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}})
    assert violations(h.NO_PLAINTEXT_SECRET_ENV, kube.DEPLOYMENT, fine) == []
    leaky = env_workload({"name": "stripe_api_key", "value": "sk_live_123"}, {"name": "GITHUB_TOKEN", "value": "ghp_x"})
    assert violations(h.NO_PLAINTEXT_SECRET_ENV, kube.DEPLOYMENT, leaky) == [
        "container 'app' sets env stripe_api_key to a literal value",
        "container 'app' sets env GITHUB_TOKEN to a literal value"]


def test_secret_name_markers_come_from_config():
    props = env_workload({"name": "SIGNING_SALT", "value": "x"})
    assert violations(h.NO_PLAINTEXT_SECRET_ENV, kube.DEPLOYMENT, props) == []
    assert len(violations(h.NO_PLAINTEXT_SECRET_ENV, kube.DEPLOYMENT, props, {"secretNameMarkers": ["SALT"]})) == 1
