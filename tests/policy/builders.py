"""Builders for policy unit tests: validation args, and compliant Kubernetes objects to mutate.

Props are wrapped in pulumi_policy's unknown-checking proxy, as in a real run, so rules are tested
against Mapping/Sequence proxies rather than plain dicts. Rule config is passed in full (schema
defaults plus overrides): outside the CLI nobody fills defaults in.
"""

import copy
from typing import Any, Optional

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policies import kube
from policies.framework import ResourceRule, StackRule, config_defaults

IMAGE = "ghcr.io/clipper/backend:1.4.2"


def urn(resource_type: str, name: str, parent_type: Optional[str] = None) -> str:
    chain = f"{parent_type}${resource_type}" if parent_type else resource_type
    return f"urn:pulumi:test::clipper::{chain}::{name}"


def full_config(rule: Any, **overrides: Any) -> dict[str, Any]:
    return {**config_defaults(rule.config_schema), **overrides}


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def policy_resource(resource_type: str, props: dict, name: str = "subject", parent_type: Optional[str] = None) -> PolicyResource:
    return PolicyResource(resource_type, unknown_checking_proxy(copy.deepcopy(props)),
                          urn(resource_type, name, parent_type), name, _options(), None, None, [], {})


def violations(rule: ResourceRule, resource_type: str, props: dict, config: Optional[dict] = None,
               name: str = "subject", parent_type: Optional[str] = None) -> list[str]:
    """Messages ``rule`` reports for one resource."""
    found: list[str] = []
    args = ResourceValidationArgs(
        resource_type, unknown_checking_proxy(copy.deepcopy(props)), urn(resource_type, name, parent_type), name,
        _options(), None, full_config(rule, **(config or {})),
    )
    rule.validate(args, lambda message, _urn=None: found.append(message))
    return found


def stack_violations(rule: StackRule, resources: list[PolicyResource], config: Optional[dict] = None) -> list[tuple[Optional[str], str]]:
    """(urn, message) pairs ``rule`` reports for a stack."""
    found: list[tuple[Optional[str], str]] = []
    args = StackValidationArgs(resources, full_config(rule, **(config or {})))
    rule.validate(args, lambda message, blamed=None: found.append((blamed, message)))
    return found


def meta(name: str, namespace: Optional[str] = "apps", labels: Optional[dict] = None,
         annotations: Optional[dict] = None) -> dict:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def container(name: str = "app", **fields: Any) -> dict:
    """A container every workload rule accepts; keyword arguments replace whole fields."""
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    spec = {
        "name": name,
        "image": IMAGE,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "livenessProbe": probe,
        "readinessProbe": probe,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    spec.update(fields)
    return spec


def pod_spec(**fields: Any) -> dict:
    spec = {
        "automountServiceAccountToken": False,
        "containers": [container()],
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "backend"}},
        }],
    }
    spec.update(fields)
    return spec


def workload(resource_type: str = kube.DEPLOYMENT, spec: Optional[dict] = None, name: str = "backend",
             namespace: str = "apps", replicas: Optional[int] = 2, annotations: Optional[dict] = None) -> dict:
    """Props of any workload kind whose pod template is ``spec`` (a compliant one by default)."""
    spec = pod_spec() if spec is None else spec
    pod_labels = {"app": name}
    template = {"metadata": {"labels": pod_labels}, "spec": spec}
    props: dict[str, Any] = {"metadata": meta(name, namespace, annotations=annotations)}
    if resource_type == kube.POD:
        props["metadata"]["labels"] = pod_labels
        props["spec"] = spec
    elif resource_type == kube.CRON_JOB:
        props["spec"] = {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}
    elif resource_type == kube.JOB:
        props["spec"] = {"template": template}
    else:
        props["spec"] = {"selector": {"matchLabels": pod_labels}, "template": template}
        if replicas is not None and resource_type != kube.DAEMON_SET:
            props["spec"]["replicas"] = replicas
    return props
