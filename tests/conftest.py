import pytest

from tests.charts import charts_dir as find_charts_dir


@pytest.fixture(scope="session")
def charts_dir():
    """The official charts (test data), laid out as <chart>-<version>/."""
    return find_charts_dir()
