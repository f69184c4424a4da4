from policies import kube
from policies.rules import availability as a
from tests.policy.builders import meta, pod_spec, policy_resource, stack_violations, violations, workload

HPA = kube.HPA_TYPES[0]


def deployment(replicas=2, name="backend"):
    return policy_resource(kube.DEPLOYMENT, workload(name=name, replicas=replicas), name)


def hpa(min_replicas, target="backend"):
    return policy_resource(HPA, {"metadata": meta(f"{target}-hpa"), "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": min_replicas, "maxReplicas": 10}}, f"{target}-hpa")


def pdb(selector, namespace="apps"):
    return policy_resource(kube.POD_DISRUPTION_BUDGET, {"metadata": meta("backend-pdb", namespace),
                                                        "spec": {"minAvailable": 1, "selector": selector}}, "pdb")


def test_two_replicas_pass_and_one_fails():
    assert stack_violations(a.MIN_REPLICAS, [deployment(2)]) == []
    single = deployment(1)
    assert stack_violations(a.MIN_REPLICAS, [single]) == [
        (single.urn, "Deployment backend has replicas 1, no HPA; needs at least 2")]


def test_replicas_default_to_one():
    statefulset = policy_resource(kube.STATEFUL_SET, workload(kube.STATEFUL_SET, name="db", replicas=None), "db")
    assert len(stack_violations(a.MIN_REPLICAS, [statefulset])) == 1


def test_an_hpa_with_enough_min_replicas_satisfies_the_rule():
    assert stack_violations(a.MIN_REPLICAS, [deployment(1), hpa(2.0)]) == []
    assert stack_violations(a.MIN_REPLICAS, [deployment(1), hpa(1)])[0][1] == (
        "Deployment backend has replicas 1, HPA minReplicas 1; needs at least 2")
    # An HPA for another Deployment does not count.
    assert len(stack_violations(a.MIN_REPLICAS, [deployment(1), hpa(3, target="frontend")])) == 1


def test_min_replicas_is_configurable():
    assert len(stack_violations(a.MIN_REPLICAS, [deployment(2)], {"minReplicas": 3})) == 1


def test_pdb_must_select_the_pods_in_the_same_namespace():
    assert stack_violations(a.PDB_REQUIRED, [deployment(), pdb({"matchLabels": {"app": "backend"}})]) == []
    expressions = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["backend", "x"]}]}
    assert stack_violations(a.PDB_REQUIRED, [deployment(), pdb(expressions)]) == []
    for unrelated in (pdb({"matchLabels": {"app": "frontend"}}), pdb({"matchLabels": {"app": "backend"}}, "other")):
        found = stack_violations(a.PDB_REQUIRED, [deployment(), unrelated])
        assert [m for _, m in found] == ["Deployment backend in namespace apps is not selected by any PodDisruptionBudget"]


def test_topology_spread_constraints_required():
    assert violations(a.TOPOLOGY_SPREAD, kube.DEPLOYMENT, workload()) == []
    bare = workload(spec=pod_spec(topologySpreadConstraints=[]))
    assert violations(a.TOPOLOGY_SPREAD, kube.DEPLOYMENT, bare) == ["pod spec has no topologySpreadConstraints"]


def test_stack_rule_waiver_on_the_blamed_resource():
    waived = policy_resource(kube.DEPLOYMENT, workload(replicas=1, annotations={
        "waiver.policy.clipper.dev/deployment-min-replicas": "singleton leader by design"}), "backend")
    assert stack_violations(a.MIN_REPLICAS, [waived]) == []


def test_min_replicas_reports_replicas_that_are_not_a_number_instead_of_crashing():
    deployment = policy_resource(kube.DEPLOYMENT, workload(replicas="two"), "backend")
    assert stack_violations(a.MIN_REPLICAS, [deployment]) == [
        (deployment.urn, "Deployment backend has replicas 'two', not a number")]
