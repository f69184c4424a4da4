"""The whole policy pack over what the program registers under mocks: the real stack files of
every cloud raise no mandatory violation, and a bad change to them would be blocked."""
import copy
import typing

import pytest

from infra.config import PlatformConfig
from infra.simulate import simulate
from policies.config import load_stack_config
from policies.pack import ResourceRecord, evaluate

CLOUDS = typing.get_args(PlatformConfig.model_fields["cloud"].annotation)
# `existing` needs no cloud: render mode, a secret store block of its own, and the object storage
# Velero backs up to (made elsewhere: the program creates buckets only in the clouds).
EXISTING = {"cloud": "existing", "existing": {"mode": "render", "secretStore": {"fake": {"data": []}}},
            "addons.backups.location": {"provider": "aws", "bucket": "clipper-backups", "config": {"region": "eu-west-1"}}}


def _records(sim):
    return [ResourceRecord(r.type, r.name, r.inputs, r.urn) for r in sim.resources if r.custom]


def _run(stack, cloud):
    return _records(simulate(stack, EXISTING if cloud == "existing" else {"cloud": cloud}))


@pytest.fixture(scope="module", params=[(stack, cloud) for stack in ("staging", "production") for cloud in CLOUDS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def registered(request):
    stack, cloud = request.param
    return stack, _run(stack, cloud)


def _first_deployment(records):
    bad = copy.deepcopy(records)
    return bad, next(r for r in bad if r.resource_type == "kubernetes:apps/v1:Deployment")


def test_stack_raises_no_violation_beyond_visible_waivers(registered):
    stack, records = registered
    assert len(records) > 30
    # Evaluate as production does (everything mandatory) so staging is held to the same bar.
    violations = evaluate(records, load_stack_config(stack), {"all": "mandatory", "waivers-in-use": "advisory"})
    assert [v for v in violations if v.is_mandatory] == []
    assert {v.rule for v in violations} <= {"waivers-in-use"}


def test_production_blocks_a_deployment_without_limits():
    bad, deployment = _first_deployment(_run("production", CLOUDS[0]))
    del deployment.props["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    blocked = [v for v in evaluate(bad, load_stack_config("production")) if v.is_mandatory]
    assert blocked and all(v.urn == deployment.urn for v in blocked)
    assert any("limit" in v.message for v in blocked)


def test_staging_reports_a_bad_change_as_advisory():
    bad, deployment = _first_deployment(_run("staging", CLOUDS[0]))
    deployment.props["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/clpr-tv/backend:latest"
    violations = [v for v in evaluate(bad, load_stack_config("staging")) if v.urn == deployment.urn]
    assert violations and not any(v.is_mandatory for v in violations)
