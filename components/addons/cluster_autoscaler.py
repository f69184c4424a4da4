"""ClusterAutoscaler: Kubernetes Cluster Autoscaler for EKS managed node groups, declared as our own
objects (no chart), in kube-system as the ServiceAccount its IRSA role trusts.

EKS never resizes a managed node group by itself. Cluster Autoscaler adds nodes when pods cannot
be scheduled and removes nodes whose pods fit elsewhere, within each group's minNodes..maxNodes.
It finds this cluster's groups by the tags EKS puts on their Auto Scaling groups
(`k8s.io/cluster-autoscaler/enabled`, `k8s.io/cluster-autoscaler/<cluster>`), and reads an empty
group's labels and taints from `eks:DescribeNodegroup`, so the spot pool scales up from zero for
pods that tolerate its taint. docs/clouds.md says why Cluster Autoscaler rather than Karpenter or
EKS Auto Mode.

RBAC follows the upstream AWS example manifest and chart (kubernetes/autoscaler
cluster-autoscaler/cloudprovider/aws/examples/cluster-autoscaler-autodiscover.yaml,
charts/cluster-autoscaler/templates/{clusterrole,role}.yaml), narrowed: no `extensions` API group
(not served since Kubernetes 1.22), no Endpoints (leader election uses a Lease), Jobs read but not
patched, and its writes (the status ConfigMap, the Lease) only on its own objects in its own
namespace.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.addons.helm_addon import API_SERVER_PORTS, ClusterNetwork
from components.addons.spread import topology_spread
from components.cluster.base import POOL_LABEL, NodeAutoscaler
from components.meta import app_selector, platform_labels
from components.network_policy import dns_egress, ip_blocks, port
from components.pod_security import restricted_container
from components.settings import ComputeResources, ResourceRequirements, Settings

NAME = "cluster-autoscaler"
IMAGE_REPOSITORY = "registry.k8s.io/autoscaling/cluster-autoscaler"
METRICS_PORT = 8085  # metrics and /health-check
STATUS_CONFIGMAP = "cluster-autoscaler-status"
# The priority expander reads this ConfigMap (name fixed upstream) in its own namespace: regexes of
# node group names by priority, highest first. EKS names a managed node group's Auto Scaling group
# `eks-<node group>-<uuid>`, and our spot group's name starts `spot-` (components/cluster/eks).
PRIORITY_CONFIGMAP = "cluster-autoscaler-priority-expander"
SPOT_FIRST = "50:\n  - ^eks-spot-.*\n10:\n  - .*\n"
WAIVERS = {
    "waiver.policy.clipper.dev/image-allowed-registry": "official image (registry.k8s.io/autoscaling, built by SIG Autoscaling)",
    "waiver.policy.clipper.dev/no-service-account-token-automount": "Cluster Autoscaler watches pods and nodes, "
    "taints and drains nodes and elects a leader through the API",
    # checkov's own spelling of the same waiver (tests/checkov-skips.txt is for every object).
    "checkov.io/skip1": "CKV_K8S_38=Cluster Autoscaler works through the Kubernetes API",
}
_VERSION = re.compile(r"^v1\.(\d+)\.\d+$")
_DURATION = r"^\d+[smh]$"


class ScaleDownSettings(Settings):
    enabled: bool = Field(default=True, description="Remove nodes whose pods fit on other nodes.")
    delay_after_add: str = Field(default="10m", pattern=_DURATION, description="No scale-down this long after a scale-up.")
    unneeded_time: str = Field(default="10m", pattern=_DURATION, description="How long a node stays unneeded before it goes.")
    utilization_threshold: float = Field(
        default=0.5, gt=0, le=1, description="A node below this share of requested CPU and memory is a candidate for removal."
    )
    skip_nodes_with_local_storage: bool = Field(
        default=False,
        description="true: never remove a node running a pod with an emptyDir or hostPath volume. false (default): "
        "the apps' emptyDir volumes are scratch space under a read-only root filesystem, so with true no node "
        "running an app would ever be removed.",
    )


class ClusterAutoscalerSettings(Settings):
    enabled: Optional[bool] = Field(
        default=None,
        description="Run Cluster Autoscaler. Unset: where the cluster needs one (EKS); GKE and AKS scale their pools "
        "themselves, and a cluster made elsewhere scales its own nodes.",
    )
    version: str = Field(
        default="v1.33.5",
        pattern=_VERSION.pattern,
        description=f"Tag of {IMAGE_REPOSITORY}; its minor must be the cluster's Kubernetes minor (eks.kubernetesVersion).",
    )
    repository: str = Field(default=IMAGE_REPOSITORY, min_length=1, description="Image repository (a mirror of the official image).")
    replicas: int = Field(default=2, ge=1, description="Pods; one leads (leader election), the others stand by.")
    expander: Literal["least-waste", "least-nodes", "most-pods", "random"] = Field(
        default="least-waste",
        description="Which node group grows when several could take the pending pods: least-waste leaves the least "
        "idle CPU and memory.",
    )
    spot_first: bool = Field(
        default=True,
        description="Grow the spot pool first when it can take the pending pods (apps with `spot: true` tolerate its "
        "taint; other pods never fit there), then choose by `expander`. Without it the expander alone chooses, and "
        "rarely picks the spot pool.",
    )
    scale_down: ScaleDownSettings = ScaleDownSettings()
    resources: ResourceRequirements = ResourceRequirements(
        requests=ComputeResources(cpu="100m", memory="300Mi"), limits=ComputeResources(cpu="500m", memory="600Mi")
    )

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.version}"

    @property
    def kubernetes_minor(self) -> str:
        return "1." + _VERSION.match(self.version).group(1)


def cluster_autoscaler_problems(s: ClusterAutoscalerSettings, cloud: str, kubernetes_version: Optional[str]) -> list[str]:
    """Why Cluster Autoscaler cannot run as configured on `cloud` (empty when it can, or is off)."""
    key = "addons.cluster-autoscaler"
    if cloud != "eks":
        if s.enabled:
            return [f"{key}.enabled: only for cloud: eks; {cloud} scales its node pools itself: leave the key unset"]
        return []
    if s.enabled is not False and s.kubernetes_minor != kubernetes_version:
        # Each release is built and tested against one Kubernetes minor (its scheduler code is that minor's).
        return [
            f"{key}.version: {s.version} is for Kubernetes {s.kubernetes_minor} but eks.kubernetesVersion is "
            f"{kubernetes_version}: use a v{kubernetes_version}.x release (change both together on upgrades)"
        ]
    return []


def flags(s: ClusterAutoscalerSettings, cluster_name: str) -> list[str]:
    d = s.scale_down
    return [
        "--cloud-provider=aws",
        f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{cluster_name}",
        # Groups alike but for their zone share the nodes added (ours span zones, so rarely applies).
        "--balance-similar-node-groups=true",
        f"--expander={'priority,' if s.spot_first else ''}{s.expander}",
        f"--scale-down-enabled={str(d.enabled).lower()}",
        f"--scale-down-delay-after-add={d.delay_after_add}",
        f"--scale-down-unneeded-time={d.unneeded_time}",
        f"--scale-down-utilization-threshold={d.utilization_threshold:g}",
        f"--skip-nodes-with-local-storage={str(d.skip_nodes_with_local_storage).lower()}",
        "--leader-elect=true",  # a Lease named cluster-autoscaler in kube-system
        "--logtostderr=true",
        "--stderrthreshold=info",
    ]


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: Optional[list[str]] = None) -> dict:
    rule = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


READ = ["get", "list", "watch"]
CLUSTER_RULES = [
    _rule([""], ["events"], ["create", "patch"]),
    _rule([""], ["pods/eviction"], ["create"]),  # drains a node before removing it
    _rule([""], ["pods/status"], ["update"]),
    _rule([""], ["nodes"], [*READ, "update"]),  # taints a node it is about to remove
    _rule([""], ["namespaces", "pods", "services", "replicationcontrollers", "persistentvolumeclaims", "persistentvolumes"], READ),
    _rule([""], ["configmaps"], ["list", "watch"]),  # read-only, cluster-wide in both upstream manifests
    _rule(["apps"], ["daemonsets", "replicasets", "statefulsets"], READ),
    _rule(["batch"], ["jobs", "cronjobs"], READ),
    _rule(["policy"], ["poddisruptionbudgets"], ["list", "watch"]),
    _rule(["storage.k8s.io"], ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities", "volumeattachments"], READ),
]
NAMESPACE_RULES = [
    _rule([""], ["configmaps"], ["create"]),  # create cannot be limited by name
    _rule([""], ["configmaps"], ["get", "update", "delete"], [STATUS_CONFIGMAP]),
    _rule([""], ["configmaps"], ["get"], [PRIORITY_CONFIGMAP]),
    _rule(["coordination.k8s.io"], ["leases"], ["create"]),
    _rule(["coordination.k8s.io"], ["leases"], ["get", "update"], [NAME]),
]


@dataclass
class ClusterAutoscalerArgs:
    settings: ClusterAutoscalerSettings
    autoscaler: NodeAutoscaler  # the cluster, its region, and the identity allowed to resize its groups
    network: ClusterNetwork


class ClusterAutoscaler(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:ClusterAutoscaler", name, None, opts)
        s, identity = args.settings, args.autoscaler.identity
        self.namespace = identity.namespace
        child = pulumi.ResourceOptions(parent=self)
        labels = {**platform_labels("node-autoscaler", NAME)}
        meta = {"name": NAME, "namespace": self.namespace, "labels": labels}
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata={**meta, "name": identity.service_account, "annotations": identity.service_account_annotations},
            automount_service_account_token=False,  # the pod asks for the token itself
            opts=child,
        )
        subject = {"kind": "ServiceAccount", "name": identity.service_account, "namespace": self.namespace}
        cluster_role = k8s.rbac.v1.ClusterRole(f"{name}-cluster-role", metadata={"name": NAME, "labels": labels}, rules=CLUSTER_RULES, opts=child)
        role = k8s.rbac.v1.Role(f"{name}-role", metadata=meta, rules=NAMESPACE_RULES, opts=child)
        bindings = [
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-cluster-role-binding",
                metadata={"name": NAME, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
                subjects=[subject],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_role]),
            ),
            k8s.rbac.v1.RoleBinding(
                f"{name}-role-binding",
                metadata=meta,
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
                subjects=[subject],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
            ),
        ]
        priorities = []
        if s.spot_first:
            priorities.append(k8s.core.v1.ConfigMap(
                f"{name}-priorities", metadata={**meta, "name": PRIORITY_CONFIGMAP}, data={"priorities": SPOT_FIRST}, opts=child
            ))
        selector = app_selector(NAME)
        # Only its own pods: kube-system's other components keep the cloud's defaults.
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy", metadata=meta, spec=network_policy(selector, args.network), opts=child
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta, spec={"selector": {"matchLabels": selector}, "maxUnavailable": 1}, opts=child
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={**meta, "annotations": WAIVERS},
            spec=deployment_spec(s, args.autoscaler, {**labels, **selector}, selector),
            # No pod runs before its permissions and its traffic rules exist.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *bindings, self.network_policy, *priorities]),
        )
        self.register_outputs({"namespace": self.namespace, "image": s.image})


def network_policy(selector: dict[str, str], network: ClusterNetwork) -> dict:
    """Nothing in; out only to the cluster DNS, the API server and AWS APIs (Auto Scaling, EC2, EKS, STS: 443)."""
    dns = dns_egress(network.dns)["egress"][0]
    return {
        "podSelector": {"matchLabels": selector},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [
            dns,
            {"to": ip_blocks(network.control_plane_cidrs), "ports": [port(p) for p in API_SERVER_PORTS]},
            {"to": ip_blocks(["0.0.0.0/0"]), "ports": [port(443)]},
        ],
    }


def deployment_spec(s: ClusterAutoscalerSettings, autoscaler: NodeAutoscaler, pod_labels: dict, selector: dict) -> dict:
    probe = {"httpGet": {"path": "/health-check", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
    container = {
        "name": NAME,
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["./cluster-autoscaler", *flags(s, autoscaler.cluster_name)],
        "env": [{"name": "AWS_REGION", "value": autoscaler.region}],
        "ports": [{"name": "http", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": probe,
        # Stand-by replicas answer it too: only the leader's loop is watched.
        "readinessProbe": probe,
        "resources": s.resources.to_kubernetes(),
        "securityContext": restricted_container(),  # user and group from the pod's context
    }
    return {
        "replicas": s.replicas,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": {**pod_labels, **autoscaler.identity.pod_labels}},
            "spec": {
                "serviceAccountName": autoscaler.identity.service_account,
                "automountServiceAccountToken": True,
                # Pending pods wait for it: it must not be the pod that gets preempted.
                "priorityClassName": "system-cluster-critical",
                # On the system pool, which never scales to zero, not on nodes it may remove.
                "nodeSelector": {POOL_LABEL: "system"},
                "topologySpreadConstraints": topology_spread(selector),
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "runAsGroup": 65534,
                    "fsGroup": 65534,  # reads the projected IRSA web identity token
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
            },
        },
    }
