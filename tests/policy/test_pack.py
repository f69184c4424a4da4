"""The pack as a whole: rule metadata, stack configs, README table, and evaluate()."""

import pathlib

import pytest
import yaml
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policies import config as policy_config
from policies import kube, readme
from policies.pack import ALL_RULES, PACK_NAME, PACK_VERSION, ResourceRecord, Violation, evaluate
from tests.policy.builders import meta, urn, workload

POLICIES_DIR = pathlib.Path(policy_config.__file__).parent


def test_pack_has_at_least_25_uniquely_named_rules():
    names = [rule.name for rule in ALL_RULES]
    assert len(names) >= 25
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.name)
def test_every_rule_documents_what_why_and_how_to_fix(rule):
    assert rule.name and rule.description and rule.rationale and rule.remediation_steps
    assert rule.enforcement_level in (EnforcementLevel.ADVISORY, EnforcementLevel.MANDATORY)


@pytest.mark.parametrize("stack", policy_config.STACKS)
def test_stack_config_names_only_existing_rules_and_matches_their_schemas(stack):
    assert policy_config.config_errors(ALL_RULES, policy_config.load_stack_config(stack)) == []


def test_config_errors_catch_typos_the_cli_would_ignore():
    errors = policy_config.config_errors(ALL_RULES, {
        "all": "strict", "no-such-rule": "advisory", "deployment-min-replicas": {"minReplica": 2},
        "image-allowed-registry": {"allowedRegistries": "ghcr.io/"}})
    assert len(errors) == 4


def test_production_is_mandatory_but_keeps_the_waiver_report_advisory():
    levels = policy_config.reconcile(ALL_RULES, policy_config.load_stack_config("production"))
    advisory = sorted(name for name, (level, _) in levels.items() if level != EnforcementLevel.MANDATORY)
    assert advisory == ["waivers-in-use"]
    for stack in ("staging", "local"):
        levels = policy_config.reconcile(ALL_RULES, policy_config.load_stack_config(stack))
        assert {level for level, _ in levels.values()} == {EnforcementLevel.ADVISORY}


def test_readme_rule_table_is_current():
    assert readme.README.read_text() == readme.render(readme.README.read_text())


def test_policy_pack_yaml_uses_the_project_virtualenv_and_pack_version():
    spec = yaml.safe_load((POLICIES_DIR / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python"
    # The CLI resolves a relative virtualenv against the pack's directory.
    venv = (POLICIES_DIR / spec["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == POLICIES_DIR.parent.resolve() / ".venv"
    assert spec["version"] == PACK_VERSION


def test_analyzer_info_serializes_every_rule_and_schema():
    info = _PolicyAnalyzerServicer(PACK_NAME, PACK_VERSION, ALL_RULES, EnforcementLevel.ADVISORY).GetAnalyzerInfo(None, None)
    assert [p.name for p in info.policies] == [r.name for r in ALL_RULES]


def record(resource_type, props, name):
    return ResourceRecord(resource_type, name, props, urn(resource_type, name))


def platform(deployment_props):
    namespace = {"metadata": meta("apps", None, labels={"pod-security.kubernetes.io/enforce": "restricted"})}
    deny = {"metadata": meta("default-deny"), "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    return [
        record(kube.NAMESPACE, namespace, "apps"),
        record(kube.NETWORK_POLICY, deny, "default-deny"),
        record(kube.RESOURCE_QUOTA, {"metadata": meta("quota"), "spec": {"hard": {"pods": "20"}}}, "quota"),
        record(kube.DEPLOYMENT, deployment_props, "backend"),
        record(kube.POD_DISRUPTION_BUDGET, {"metadata": meta("backend"), "spec": {
            "minAvailable": 1, "selector": {"matchLabels": {"app": "backend"}}}}, "backend-pdb"),
        # The Chart itself has no rule (its objects are checked as any other).
        record("kubernetes:helm.sh/v4:Chart", {"chart": "ingress-nginx", "values": {}}, "ingress-nginx"),
    ]


def production():
    return policy_config.load_stack_config("production")


def test_evaluate_compliant_platform_has_no_violations():
    assert evaluate(platform(workload()), production()) == []


def test_evaluate_reports_levels_and_blames_resources():
    found = evaluate(platform(workload(replicas=1)), production())
    assert found == [Violation("deployment-min-replicas", "mandatory",
                               "Deployment backend has replicas 1, no HPA; needs at least 2",
                               urn(kube.DEPLOYMENT, "backend"))]
    staging = evaluate(platform(workload(replicas=1)), policy_config.load_stack_config("staging"))
    assert [(v.rule, v.level, v.is_mandatory) for v in staging] == [("deployment-min-replicas", "advisory", False)]


def test_evaluate_honours_waivers_and_reports_them():
    waived = workload(replicas=1, annotations={"waiver.policy.clipper.dev/deployment-min-replicas": "leader election"})
    found = evaluate(platform(waived), production())
    assert [(v.rule, v.level, v.message) for v in found] == [
        ("waivers-in-use", "advisory", "rule deployment-min-replicas is waived: leader election")]


def test_evaluate_level_overrides_and_tuples():
    bad = workload(replicas=1)
    records = [(r.resource_type, r.name, r.props, r.urn) for r in platform(bad)]
    assert evaluate(records, production(), {"deployment-min-replicas": "disabled"}) == []
    assert [v.level for v in evaluate(records, None, {"all": "advisory"})] == ["advisory"]


def test_evaluate_rejects_invalid_config():
    with pytest.raises(ValueError, match="no-such-rule"):
        evaluate([], {"no-such-rule": "mandatory"})
