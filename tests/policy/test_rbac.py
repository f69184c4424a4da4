import pytest

from policies import kube
from policies.rules import rbac
from tests.policy.builders import meta, violations

DEPLOYER_LABELS = {rbac.DEPLOYER_ROLE_LABEL: rbac.DEPLOYER_ROLE_VALUE}


def role(rules, labels=None):
    return {"metadata": meta("deployer", labels=labels), "rules": rules}


def binding(subjects, role_name="cluster-admin"):
    return {"metadata": meta("admins", None), "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name}, "subjects": subjects}


@pytest.mark.parametrize("role_type", kube.ROLE_TYPES)
def test_wildcard_verbs_on_wildcard_resources(role_type):
    narrow = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]
    assert violations(rbac.RBAC_NO_WILDCARDS, role_type, role(narrow)) == []
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    assert violations(rbac.RBAC_NO_WILDCARDS, role_type, role(everything)) == [
        "rules[0] grants every verb on every resource"]


@pytest.mark.parametrize("binding_type", kube.BINDING_TYPES)
def test_cluster_admin_only_for_break_glass_groups(binding_type):
    config = {"breakGlassGroups": ["clipper:break-glass"]}
    glass = {"kind": "Group", "name": "clipper:break-glass", "apiGroup": "rbac.authorization.k8s.io"}
    ci = {"kind": "ServiceAccount", "name": "ci", "namespace": "ci"}
    assert violations(rbac.RBAC_NO_CLUSTER_ADMIN, binding_type, binding([glass]), config) == []
    assert violations(rbac.RBAC_NO_CLUSTER_ADMIN, binding_type, binding([ci], role_name="view"), config) == []
    assert violations(rbac.RBAC_NO_CLUSTER_ADMIN, binding_type, binding([glass, ci]), config) == [
        "binds cluster-admin to ServiceAccount ci, which is not a break-glass group"]
    assert len(violations(rbac.RBAC_NO_CLUSTER_ADMIN, binding_type, binding([glass]))) == 1


SECRET_READ = [{"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "create"]}]


def test_deployer_role_cannot_read_secrets():
    rule, role_type = rbac.RBAC_DEPLOYER_NO_SECRETS, kube.ROLE
    write_only = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update", "patch"]}]
    assert violations(rule, role_type, role(write_only, DEPLOYER_LABELS)) == []
    assert violations(rule, role_type, role(SECRET_READ, DEPLOYER_LABELS)) == ["rules[0] lets the deployer get/list secrets"]
    wildcard = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["watch"]}]
    assert violations(rule, role_type, role(wildcard, DEPLOYER_LABELS)) == ["rules[0] lets the deployer watch secrets"]


def test_secret_reads_are_fine_for_other_roles_or_when_allowed():
    rule = rbac.RBAC_DEPLOYER_NO_SECRETS
    assert violations(rule, kube.ROLE, role(SECRET_READ)) == []
    assert violations(rule, kube.CLUSTER_ROLE, role(SECRET_READ, DEPLOYER_LABELS), {"allowSecretsRead": True}) == []
