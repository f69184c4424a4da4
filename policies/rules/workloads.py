"""Pod-level security and resource hygiene for every workload kind (init containers included)."""

from collections.abc import Iterator, Mapping
from typing import Any, Optional

from policies import kube
from policies.framework import ResourceRule


def _pods(resource: Any) -> Iterator[Mapping]:
    spec = kube.pod_spec(resource.resource_type, resource.props)
    if spec is not None:
        yield spec


def _missing_resources(resource: Any, config: Mapping) -> Iterator[str]:
    wanted = [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")]
    if config["requireCpuLimit"]:
        wanted.append(("limits", "cpu"))
    for container in kube.workload_containers(resource):
        declared = kube.mapping(container.spec.get("resources"))
        missing = [f"{kind}.{what}" for kind, what in wanted if what not in kube.mapping(declared.get(kind))]
        if missing:
            yield f"{container.label} does not set resources {', '.join(missing)}"


CONTAINER_RESOURCES = ResourceRule(
    name="container-resources-required",
    description="Every container and init container sets CPU and memory requests and a memory limit.",
    rationale="Requests let the scheduler place pods and quotas account for them; a memory limit "
    "keeps one leaking pod from taking its node down with it.",
    remediation="Set resources.requests.cpu, resources.requests.memory and resources.limits.memory "
    "on each container (and limits.cpu when requireCpuLimit is on).",
    resource_types=kube.WORKLOAD_TYPES,
    check=_missing_resources,
    config_properties={
        "requireCpuLimit": {
            "type": "boolean",
            "default": False,
            "description": "Also require limits.cpu (off by default: CPU limits throttle bursts).",
        },
    },
)


def _missing_probes(resource: Any, config: Mapping) -> Iterator[str]:
    for spec in _pods(resource):
        if not kube.is_long_running(resource.resource_type, spec):
            continue
        for container in kube.containers(spec, include_init=False):
            missing = [p for p in ("livenessProbe", "readinessProbe") if not container.spec.get(p)]
            if missing:
                yield f"{container.label} has no {' or '.join(missing)}"


CONTAINER_PROBES = ResourceRule(
    name="container-probes-required",
    description="Long-running containers define liveness and readiness probes (Jobs and CronJobs are exempt).",
    rationale="Without readiness, traffic reaches pods that cannot serve and rollouts cannot tell "
    "a bad version from a good one; without liveness, a hung process is never restarted.",
    remediation="Add livenessProbe and readinessProbe (httpGet, tcpSocket, grpc or exec) to every "
    "app container of Deployments, StatefulSets, DaemonSets and restartable Pods.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_missing_probes,
)


def _root_containers(resource: Any, config: Mapping) -> Iterator[str]:
    for spec in _pods(resource):
        pod_context = kube.mapping(spec.get("securityContext"))
        for container in kube.containers(spec):
            # A container's securityContext overrides the pod's for these two fields.
            context = container.security_context
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
            user = context.get("runAsUser", pod_context.get("runAsUser"))
            if user is not None and user == 0:
                yield f"{container.label} runs as UID 0"
            elif non_root is not True:
                yield f"{container.label} does not set runAsNonRoot: true (pod or container securityContext)"


RUN_AS_NON_ROOT = ResourceRule(
    name="run-as-non-root",
    description="Containers run as a non-root user (runAsNonRoot: true, never runAsUser: 0).",
    rationale="Root in a container is root on the node's kernel; a container escape starts from "
    "far less when the process has an unprivileged UID. Pod Security 'restricted' requires it.",
    remediation="Set securityContext.runAsNonRoot: true on the pod (or each container), and a "
    "non-zero runAsUser if the image's default user is root.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_root_containers,
)


def _escalating_containers(resource: Any, config: Mapping) -> Iterator[str]:
    for container in kube.workload_containers(resource):
        if container.security_context.get("allowPrivilegeEscalation") is not False:
            yield f"{container.label} does not set allowPrivilegeEscalation: false"


NO_PRIVILEGE_ESCALATION = ResourceRule(
    name="no-privilege-escalation",
    description="Containers set allowPrivilegeEscalation: false.",
    rationale="Escalation is allowed unless switched off, letting setuid binaries gain privileges "
    "the container was not given.",
    remediation="Set securityContext.allowPrivilegeEscalation: false on every container.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_escalating_containers,
)


def _privileged_containers(resource: Any, config: Mapping) -> Iterator[str]:
    for container in kube.workload_containers(resource):
        if container.security_context.get("privileged") is True:
            yield f"{container.label} is privileged"


NO_PRIVILEGED_CONTAINERS = ResourceRule(
    name="no-privileged-containers",
    description="No container runs privileged.",
    rationale="A privileged container has every capability and all host devices: it is the node.",
    remediation="Remove securityContext.privileged (or set it false); grant a single capability "
    "instead if one is really needed, and waive drop-all-capabilities with a reason.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_privileged_containers,
)


def _writable_root_filesystems(resource: Any, config: Mapping) -> Iterator[str]:
    for container in kube.workload_containers(resource):
        if container.security_context.get("readOnlyRootFilesystem") is not True:
            yield f"{container.label} does not set readOnlyRootFilesystem: true"


READ_ONLY_ROOT_FILESYSTEM = ResourceRule(
    name="read-only-root-filesystem",
    description="Containers mount their root filesystem read-only.",
    rationale="An attacker who cannot write to the image's filesystem cannot drop tools or alter "
    "binaries; writable scratch space is explicit (emptyDir) instead.",
    remediation="Set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where the "
    "app needs to write (e.g. /tmp).",
    resource_types=kube.WORKLOAD_TYPES,
    check=_writable_root_filesystems,
)


def _normalised_capability(name: Any) -> str:
    # Kubernetes accepts both NET_BIND_SERVICE and CAP_NET_BIND_SERVICE.
    text = str(name).upper()
    return text[len("CAP_"):] if text.startswith("CAP_") else text


def _capability_problems(resource: Any, config: Mapping) -> Iterator[str]:
    allowed = {_normalised_capability(c) for c in config["allowedAddedCapabilities"]}
    for container in kube.workload_containers(resource):
        capabilities = kube.mapping(container.security_context.get("capabilities"))
        dropped = {_normalised_capability(c) for c in kube.sequence(capabilities.get("drop"))}
        if "ALL" not in dropped:
            yield f"{container.label} does not drop ALL capabilities"
        added = sorted(_normalised_capability(c) for c in kube.sequence(capabilities.get("add")))
        extra = [c for c in added if c not in allowed]
        if extra:
            yield f"{container.label} adds capabilities {', '.join(extra)}"


DROP_ALL_CAPABILITIES = ResourceRule(
    name="drop-all-capabilities",
    description="Containers drop ALL Linux capabilities and add back only allowed ones.",
    rationale="The runtime's default capability set (e.g. NET_RAW) is more than apps need and "
    "is a common step in container escapes.",
    remediation="Set securityContext.capabilities.drop: [ALL]; add back only capabilities listed "
    "in allowedAddedCapabilities (e.g. NET_BIND_SERVICE).",
    resource_types=kube.WORKLOAD_TYPES,
    check=_capability_problems,
    config_properties={
        "allowedAddedCapabilities": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["NET_BIND_SERVICE"],
            "description": "Capabilities a container may add back after dropping ALL.",
        },
    },
)


