import pytest

from infra.simulate import simulate


@pytest.fixture(scope="session", params=["staging", "production"])
def stack_run(request):
    """The whole program run under mocks for each real stack file."""
    return simulate(request.param)


@pytest.fixture(scope="session")
def production():
    return simulate("production")
