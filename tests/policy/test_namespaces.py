from policies import kube
from policies.rules import namespaces as n
from tests.policy.builders import meta, policy_resource, stack_violations, violations

ENFORCE = n.PSA_ENFORCE_LABEL


def namespace(name="apps", level="restricted"):
    labels = {ENFORCE: level} if level else None
    return {"metadata": meta(name, None, labels=labels)}


def network_policy(spec, namespace="apps"):
    return policy_resource(kube.NETWORK_POLICY, {"metadata": meta("default-deny", namespace), "spec": spec}, "np")


DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_enforce_label_required():
    assert violations(n.POD_SECURITY_LABELS, kube.NAMESPACE, namespace(level="baseline")) == []
    assert violations(n.POD_SECURITY_LABELS, kube.NAMESPACE, namespace(level=None)) == [
        f"namespace has no {ENFORCE} label"]
    assert violations(n.POD_SECURITY_LABELS, kube.NAMESPACE, namespace(level="strict")) == [
        f"{ENFORCE} is 'strict', not one of privileged, baseline, restricted"]


def test_restricted_required_when_configured():
    config = {"requireRestricted": True}
    assert violations(n.POD_SECURITY_LABELS, kube.NAMESPACE, namespace(), config) == []
    assert violations(n.POD_SECURITY_LABELS, kube.NAMESPACE, namespace(level="baseline"), config) == [
        f"{ENFORCE} is 'baseline'; this stack requires 'restricted'"]


def test_default_deny_network_policy_per_namespace():
    ns = policy_resource(kube.NAMESPACE, namespace(), "apps")
    assert stack_violations(n.DEFAULT_DENY, [ns, network_policy(DENY_ALL)]) == []
    not_deny_all = [
        {**DENY_ALL, "policyTypes": ["Ingress"]},
        {**DENY_ALL, "podSelector": {"matchLabels": {"app": "backend"}}},
        {**DENY_ALL, "ingress": [{"from": [{"podSelector": {}}]}]},
    ]
    for spec in not_deny_all:
        assert stack_violations(n.DEFAULT_DENY, [ns, network_policy(spec)]) == [
            (ns.urn, "namespace apps has no default-deny NetworkPolicy")]
    assert len(stack_violations(n.DEFAULT_DENY, [ns, network_policy(DENY_ALL, namespace="other")])) == 1


def test_resource_quota_per_namespace():
    ns = policy_resource(kube.NAMESPACE, namespace(), "apps")
    quota = policy_resource(kube.RESOURCE_QUOTA, {"metadata": meta("quota"), "spec": {"hard": {"pods": "50"}}}, "q")
    assert stack_violations(n.RESOURCE_QUOTA, [ns, quota]) == []
    assert stack_violations(n.RESOURCE_QUOTA, [ns]) == [(ns.urn, "namespace apps has no ResourceQuota")]


def test_namespace_name_falls_back_to_the_pulumi_name():
    unnamed = policy_resource(kube.NAMESPACE, {"metadata": {"labels": {ENFORCE: "restricted"}}}, "apps")
    assert stack_violations(n.DEFAULT_DENY, [unnamed, network_policy(DENY_ALL)]) == []
