"""Cluster Autoscaler under mocks: only on EKS, pointed at this cluster's node groups, running as
the IRSA role allowed to resize them, with upstream's RBAC narrowed, a hardened pod on the system
pool, and only DNS, the API server and AWS APIs reachable; a version for another Kubernetes minor
is refused before any resource. Plus the EKS storage add-ons backups need."""
from __future__ import annotations

import re

import pytest
import yaml

from components.addons.cluster_autoscaler import ClusterAutoscalerSettings, cluster_autoscaler_problems
from components.cluster.base import POOL_LABEL
from infra.simulate import ProgramFailed, simulate

DEPLOYMENT, SERVICE_ACCOUNT = "cluster-autoscaler-deployment", "cluster-autoscaler-service-account"


@pytest.fixture(scope="module")
def eks():
    return simulate("production", {"cloud": "eks", "addons.backups.enabled": True})


def _pod(sim) -> dict:
    return sim.one("Deployment", DEPLOYMENT).inputs["spec"]["template"]["spec"]


def _flags(sim) -> dict[str, str]:
    command = _pod(sim)["containers"][0]["command"]
    assert command[0] == "./cluster-autoscaler"
    return dict(flag.removeprefix("--").split("=", 1) for flag in command[1:])


@pytest.mark.parametrize("stack, cloud", [("production", "gke"), ("production", "aks"), ("local", "existing")])
def test_only_eks_runs_it(stack, cloud):
    sim = simulate(stack, {"cloud": cloud})
    assert not sim.of_type("clipper:addons:ClusterAutoscaler")
    assert not [r for r in sim.resources if "cluster-autoscaler" in r.name]


def test_it_discovers_this_clusters_node_groups_by_their_tags(eks):
    flags = _flags(eks)
    assert flags["cloud-provider"] == "aws"
    assert flags["node-group-auto-discovery"] == "asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/clipper-production"
    assert flags["balance-similar-node-groups"] == "true"
    assert flags["expander"] == "priority,least-waste"  # spot first, then least-waste
    assert flags["skip-nodes-with-local-storage"] == "false"  # the apps' emptyDir scratch must not pin nodes
    assert flags["leader-elect"] == "true"
    assert _pod(eks)["containers"][0]["env"] == [{"name": "AWS_REGION", "value": "eu-west-1"}]


def test_config_reaches_the_flags():
    sim = simulate(
        "production",
        {"cloud": "eks", "addons.cluster-autoscaler.expander": "random", "addons.cluster-autoscaler.spotFirst": False,
         "addons.cluster-autoscaler.scaleDown": {"enabled": False, "unneededTime": "30m"}},
    )
    flags = _flags(sim)
    assert (flags["expander"], flags["scale-down-enabled"], flags["scale-down-unneeded-time"]) == ("random", "false", "30m")


def test_the_spot_group_grows_first_for_pods_that_fit_there(eks):
    config = eks.one("ConfigMap", "cluster-autoscaler-priorities").inputs
    assert (config["metadata"]["name"], config["metadata"]["namespace"]) == ("cluster-autoscaler-priority-expander", "kube-system")
    priorities = yaml.safe_load(config["data"]["priorities"])
    highest, lowest = max(priorities), min(priorities)
    # EKS names a managed node group's Auto Scaling group eks-<node group name>-<uuid>.
    groups = {r.inputs["nodeGroupNamePrefix"].rstrip("-"): f"eks-{r.inputs['nodeGroupNamePrefix']}20261201-0a1b2c3d"
              for r in eks.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert "spot" in groups and len(groups) > 1
    for pool, asg in groups.items():
        first = any(re.match(pattern, asg) for pattern in priorities[highest])
        assert first == (pool == "spot"), f"{asg}: in the first tier: {first}"
        assert any(re.match(pattern, asg) for pattern in priorities[lowest])
    rules = eks.one("Role", "cluster-autoscaler-role").inputs["rules"]
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["cluster-autoscaler-priority-expander"]} in rules


def test_it_runs_as_the_irsa_role_that_may_resize_the_groups(eks):
    role = eks.one("aws:iam/role:Role", "cluster-kube-system-cluster-autoscaler")
    sa = eks.one("ServiceAccount", SERVICE_ACCOUNT).inputs
    assert (sa["metadata"]["namespace"], sa["metadata"]["name"]) == ("kube-system", "cluster-autoscaler")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": f"arn:aws:role::123456789012:{role.name}"}
    pod = _pod(eks)
    assert pod["serviceAccountName"] == "cluster-autoscaler"
    assert pod["automountServiceAccountToken"] is True  # it works through the API...
    waivers = eks.one("Deployment", DEPLOYMENT).inputs["metadata"]["annotations"]
    assert waivers["waiver.policy.clipper.dev/no-service-account-token-automount"]  # ...and says so
    assert waivers["waiver.policy.clipper.dev/image-allowed-registry"].startswith("official image")
    assert waivers["checkov.io/skip1"].startswith("CKV_K8S_38=")  # checkov's spelling of the same waiver


