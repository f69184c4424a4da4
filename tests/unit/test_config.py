"""Bad stack configuration fails the run with one message naming the key and the stack file,
before any resource is registered."""
import pytest

from infra.simulate import DELETE, ProgramFailed, simulate

BAD_CONFIG = {
    "missing key": ({"appNamespace": DELETE}, "clipper:appNamespace: required key is missing"),
    "wrong type": ({"apps.backend.port": "http"}, "clipper:apps.backend.port: Input should be a valid integer"),
    "unknown key": ({"apps.backend.replicaz": 2}, "clipper:apps.backend.replicaz: unknown key"),
    "unknown top-level key": ({"clusterr": {}}, "clipper:clusterr: unknown key"),
    "invalid CPU quantity": (
        {"apps.backend.resources.limits.cpu": "2 cores"},
        "clipper:apps.backend.resources.limits.cpu: '2 cores' is not a CPU quantity",
    ),
    "invalid memory quantity": (
        {"namespaces.clipper-production.quota.requestsMemory": "8GB"},
        "clipper:namespaces.clipper-production.quota.requestsMemory: '8GB' is not a memory quantity",
    ),
    "invalid memory quantity in an add-on's quota": (
        {"addons.monitoring.quota.requestsMemory": "8GB"},
        "clipper:addons.monitoring.quota.requestsMemory: '8GB' is not a memory quantity",
    ),
    "monitoring namespace declared beside the add-on": (
        {"namespaces.monitoring": {"podSecurity": "restricted"}},
        "namespaces.monitoring: addons.monitoring declares this namespace itself",
    ),
    "a backup RPO of monitoring's own": ({"addons.monitoring.backupRpo": "24h"}, "clipper:addons.monitoring.backupRpo: unknown key"),
    "Reloader asked for without External Secrets": (
        {"addons.reloader.enabled": True, "addons.external-secrets.enabled": False, "apps.backend.secrets": {}},
        "addons.reloader.enabled: Reloader rolls apps when External Secrets changes their Secrets",
    ),
    "image without a tag": (
        {"apps.frontend.image": "ghcr.io/clpr-tv/frontend"},
        "clipper:apps.frontend.image: image 'ghcr.io/clpr-tv/frontend' has no tag or digest",
    ),
    "image on latest": ({"apps.frontend.image": "ghcr.io/clpr-tv/frontend:latest"}, "mutable tag 'latest'"),
    "replicas below one": ({"apps.backend.replicas": 0}, "clipper:apps.backend.replicas: Input should be greater than or equal to 1"),
    "HPA min above max": (
        {"apps.backend.autoscaling.minReplicas": 12},
        "clipper:apps.backend.autoscaling: minReplicas (12) is greater than maxReplicas (10)",
    ),
    "unknown cloud": ({"cloud": "digitalocean"}, "clipper:cloud: Input should be"),
    "unknown add-on": ({"addons.traefik": {"version": "1.0.0"}}, "clipper:addons.traefik: unknown key"),
    "app namespace not declared": ({"appNamespace": "clipper-prod"}, "appNamespace: 'clipper-prod' is not one of namespaces"),
    "traffic to an unknown app": (
        {"network.appTraffic": [{"from": "frontend", "to": "payments", "port": 8080}]},
        "network.appTraffic.0.to: unknown app 'payments'",
    ),
    "secrets without External Secrets": (
        {"addons.external-secrets.enabled": False},
        "apps.backend.secrets: needs addons.external-secrets.enabled: true",
    ),
    "structured value that is not JSON": ({"apps": "{not json"}, "clipper:apps is not valid structured config"),
}


@pytest.mark.parametrize("overrides,expected", BAD_CONFIG.values(), ids=BAD_CONFIG.keys())
def test_bad_config_fails_naming_key_and_file_and_registers_nothing(overrides, expected):
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", overrides)
    message = str(failure.value)
    assert expected in message
    assert "Pulumi.production.yaml" in message
    assert failure.value.registered == []


def test_every_problem_is_reported_at_once():
    with pytest.raises(ProgramFailed) as failure:
        simulate("staging", {"apps.backend.replicas": 0, "apps.frontend.image": "nginx", "environment": "prod"})
    message = str(failure.value)
    assert "Pulumi.staging.yaml" in message
    for key in ("clipper:apps.backend.replicas", "clipper:apps.frontend.image", "clipper:environment"):
        assert key in message


def test_config_error_has_no_traceback_noise():
    # RunError is what the engine prints as a plain message, without the program's stack trace.
    from infra.config import ConfigError
    import pulumi

    assert issubclass(ConfigError, pulumi.RunError)
