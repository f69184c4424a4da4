"""Reading Kubernetes objects as Pulumi hands them to policies.

Properties arrive with wire names (``matchLabels``), numbers may be floats, and during a real run
dicts and lists are wrapped in pulumi_policy's unknown-checking proxies, which are ``Mapping`` and
``Sequence`` but not ``dict`` and ``list``: every helper here tests against the abstract types.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

NAMESPACE = "kubernetes:core/v1:Namespace"
POD = "kubernetes:core/v1:Pod"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
RESOURCE_QUOTA = "kubernetes:core/v1:ResourceQuota"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD_DISRUPTION_BUDGET = "kubernetes:policy/v1:PodDisruptionBudget"
HPA_TYPES = (
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
)
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
ROLE_TYPES = (ROLE, CLUSTER_ROLE)
BINDING_TYPES = (ROLE_BINDING, CLUSTER_ROLE_BINDING)

# Gateway API kinds are CRDs, so their type token carries the API version we do not want to pin.
GATEWAY_API_PREFIX = "kubernetes:gateway.networking.k8s.io/"

# Kinds whose pod template we check, and where that template sits in the object.
_POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    DEPLOYMENT: ("spec", "template", "spec"),
    STATEFUL_SET: ("spec", "template", "spec"),
    DAEMON_SET: ("spec", "template", "spec"),
    JOB: ("spec", "template", "spec"),
    CRON_JOB: ("spec", "jobTemplate", "spec", "template", "spec"),
    POD: ("spec",),
}
WORKLOAD_TYPES = tuple(_POD_SPEC_PATHS)
REPLICATED_TYPES = (DEPLOYMENT, STATEFUL_SET)
_RUN_TO_COMPLETION_TYPES = (JOB, CRON_JOB)

DEFAULT_NAMESPACE = "default"


def is_gateway_api_kind(resource_type: str, kind: str) -> bool:
    return resource_type.startswith(GATEWAY_API_PREFIX) and resource_type.endswith(":" + kind)


def mapping(value: Any) -> Mapping:
    """``value`` if it is an object, else an empty one, so lookups chain without None checks."""
    return value if isinstance(value, Mapping) else {}


def sequence(value: Any) -> Sequence:
    """``value`` if it is a list (strings excluded), else an empty one."""
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()


def get_path(obj: Any, *keys: str) -> Any:
    """The value at ``obj[k1][k2]...``, or None when any step is missing or not an object."""
    for key in keys:
        obj = mapping(obj).get(key)
    return obj


def labels(props: Mapping) -> Mapping:
    return mapping(get_path(props, "metadata", "labels"))


def annotations(props: Mapping) -> Mapping:
    return mapping(get_path(props, "metadata", "annotations"))


def object_name(resource: Any) -> str:
    """The Kubernetes name; falls back to the Pulumi name when metadata.name is left to auto-naming."""
    return get_path(resource.props, "metadata", "name") or resource.name


def object_namespace(resource: Any) -> str:
    return get_path(resource.props, "metadata", "namespace") or DEFAULT_NAMESPACE


def pod_spec(resource_type: str, props: Mapping) -> Optional[Mapping]:
    path = _POD_SPEC_PATHS.get(resource_type)
    return mapping(get_path(props, *path)) if path else None


def pod_template_labels(resource_type: str, props: Mapping) -> Mapping:
    if resource_type == POD:
        return labels(props)
    path = _POD_SPEC_PATHS.get(resource_type)
    return mapping(get_path(props, *path[:-1], "metadata", "labels")) if path else {}


def is_long_running(resource_type: str, spec: Mapping) -> bool:
    """Whether pods are expected to keep running (and so need probes); Jobs run to completion."""
    if resource_type in _RUN_TO_COMPLETION_TYPES:
        return False
    if resource_type == POD:
        return spec.get("restartPolicy", "Always") == "Always"
    return True


@dataclass(frozen=True)
class Container:
    name: str
    is_init: bool
    spec: Mapping

    @property
    def label(self) -> str:
        return f"{'init container' if self.is_init else 'container'} '{self.name}'"

    @property
    def security_context(self) -> Mapping:
        return mapping(self.spec.get("securityContext"))


def containers(spec: Mapping, include_init: bool = True) -> Iterator[Container]:
    for entry in sequence(spec.get("containers")):
        yield Container(str(mapping(entry).get("name", "?")), False, mapping(entry))
    if include_init:
        for entry in sequence(spec.get("initContainers")):
            yield Container(str(mapping(entry).get("name", "?")), True, mapping(entry))


def workload_containers(resource: Any) -> Iterator[Container]:
    """Every container and init container of a workload's pod template (none for other kinds)."""
    spec = pod_spec(resource.resource_type, resource.props)
    if spec is not None:
        yield from containers(spec)


def selector_matches(selector: Any, pod_labels: Mapping) -> bool:
    """Kubernetes label-selector semantics: an empty selector matches every pod, a missing one none."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in mapping(selector.get("matchLabels")).items():
        if pod_labels.get(key) != value:
            return False
    for expression in sequence(selector.get("matchExpressions")):
        expression = mapping(expression)
        key, operator = expression.get("key"), expression.get("operator")
        values = list(sequence(expression.get("values")))
        present = key in pod_labels
        if operator == "In" and not (present and pod_labels[key] in values):
            return False
        if operator == "NotIn" and present and pod_labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def is_empty_selector(selector: Any) -> bool:
    """True for ``{}`` (all pods), the selector a default-deny policy uses."""
    selector = mapping(selector) if selector is not None else None
    return (
        selector is not None
        and not mapping(selector.get("matchLabels"))
        and not sequence(selector.get("matchExpressions"))
    )