def _host_namespaces(resource: Any, config: Mapping) -> Iterator[str]:
    for spec in _pods(resource):
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(field) is True:
                yield f"pod spec sets {field}: true"


NO_HOST_NAMESPACES = ResourceRule(
    name="no-host-namespaces",
    description="Pods do not share the node's network, PID or IPC namespace.",
    rationale="hostNetwork bypasses NetworkPolicies and exposes node-local services; hostPID and "
    "hostIPC let a pod see and signal every process on the node.",
    remediation="Remove hostNetwork, hostPID and hostIPC from the pod spec; expose ports through a Service.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_host_namespaces,
)


def _host_path_volumes(resource: Any, config: Mapping) -> Iterator[str]:
    for spec in _pods(resource):
        for volume in kube.sequence(spec.get("volumes")):
            volume = kube.mapping(volume)
            if "hostPath" in volume:
                path = kube.get_path(volume, "hostPath", "path")
                yield f"volume '{volume.get('name', '?')}' mounts hostPath {path}"


NO_HOST_PATH = ResourceRule(
    name="no-host-path-volumes",
    description="Pods do not mount hostPath volumes.",
    rationale="A hostPath mount reads or writes the node's filesystem (kubelet credentials, the "
    "container runtime socket), outside any isolation.",
    remediation="Use emptyDir, a ConfigMap/Secret volume or a PersistentVolumeClaim instead.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_host_path_volumes,
)


