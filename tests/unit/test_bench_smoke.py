"""A small version of `make bench`'s program section: cost per resource must not grow with N."""
import pytest

from bench.program_cost import measure


@pytest.mark.slow
def test_program_cost_grows_at_most_linearly_and_stays_near_the_floor():
    one, ten = measure(1, repeats=1), measure(10, repeats=1)
    per_app = (ten["platform"]["resources"] - one["platform"]["resources"]) / 9
    assert per_app >= 8  # Deployment, Service, SA, HPA, PDB, Certificate, Ingress, ExternalSecret, Job, ...
    assert per_app == int(per_app)
    # Per-resource time at N=10 may not exceed N=1's (fixed costs amortise); allow noise.
    assert ten["ms_per_resource"] <= 1.5 * one["ms_per_resource"]
    assert ten["ratio_to_floor"] < 3.0
