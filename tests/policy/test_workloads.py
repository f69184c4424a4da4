import pytest

from policies import kube
from policies.rules import workloads as w
from tests.policy.builders import container, pod_spec, violations, workload

SECURE = container()["securityContext"]


def with_container(**fields):
    return workload(spec=pod_spec(containers=[container(**fields)]))


@pytest.mark.parametrize("rule", w.RULES, ids=lambda r: r.name)
@pytest.mark.parametrize("resource_type", kube.WORKLOAD_TYPES)
def test_compliant_workload_of_every_kind_passes_every_rule(rule, resource_type):
    assert violations(rule, resource_type, workload(resource_type)) == []


@pytest.mark.parametrize("rule, props, expected", [
    (w.CONTAINER_RESOURCES, with_container(resources={"requests": {"cpu": "1"}}),
     "container 'app' does not set resources requests.memory, limits.memory"),
    (w.CONTAINER_PROBES, with_container(livenessProbe=None), "container 'app' has no livenessProbe"),
    (w.RUN_AS_NON_ROOT, with_container(securityContext={**SECURE, "runAsNonRoot": False}),
     "container 'app' does not set runAsNonRoot: true (pod or container securityContext)"),
    (w.RUN_AS_NON_ROOT, with_container(securityContext={**SECURE, "runAsUser": 0}), "container 'app' runs as UID 0"),
    (w.NO_PRIVILEGE_ESCALATION, with_container(securityContext={**SECURE, "allowPrivilegeEscalation": True}),
     "container 'app' does not set allowPrivilegeEscalation: false"),
    (w.NO_PRIVILEGED_CONTAINERS, with_container(securityContext={**SECURE, "privileged": True}),
     "container 'app' is privileged"),
    (w.READ_ONLY_ROOT_FILESYSTEM, with_container(securityContext={**SECURE, "readOnlyRootFilesystem": False}),
     "container 'app' does not set readOnlyRootFilesystem: true"),
    (w.DROP_ALL_CAPABILITIES, with_container(securityContext={**SECURE, "capabilities": {"drop": ["NET_RAW"]}}),
     "container 'app' does not drop ALL capabilities"),
    (w.DROP_ALL_CAPABILITIES,
     with_container(securityContext={**SECURE, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}),
     "container 'app' adds capabilities SYS_ADMIN"),
    (w.NO_HOST_NAMESPACES, workload(spec=pod_spec(hostPID=True)), "pod spec sets hostPID: true"),
    (w.NO_HOST_PATH, workload(spec=pod_spec(volumes=[{"name": "sock", "hostPath": {"path": "/var/run"}}])),
     "volume 'sock' mounts hostPath /var/run"),
    (w.IMAGE_TAG_PINNED, with_container(image="ghcr.io/clipper/backend:latest"),
     "container 'app' image ghcr.io/clipper/backend:latest uses the mutable tag 'latest'"),
    (w.IMAGE_TAG_PINNED, with_container(image="ghcr.io/clipper/backend"),
     "container 'app' image ghcr.io/clipper/backend has no tag (which means latest)"),
    (w.IMAGE_ALLOWED_REGISTRY, with_container(image="docker.io/library/nginx:1.27"),
     "container 'app' image docker.io/library/nginx:1.27 is not from an allowed registry (ghcr.io/)"),
    (w.NO_TOKEN_AUTOMOUNT, workload(spec=pod_spec(automountServiceAccountToken=True)),
     "pod spec sets automountServiceAccountToken: True"),
])
def test_violating_deployment_is_reported(rule, props, expected):
    assert violations(rule, kube.DEPLOYMENT, props) == [expected]


def test_init_containers_are_checked_too():
    init = container("migrate", image="ghcr.io/clipper/migrate:latest", livenessProbe=None, readinessProbe=None)
    props = workload(kube.STATEFUL_SET, spec=pod_spec(initContainers=[init]))
    assert violations(w.IMAGE_TAG_PINNED, kube.STATEFUL_SET, props) == [
        "init container 'migrate' image ghcr.io/clipper/migrate:latest uses the mutable tag 'latest'"]
    # Init containers run to completion: they need no probes.
    assert violations(w.CONTAINER_PROBES, kube.STATEFUL_SET, props) == []