def image_pinning_problem(image: str) -> Optional[str]:
    """Why an image reference is not pinned, or None. A sha256 digest pins whatever the tag says."""
    if "@sha256:" in image:
        return None
    if "@" in image:
        return "is pinned by a digest that is not sha256"
    # The tag is after the last ':' of the last path segment (a ':' earlier is a registry port).
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return "has no tag (which means latest)"
    if last_segment.rsplit(":", 1)[1].lower() == "latest":
        return "uses the mutable tag 'latest'"
    return None


def _unpinned_images(resource: Any, config: Mapping) -> Iterator[str]:
    for container in kube.workload_containers(resource):
        image = container.spec.get("image")
        if not isinstance(image, str) or not image:
            yield f"{container.label} has no image"
            continue
        problem = image_pinning_problem(image)
        if problem:
            yield f"{container.label} image {image} {problem}"


IMAGE_TAG_PINNED = ResourceRule(
    name="image-tag-pinned",
    description="Container images carry an explicit tag other than 'latest', or a sha256 digest.",
    rationale="'latest' (and no tag at all) changes under a running Deployment: nodes pull "
    "different code for the same spec, and a rollback does not roll anything back.",
    remediation="Reference images as registry/repo:version or registry/repo@sha256:<digest>.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_unpinned_images,
)


def _foreign_images(resource: Any, config: Mapping) -> Iterator[str]:
    prefixes = tuple(config["allowedRegistries"])
    for container in kube.workload_containers(resource):
        image = container.spec.get("image")
        if isinstance(image, str) and image and not image.startswith(prefixes):
            yield f"{container.label} image {image} is not from an allowed registry ({', '.join(prefixes)})"


IMAGE_ALLOWED_REGISTRY = ResourceRule(
    name="image-allowed-registry",
    description="Container images come from an allowed registry.",
    rationale="Images from registries we do not control can change or vanish, and skip our "
    "build provenance and vulnerability scanning.",
    remediation="Mirror the image into an allowed registry, or add the registry prefix to "
    "allowedRegistries in the stack's policy config after review.",
    resource_types=kube.WORKLOAD_TYPES,
    check=_foreign_images,
    config_properties={
        "allowedRegistries": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "default": ["ghcr.io/"],
            "description": "Image reference prefixes that are allowed, e.g. 'ghcr.io/clipper/'.",
        },
    },
)


def _token_automount(resource: Any, config: Mapping) -> Iterator[str]:
    if resource.resource_type == kube.SERVICE_ACCOUNT:
        holder, value = "ServiceAccount", resource.props.get("automountServiceAccountToken")
    else:
        spec = kube.pod_spec(resource.resource_type, resource.props)
        holder, value = "pod spec", kube.mapping(spec).get("automountServiceAccountToken")
    if value is None:
        yield f"{holder} does not set automountServiceAccountToken (it defaults to true)"
    elif value is not False:
        yield f"{holder} sets automountServiceAccountToken: {value}"


NO_TOKEN_AUTOMOUNT = ResourceRule(
    name="no-service-account-token-automount",
    description="Pod specs and ServiceAccounts set automountServiceAccountToken: false.",
    rationale="Most apps never call the Kubernetes API; a mounted token is a credential an attacker "
    "gets for free. Pods that need one (operators, controllers) say so with a waiver.",
    remediation="Set automountServiceAccountToken: false on the pod spec and the ServiceAccount, or "
    "annotate the resource with waiver.policy.clipper.dev/no-service-account-token-automount: "
    "\"<why it needs the API>\".",
    resource_types=(*kube.WORKLOAD_TYPES, kube.SERVICE_ACCOUNT),
    check=_token_automount,
)

RULES = [
    CONTAINER_RESOURCES,
    CONTAINER_PROBES,
    RUN_AS_NON_ROOT,
    NO_PRIVILEGE_ESCALATION,
    NO_PRIVILEGED_CONTAINERS,
    READ_ONLY_ROOT_FILESYSTEM,
    DROP_ALL_CAPABILITIES,
    NO_HOST_NAMESPACES,
    NO_HOST_PATH,
    IMAGE_TAG_PINNED,
    IMAGE_ALLOWED_REGISTRY,
    NO_TOKEN_AUTOMOUNT,
]
