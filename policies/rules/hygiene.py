"""State hygiene: secret values must not be written into the program (and so into Pulumi state).

Messages name keys, never values: a violation report must not leak what it found.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from policies import kube
from policies.framework import ResourceRule


def _inline_secret_data(resource: Any, config: Mapping) -> Iterator[str]:
    # The policy SDK unwraps Pulumi secrets before rules see them, so a value marked secret cannot
    # be told from plain text here: any literal entry counts. Rendered manifests carry them in
    # plain text either way.
    for field in ("data", "stringData"):
        keys = sorted(str(k) for k in kube.mapping(resource.props.get(field)))
        if keys:
            yield f"Secret declares {field} keys {', '.join(keys)} in the program"


NO_PLAINTEXT_SECRET_DATA = ResourceRule(
    name="no-plaintext-secret-data",
    description="Kubernetes Secrets declared by the program carry no data or stringData.",
    rationale="Values written in the program land in Pulumi state and in rendered manifests; our "
    "apps get secrets from the cloud secret manager through External Secrets instead.",
    remediation="Create an ExternalSecret that syncs the value from the secret manager, and delete "
    "the Secret's data/stringData.",
    resource_types=(kube.SECRET,),
    check=_inline_secret_data,
)


def _secret_looking_env(resource: Any, config: Mapping) -> Iterator[str]:
    markers = [m.upper() for m in config["secretNameMarkers"]]
    for container in kube.workload_containers(resource):
        for entry in kube.sequence(container.spec.get("env")):
            entry = kube.mapping(entry)
            name = str(entry.get("name", ""))
            # valueFrom (secretKeyRef) is the right way; only a literal value is a leak.
            if entry.get("value") and any(m in name.upper() for m in markers):
                yield f"{container.label} sets env {name} to a literal value"


NO_PLAINTEXT_SECRET_ENV = ResourceRule(
    name="no-plaintext-secret-env",
    description="Environment variables whose names look secret (PASSWORD, TOKEN, API_KEY, ...) use valueFrom, not a literal value.",
    rationale="A literal env value is stored in Pulumi state, in the Deployment object (readable by "
    "anyone who can get Deployments) and in every rendered manifest.",
    remediation="Use env[].valueFrom.secretKeyRef pointing at a Secret synced by External Secrets.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_secret_looking_env,
    config_properties={
        "secretNameMarkers": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "default": ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY",
                        "ACCESS_KEY", "CREDENTIAL"],
            "description": "Substrings (case-insensitive) that mark an env var name as secret.",
        },
    },
)

RULES = [NO_PLAINTEXT_SECRET_DATA, NO_PLAINTEXT_SECRET_ENV]