def test_jobs_need_no_probes_but_restartable_pods_do():
    no_probes = pod_spec(containers=[container(livenessProbe=None, readinessProbe=None)])
    assert violations(w.CONTAINER_PROBES, kube.CRON_JOB, workload(kube.CRON_JOB, no_probes)) == []
    assert violations(w.CONTAINER_PROBES, kube.POD, workload(kube.POD, {**no_probes, "restartPolicy": "Never"})) == []
    assert violations(w.CONTAINER_PROBES, kube.POD, workload(kube.POD, no_probes)) == [
        "container 'app' has no livenessProbe or readinessProbe"]


def test_pod_level_non_root_applies_unless_a_container_overrides_it():
    context = {k: v for k, v in SECURE.items() if k != "runAsNonRoot"}
    spec = pod_spec(securityContext={"runAsNonRoot": True}, containers=[container(securityContext=context)])
    assert violations(w.RUN_AS_NON_ROOT, kube.DEPLOYMENT, workload(spec=spec)) == []
    overridden = pod_spec(securityContext={"runAsNonRoot": True},
                          containers=[container(securityContext={**context, "runAsNonRoot": False})])
    assert len(violations(w.RUN_AS_NON_ROOT, kube.DEPLOYMENT, workload(spec=overridden))) == 1


def test_cpu_limit_is_required_only_when_configured():
    props = with_container(resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})
    assert violations(w.CONTAINER_RESOURCES, kube.DEPLOYMENT, props) == []
    assert violations(w.CONTAINER_RESOURCES, kube.DEPLOYMENT, props, {"requireCpuLimit": True}) == [
        "container 'app' does not set resources limits.cpu"]


def test_allowed_capabilities_accept_the_cap_prefix():
    props = with_container(securityContext={**SECURE, "capabilities": {"drop": ["all"], "add": ["CAP_NET_BIND_SERVICE"]}})
    assert violations(w.DROP_ALL_CAPABILITIES, kube.DEPLOYMENT, props) == []


@pytest.mark.parametrize("image, problem", [
    ("ghcr.io/clipper/backend:1.2.3", None),
    ("ghcr.io/clipper/backend@sha256:" + "a" * 64, None),
    ("ghcr.io/clipper/backend:latest@sha256:" + "a" * 64, None),
    ("registry.local:5000/backend", "has no tag (which means latest)"),
    ("registry.local:5000/backend:2.0", None),
    ("backend:LATEST", "uses the mutable tag 'latest'"),
    ("ghcr.io/clipper/backend@md5:abc", "is pinned by a digest that is not sha256"),
])
def test_image_pinning(image, problem):
    assert w.image_pinning_problem(image) == problem


def test_registry_allow_list_comes_from_config():
    props = with_container(image="registry.example.com/team/app:1.0")
    assert violations(w.IMAGE_ALLOWED_REGISTRY, kube.DEPLOYMENT, props, {"allowedRegistries": ["registry.example.com/team/"]}) == []


def test_service_accounts_must_not_automount_tokens():
    sa = kube.SERVICE_ACCOUNT
    assert violations(w.NO_TOKEN_AUTOMOUNT, sa, {"automountServiceAccountToken": False}) == []
    assert violations(w.NO_TOKEN_AUTOMOUNT, sa, {"metadata": {"name": "backend"}}) == [
        "ServiceAccount does not set automountServiceAccountToken (it defaults to true)"]


def test_automount_waiver_with_reason_is_honoured():
    waived = workload(spec=pod_spec(automountServiceAccountToken=True), annotations={
        "waiver.policy.clipper.dev/no-service-account-token-automount": "external-dns reads Services"})
    assert violations(w.NO_TOKEN_AUTOMOUNT, kube.DEPLOYMENT, waived) == []
