"""A small version of `make bench`'s program section: cost per resource must not grow with N, and
the program must stay within 1.5x of the bare-SDK floor (the same SDK resources, same mocks)."""
import pytest

from bench.program_cost import RATIO_TARGET, measure


@pytest.mark.slow
def test_program_cost_grows_at_most_linearly_and_stays_near_the_floor():
    one, ten = measure(1, repeats=3), measure(10, repeats=3)
    per_app = (ten["platform"]["sdk_resources"] - one["platform"]["sdk_resources"]) / 9
    assert per_app >= 8  # Deployment, Service, SA, HPA, PDB, Certificate, Ingress, ExternalSecret, Job, ...
    assert per_app == int(per_app)
    # CPU time (medians of 3): what the runs cost, not how long they waited for a shared CPU.
    cpu_per_resource = {r["apps"]: r["platform"]["cpu_seconds"] / r["platform"]["sdk_resources"] for r in (one, ten)}
    # Per-resource cost at N=10 may not exceed N=1's (fixed costs amortise); allow noise.
    assert cpu_per_resource[10] <= 1.5 * cpu_per_resource[1]
    # 2.3x the resources may not double the cost: growth is dominated by the fixed start-up.
    assert ten["platform"]["cpu_seconds"] < 2 * one["platform"]["cpu_seconds"]
    # The target: within 1.5x of the floor at N <= 50 (make bench reports N = 50 too). On the
    # fastest of 3 runs each side: on a shared machine other work only ever adds time, and the
    # medians of 3 moved between 0.9x and 1.4x from one run to the next.
    assert RATIO_TARGET == 1.5
    assert one["cpu_ratio_of_fastest"] <= RATIO_TARGET, one
    assert ten["cpu_ratio_of_fastest"] <= RATIO_TARGET, ten