def test_rbac_is_upstreams_narrowed(eks):
    cluster_rules = eks.one("ClusterRole", "cluster-autoscaler-cluster-role").inputs["rules"]
    granted = {(group, resource, verb) for r in cluster_rules for group in r["apiGroups"] for resource in r["resources"] for verb in r["verbs"]}
    assert not [r for r in cluster_rules if "*" in r["verbs"] or "*" in r["resources"]]
    assert not [g for g, _, _ in granted if g == "extensions"]
    # What scaling needs: evict pods to drain, taint nodes, read what it simulates.
    assert {("", "pods/eviction", "create"), ("", "nodes", "update"), ("", "pods", "list"), ("policy", "poddisruptionbudgets", "list")} <= granted
    writes = {(g, r, v) for g, r, v in granted if v not in ("get", "list", "watch")}
    assert writes == {("", "events", "create"), ("", "events", "patch"), ("", "pods/eviction", "create"), ("", "pods/status", "update"), ("", "nodes", "update")}
    assert not [r for r in cluster_rules if "secrets" in r["resources"]]
    # Its own status ConfigMap and leader Lease, in its own namespace only.
    role = eks.one("Role", "cluster-autoscaler-role").inputs
    assert role["metadata"]["namespace"] == "kube-system"
    named = {(r["resources"][0], tuple(r["verbs"])): r.get("resourceNames") for r in role["rules"]}
    assert named[("configmaps", ("get", "update", "delete"))] == ["cluster-autoscaler-status"]
    assert named[("leases", ("get", "update"))] == ["cluster-autoscaler"]
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        subjects = eks.one(binding, f"cluster-autoscaler-{'cluster-role' if binding.startswith('Cluster') else 'role'}-binding").inputs["subjects"]
        assert subjects == [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": "kube-system"}]


def test_pod_is_hardened_critical_and_on_the_system_pool(eks):
    pod = _pod(eks)
    container = pod["containers"][0]
    assert container["image"] == "registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.5"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health-check", "port": "http"}
    assert container["readinessProbe"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {POOL_LABEL: "system"}
    spec = eks.one("Deployment", DEPLOYMENT).inputs["spec"]
    assert spec["replicas"] == 2
    pdb = eks.one("PodDisruptionBudget", "cluster-autoscaler-pdb").inputs["spec"]
    assert pdb["selector"] == spec["selector"] and pdb["maxUnavailable"] == 1


def test_network_policy_lets_out_only_dns_the_api_server_and_aws_apis(eks):
    policy = eks.one("NetworkPolicy", "cluster-autoscaler-network-policy").inputs
    assert policy["metadata"]["namespace"] == "kube-system"
    spec = policy["spec"]
    assert spec["podSelector"] == eks.one("Deployment", DEPLOYMENT).inputs["spec"]["selector"]  # its pods, not kube-system's
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and not spec.get("ingress")
    dns, api, aws = spec["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert aws == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}


def test_a_version_for_another_kubernetes_minor_is_refused_before_any_resource():
    with pytest.raises(ProgramFailed) as failed:
        simulate("production", {"cloud": "eks", "eks.kubernetesVersion": "1.34"})
    assert "addons.cluster-autoscaler.version: v1.33.5 is for Kubernetes 1.33 but eks.kubernetesVersion is 1.34" in str(failed.value)
    assert failed.value.registered == []
    # Moved together, both are accepted.
    sim = simulate("production", {"cloud": "eks", "eks.kubernetesVersion": "1.34", "addons.cluster-autoscaler.version": "v1.34.4"})
    assert sim.one("aws:eks/cluster:Cluster", "cluster").inputs["version"] == "1.34"


def test_turning_it_on_where_the_cloud_scales_its_own_pools_is_refused():
    assert cluster_autoscaler_problems(ClusterAutoscalerSettings(enabled=True), "gke", None) == [
        "addons.cluster-autoscaler.enabled: only for cloud: eks; gke scales its node pools itself: leave the key unset"
    ]
    assert cluster_autoscaler_problems(ClusterAutoscalerSettings(enabled=False), "eks", "1.30") == []  # off: any version


def test_turning_it_off_removes_it_but_keeps_the_node_groups_resizable_by_hand():
    sim = simulate("production", {"cloud": "eks", "addons.cluster-autoscaler.enabled": False})
    assert not sim.of_type("clipper:addons:ClusterAutoscaler")
    assert not [r for r in sim.resources if "cluster-autoscaler" in r.name]  # nor its IAM role and policy
    assert sim.of_type("aws:eks/nodeGroup:NodeGroup")


# --- the EKS storage backups need ---------------------------------------------------------------


def test_ebs_csi_driver_and_snapshot_controller_run_after_the_nodes_before_anything_in_cluster(eks):
    addons = {r.inputs["addonName"]: r for r in eks.of_type("aws:eks/addon:Addon")}
    assert {"aws-ebs-csi-driver", "snapshot-controller", "coredns", "kube-proxy", "vpc-cni"} == set(addons)
    groups = {r.urn for r in eks.of_type("aws:eks/nodeGroup:NodeGroup")}
    for name in ("aws-ebs-csi-driver", "snapshot-controller"):
        assert groups <= set(addons[name].dependencies), name
    provider = eks.one("pulumi:providers:kubernetes", "cluster-provider")
    assert {addons["snapshot-controller"].urn, addons["aws-ebs-csi-driver"].urn} <= set(provider.dependencies)


def test_ebs_csi_driver_runs_as_its_own_irsa_role_with_the_managed_policy(eks):
    addon = next(r for r in eks.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "aws-ebs-csi-driver")
    role = eks.one("aws:iam/role:Role", "cluster-ebs-csi")
    assert addon.inputs["serviceAccountRoleArn"] == f"arn:aws:role::123456789012:{role.name}"
    assert "system:serviceaccount:kube-system:ebs-csi-controller-sa" in role.inputs["assumeRolePolicy"]
    attachment = eks.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "cluster-ebs-csi-AmazonEBSCSIDriverPolicy")
    assert attachment.inputs["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    assert attachment.urn in addon.dependencies  # attached before EKS starts the driver, detached after it goes


def test_backups_snapshot_class_names_the_driver_eks_now_runs(eks):
    snapshot_class = eks.one("kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshotClass", "velero-snapshot-class")
    assert snapshot_class.inputs["driver"] == "ebs.csi.aws.com"
