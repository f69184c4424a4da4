import pytest

from policies import kube, waivers
from policies.chart_waivers import CHART_WAIVERS, ChartWaiver
from policies.pack import ALL_RULES, RULES_BY_NAME
from policies.rules import audit
from policies.rules.availability import MIN_REPLICAS
from policies.rules.network import NO_LOADBALANCER, NO_NODEPORT
from tests.policy.builders import meta, policy_resource, stack_violations, urn, violations, workload

PREFIX = "waiver.policy.clipper.dev/"
REASON_REQUIRED = RULES_BY_NAME[audit.WAIVER_REASON_REQUIRED]
IN_USE = RULES_BY_NAME[audit.WAIVERS_IN_USE]


def nodeport(annotations=None):
    return {"metadata": meta("debug", annotations=annotations), "spec": {"type": "NodePort"}}


def test_waiver_with_a_reason_waives_and_is_reported_as_in_use():
    props = nodeport({PREFIX + "no-nodeport-services": "bare-metal lab has no load balancer"})
    assert violations(NO_NODEPORT, kube.SERVICE, props) == []
    assert violations(REASON_REQUIRED, kube.SERVICE, props) == []
    assert violations(IN_USE, kube.SERVICE, props) == [
        "rule no-nodeport-services is waived: bare-metal lab has no load balancer"]


def test_waiver_without_a_reason_waives_nothing_and_is_a_violation():
    props = nodeport({PREFIX + "no-nodeport-services": "  "})
    assert violations(NO_NODEPORT, kube.SERVICE, props) == ["Service is of type NodePort"]
    assert violations(REASON_REQUIRED, kube.SERVICE, props) == [
        f"annotation {PREFIX}no-nodeport-services has no reason, so it waives nothing"]
    assert violations(IN_USE, kube.SERVICE, props) == []


def test_waiver_naming_an_unknown_or_unwaivable_rule_is_a_violation():
    for rule in ("no-node-port", audit.WAIVERS_IN_USE):
        props = nodeport({PREFIX + rule: "typo"})
        assert violations(REASON_REQUIRED, kube.SERVICE, props) == [
            f"annotation {PREFIX}{rule} names no waivable rule of this pack"]


def test_resources_without_waivers_produce_no_audit_findings():
    assert violations(REASON_REQUIRED, kube.SERVICE, nodeport()) == []
    assert violations(IN_USE, kube.SERVICE, nodeport()) == []


CHART = "clipper:addons:HelmAddon$kubernetes:helm.sh/v4:Chart"  # the parent-type chain of a chart's objects
DEBUG_WAIVER = ChartWaiver("no-nodeport-services", "ingress-nginx", ("Service/debug",), "the chart's debug port")


def test_objects_rendered_from_helm_charts_are_checked_like_declared_ones():
    for parent, name in ((CHART, "ingress-nginx:apps/debug"), ("clipper:app:Backend", "debug")):
        assert violations(NO_NODEPORT, kube.SERVICE, nodeport(), name=name, parent_type=parent) == [
            "Service is of type NodePort"]
    assert waivers.chart_release(urn(kube.SERVICE, "ingress-nginx:apps/debug", CHART)) == "ingress-nginx"
    assert waivers.chart_release(urn(kube.SERVICE, "debug", "clipper:app:Backend")) is None


def test_a_chart_waiver_waives_one_rule_for_the_objects_it_names_in_its_release(monkeypatch):
    monkeypatch.setattr(waivers, "CHART_WAIVERS", (DEBUG_WAIVER,))
    named = {"name": "ingress-nginx:apps/debug", "parent_type": CHART}
    assert violations(NO_NODEPORT, kube.SERVICE, nodeport(), **named) == []
    assert violations(IN_USE, kube.SERVICE, nodeport(), **named) == [
        "rule no-nodeport-services is waived for this ingress-nginx chart object: the chart's debug port"]
    assert violations(REASON_REQUIRED, kube.SERVICE, nodeport(), **named) == []
    # Another rule on the same object is still checked.
    public = {"metadata": meta("debug"), "spec": {"type": "LoadBalancer"}}
    assert violations(NO_LOADBALANCER, kube.SERVICE, public, **named) != []
    # Not another release's object of that name, not another object, not what the program declares.
    unwaived = ["Service is of type NodePort"]
    assert violations(NO_NODEPORT, kube.SERVICE, nodeport(), name="cert-manager:apps/debug", parent_type=CHART) == unwaived
    other = {"metadata": meta("other"), "spec": {"type": "NodePort"}}
    assert violations(NO_NODEPORT, kube.SERVICE, other, name="ingress-nginx:apps/other", parent_type=CHART) == unwaived
    assert violations(NO_NODEPORT, kube.SERVICE, nodeport(), name="debug", parent_type="clipper:app:Backend") == unwaived
    assert violations(IN_USE, kube.SERVICE, nodeport(), name="debug", parent_type="clipper:app:Backend") == []


def test_a_chart_waiver_waives_stack_rules_too(monkeypatch):
    single = ChartWaiver("deployment-min-replicas", "cert-manager", ("Deployment/backend",), "leader election")
    monkeypatch.setattr(waivers, "CHART_WAIVERS", (single,))
    props = workload(replicas=1)
    waived = policy_resource(kube.DEPLOYMENT, props, "cert-manager:apps/backend", CHART)
    declared = policy_resource(kube.DEPLOYMENT, props, "backend")
    assert stack_violations(MIN_REPLICAS, [waived]) == []
    assert stack_violations(MIN_REPLICAS, [declared]) == [
        (declared.urn, "Deployment backend has replicas 1, no HPA; needs at least 2")]


WAIVABLE = {rule.name for rule in ALL_RULES if rule.waivable}


@pytest.mark.parametrize("waiver", CHART_WAIVERS, ids=lambda w: f"{w.release}-{w.rule}")
def test_every_chart_waiver_names_a_waivable_rule_and_objects_and_gives_a_one_line_reason(waiver):
    assert waiver.rule in WAIVABLE
    assert waiver.release and waiver.objects and len(set(waiver.objects)) == len(waiver.objects)
    assert all(kind and name for kind, _, name in (o.partition("/") for o in waiver.objects))
    assert waiver.reason.strip() and "\n" not in waiver.reason


def test_no_object_is_waived_twice_for_one_rule():
    named = [(w.rule, w.release, o) for w in CHART_WAIVERS for o in w.objects]
    assert len(named) == len(set(named))
