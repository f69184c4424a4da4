"""High availability values shared by add-on charts: replicas, spread, and a drain-friendly PDB."""
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
