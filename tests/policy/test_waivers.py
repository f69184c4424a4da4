from policies import kube
from policies.pack import RULES_BY_NAME
from policies.rules import audit
from policies.rules.network import NO_NODEPORT
from tests.policy.builders import meta, violations

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


def test_objects_rendered_from_helm_charts_are_not_checked():
    chart = "kubernetes:helm.sh/v3:Chart"
    assert violations(NO_NODEPORT, kube.SERVICE, nodeport(), parent_type=chart) == []
    assert violations(NO_NODEPORT, kube.SERVICE, nodeport(), parent_type="clipper:app:Backend") == [
        "Service is of type NodePort"]
