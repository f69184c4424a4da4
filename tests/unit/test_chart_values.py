"""Every values key the program passes a chart exists in that chart version (Helm silently ignores
one it does not have) and passes the chart's values.schema.json: for every stack file and every
cloud, as configured and with every add-on on, against the pinned chart and the newest one in
$CLIPPER_CHARTS_DIR (the official charts, test data)."""
from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
from packaging.version import Version

from components.addons.chart_values import chart_version, schema_errors, unknown_values
from components.addons.metrics_server import CLOUDS_WITH_METRICS_SERVER
from infra.simulate import Simulation, simulate, stack_config
from tests.charts import VARIANTS, installed_charts as _charts, stack_variants


def _cases() -> list:
    return [pytest.param(stack, overrides, cloud, variant, id=f"{stack}-{cloud}-{variant}")
            for stack, cloud, variant, overrides in stack_variants(VARIANTS)]


def _newest(charts_dir: Path, name: str) -> Path:
    found = [d for d in charts_dir.glob(f"{name}-*") if (d / "Chart.yaml").is_file() and d.name == f"{name}-{chart_version(d)}"]
    assert found, f"no {name} chart in {charts_dir}"
    return max(found, key=lambda d: Version(chart_version(d)))


def values_problems(charts_dir: Path, name: str, version: str, values: dict) -> list[str]:
    """What is wrong with `values` for the pinned chart version and for the newest one."""
    pinned = charts_dir / f"{name}-{version}"
    assert pinned.is_dir(), f"no chart {pinned}: put the official {name} {version} chart in $CLIPPER_CHARTS_DIR"
    problems = []
    for chart in dict.fromkeys([pinned, _newest(charts_dir, name)]):
        problems += [f"{chart.name}: {key}: not a key of the chart" for key in unknown_values(chart, values)]
        problems += [f"{chart.name}: schema: {error}" for error in schema_errors(chart, values)]
    return problems


def _problems(charts_dir: Path, sim: Simulation) -> list[str]:
    return [problem for chart in _charts(sim).values() for problem in values_problems(charts_dir, *chart)]


@pytest.mark.parametrize("stack,overrides,cloud,variant", _cases())
def test_values_passed_to_every_chart_are_keys_of_that_chart(charts_dir, stack, overrides, cloud, variant):
    sim = simulate(stack, overrides)
    if variant != "as configured":  # the add-ons really are all there to check
        ingress = "gateway-helm" if "gateway" in variant else "ingress-nginx"
        metrics = [] if cloud in CLOUDS_WITH_METRICS_SERVER else ["metrics-server"]
        # Reloader comes with External Secrets; monitoring and backups where the stack file turns them on.
        addons = stack_config(stack).get("addons") or {}
        day2 = [chart for key, chart in (("monitoring", "kube-prometheus-stack"), ("backups", "velero"))
                if (addons.get(key) or {}).get("enabled")]
        assert sorted(_charts(sim)) == sorted(["cert-manager", "external-secrets", "reloader", ingress, *metrics, *day2])
    assert _problems(charts_dir, sim) == []


# --- the checks fail on deliberate mistakes -------------------------------------------------------


def test_a_misspelt_key_for_a_chart_without_a_schema_fails(charts_dir):
    assert not (charts_dir / "ingress-nginx-4.15.1" / "values.schema.json").exists()
    # Config values reach the chart merged over the program's own.
    mistakes = {"controller": {"replicaCout": 3, "podDisruptionBudget": {"enabled": True}}}
    sim = simulate("production", {"addons.ingress-nginx.values": mistakes})
    assert _problems(charts_dir, sim) == [
        "ingress-nginx-4.15.1: controller.replicaCout: not a key of the chart",
        "ingress-nginx-4.15.1: controller.podDisruptionBudget: not a key of the chart",
    ]


def test_a_key_the_cert_manager_schema_rejects_fails(charts_dir):
    sim = simulate("production", {"addons.cert-manager.values": {"webhook": {"replicaCount": "two", "replicas": 2}}})
    assert _problems(charts_dir, sim) == [
        "cert-manager-v1.21.1: webhook.replicas: not a key of the chart",
        "cert-manager-v1.21.1: schema: webhook.replicaCount: 'two' is not of type 'number'",
        "cert-manager-v1.21.1: schema: webhook: Additional properties are not allowed ('replicas' was unexpected)",
    ]


def test_the_newest_chart_version_is_checked_too(charts_dir):
    assert [d.name for d in [_newest(charts_dir, "ingress-nginx"), _newest(charts_dir, "gateway-helm")]] == [
        "ingress-nginx-4.15.1",
        "gateway-helm-v1.9.0",
    ]
    problems = values_problems(charts_dir, "ingress-nginx", "4.13.3", {"controller": {"replicaCout": 3}})
    assert problems == [
        "ingress-nginx-4.13.3: controller.replicaCout: not a key of the chart",
        "ingress-nginx-4.15.1: controller.replicaCout: not a key of the chart",
    ]


# --- what counts as a key the chart has -----------------------------------------------------------


@pytest.mark.parametrize(
    "chart,values",
    [
        # Commented out in values.yaml, read by the templates.
        ("ingress-nginx-4.15.1", {"controller": {"maxUnavailable": 1}}),
        ("gateway-helm-v1.9.0", {"podDisruptionBudget": {"maxUnavailable": 1}}),
        # values.yaml shows only requests; the template renders `resources` whole.
        ("ingress-nginx-4.15.1", {"controller": {"resources": {"limits": {"memory": "512Mi"}}}}),
        # Free-form maps ({} by default) and lists.
        ("ingress-nginx-4.15.1", {"controller": {"podLabels": {"team": "platform"}, "extraArgs": {"v": "2"}}}),
        ("metrics-server-3.13.1", {"tolerations": [{"key": "spot", "operator": "Exists"}]}),
        # Subchart values go under the dependency's name.
        ("external-secrets-2.9.0", {"bitwarden-sdk-server": {"enabled": False}}),
    ],
)
def test_keys_the_chart_has_without_a_default_are_known(charts_dir, chart, values):
    assert unknown_values(charts_dir / chart, values) == []
    assert schema_errors(charts_dir / chart, values) == []


def test_values_known_only_at_deployment_are_checked_by_key(charts_dir):
    # e.g. a cloud identity's annotation on the ServiceAccount: a pulumi Output, not a plain value.
    role = pulumi.Output.from_input("arn:aws:iam::123456789012:role/cert-manager")
    chart = charts_dir / "cert-manager-v1.21.1"
    values = {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": role}}, "webhook": {"replicaCount": role}}
    assert unknown_values(chart, values) == [] and schema_errors(chart, values) == []
    assert unknown_values(chart, {"serviceAcount": {"annotations": role}}) == ["serviceAcount"]
    assert schema_errors(chart, {"webhook": {"replicaCount": role}, "replicaCount": "two"}) == [
        "replicaCount: 'two' is not of type 'number'"
    ]
