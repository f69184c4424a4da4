"""Availability of replicated workloads: enough replicas, disruption budgets, spread across zones.

These matter in production; the staging and local configs keep them advisory.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import PolicyResource

from policies import kube
from policies.framework import ResourceRule, StackRule


def _replicated(resources: Sequence[PolicyResource]) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in kube.REPLICATED_TYPES]


def _kind(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def _hpa_min_replicas(resources: Sequence[PolicyResource], target: PolicyResource) -> Optional[float]:
    """The highest minReplicas of the HPAs that scale ``target``, or None if none does."""
    best = None
    for hpa in resources:
        if hpa.resource_type not in kube.HPA_TYPES or kube.object_namespace(hpa) != kube.object_namespace(target):
            continue
        ref = kube.mapping(kube.get_path(hpa.props, "spec", "scaleTargetRef"))
        if ref.get("kind") == _kind(target.resource_type) and ref.get("name") == kube.object_name(target):
            # minReplicas defaults to 1 in the HPA API.
            minimum = kube.get_path(hpa.props, "spec", "minReplicas") or 1
            best = minimum if best is None else max(best, minimum)
    return best


def _under_replicated(resources: Sequence[PolicyResource], config: Mapping) -> Iterator[tuple[PolicyResource, str]]:
    wanted = config["minReplicas"]
    for workload in _replicated(resources):
        # spec.replicas defaults to 1 in the API.
        replicas = kube.get_path(workload.props, "spec", "replicas")
        replicas = 1 if replicas is None else replicas
        if isinstance(replicas, bool) or not isinstance(replicas, (int, float)):
            # A chart value can put anything there; the API server will refuse it, the pack must not crash.
            yield workload, f"{_kind(workload.resource_type)} {kube.object_name(workload)} has replicas {replicas!r}, not a number"
            continue
        hpa_minimum = _hpa_min_replicas(resources, workload)
        if replicas >= wanted or (hpa_minimum is not None and hpa_minimum >= wanted):
            continue
        via_hpa = f", HPA minReplicas {hpa_minimum:g}" if hpa_minimum is not None else ", no HPA"
        yield workload, (
            f"{_kind(workload.resource_type)} {kube.object_name(workload)} has replicas {replicas:g}{via_hpa}; "
            f"needs at least {wanted:g}"
        )


MIN_REPLICAS = StackRule(
    name="deployment-min-replicas",
    description="Deployments and StatefulSets run at least minReplicas replicas, directly or through an HPA.",
    rationale="A single replica makes every node drain, eviction or crash an outage.",
    remediation="Set spec.replicas >= minReplicas, or target the workload with a "
    "HorizontalPodAutoscaler whose minReplicas >= minReplicas.",
    check=_under_replicated,
    config_properties={
        "minReplicas": {"type": "integer", "minimum": 1, "default": 2,
                        "description": "Smallest acceptable replica count."},
    },
)


def _without_pdb(resources: Sequence[PolicyResource], config: Mapping) -> Iterator[tuple[PolicyResource, str]]:
    budgets = [r for r in resources if r.resource_type == kube.POD_DISRUPTION_BUDGET]
    for workload in _replicated(resources):
        pod_labels = kube.pod_template_labels(workload.resource_type, workload.props)
        covered = any(
            kube.object_namespace(pdb) == kube.object_namespace(workload)
            and kube.selector_matches(kube.get_path(pdb.props, "spec", "selector"), pod_labels)
            for pdb in budgets
        )
        if not covered:
            yield workload, (
                f"{_kind(workload.resource_type)} {kube.object_name(workload)} in namespace "
                f"{kube.object_namespace(workload)} is not selected by any PodDisruptionBudget"
            )


PDB_REQUIRED = StackRule(
    name="deployment-pdb-required",
    description="Every Deployment and StatefulSet is selected by a PodDisruptionBudget in its namespace.",
    rationale="Without a budget, a node pool upgrade may evict every replica at once.",
    remediation="Declare a policy/v1 PodDisruptionBudget in the same namespace whose selector "
    "matches the pod template labels (minAvailable or maxUnavailable set).",
    check=_without_pdb,
)


def _no_topology_spread(resource: Any, config: Mapping) -> Iterator[str]:
    spec = kube.mapping(kube.pod_spec(resource.resource_type, resource.props))
    if not kube.sequence(spec.get("topologySpreadConstraints")):
        yield "pod spec has no topologySpreadConstraints"


TOPOLOGY_SPREAD = ResourceRule(
    name="topology-spread-required",
    description="Deployments and StatefulSets spread their pods with topologySpreadConstraints.",
    rationale="Replicas packed onto one node or zone fail together, so extra replicas buy nothing.",
    remediation="Add topologySpreadConstraints over topology.kubernetes.io/zone (and/or "
    "kubernetes.io/hostname) with a labelSelector matching the pod labels.",
    resource_types=kube.REPLICATED_TYPES,
    check=_no_topology_spread,
)

RULES = [MIN_REPLICAS, PDB_REQUIRED, TOPOLOGY_SPREAD]
