"""Values shared by add-on charts: replicas, spread, a drain-friendly PDB, and container resources."""
from __future__ import annotations

ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"


def topology_spread(selector: dict[str, str]) -> list[dict]:
    """Spread replicas over zones and nodes; never refuse to schedule (small clusters have one zone)."""
    return [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}
        for key in (ZONE, HOST)
    ]


def highly_available(selector: dict[str, str], replica_key: str = "replicas", replicas: int = 2) -> dict:
    """Chart values for `replicas` pods of one part of a chart (the pods the chart labels `selector`)
    and a PDB that lets one go at a time, so node drains proceed."""
    return {
        replica_key: replicas,
        "topologySpreadConstraints": topology_spread(selector),
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    }


def resources(cpu: str = "50m", memory: str = "128Mi", cpu_limit: str = "500m", memory_limit: str = "512Mi") -> dict:
    """Requests and limits for a chart's containers: most charts ship none, so the scheduler and the
    namespace would otherwise know nothing of them. Overridable through `addons.<name>.values`."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}
