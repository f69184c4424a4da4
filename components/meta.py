"""Labels every object carries, so policies, `kubectl -l` and cost reports can find them."""
from __future__ import annotations

PART_OF = "clipper"
MANAGED_BY = "pulumi"


def platform_labels(component: str, name: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": component,
    }
    if name:
        labels["app.kubernetes.io/name"] = name
    return labels


APP_LABEL = "clipper.dev/app"  # on the app's pods and its migration pods: what NetworkPolicies select


def app_selector(app: str) -> dict[str, str]:
    """The stable subset of labels that selects an app's pods (selectors are immutable)."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": PART_OF}
