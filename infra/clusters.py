"""Picks the cluster implementation the stack's `cloud` key names.

Each cloud's module is imported only when that cloud is selected: the three SDKs together cost
about a second of start-up on every run, and a stack only ever uses one.
"""
from __future__ import annotations

import pulumi

from components.cluster.base import Cluster
from components.cluster.existing import ExistingCluster
from infra.config import PlatformConfig


def cluster_for(cfg: PlatformConfig) -> Cluster:
    # Production cloud resources are protected; children (network, keys, pools, identities) inherit it.
    opts = pulumi.ResourceOptions(protect=cfg.is_production and cfg.cloud != "existing")
    if cfg.cloud == "gke":
        from components.cluster.gke.cluster import GkeCluster

        assert cfg.gke is not None  # config validation requires the selected cloud's settings
        return GkeCluster("cluster", cfg.gke, opts)
    if cfg.cloud == "eks":
        from components.cluster.eks.cluster import EksCluster

        assert cfg.eks is not None
        return EksCluster("cluster", cfg.eks, opts)
    if cfg.cloud == "aks":
        from components.cluster.aks.cluster import AksCluster

        assert cfg.aks is not None
        return AksCluster("cluster", cfg.aks, opts)
    if cfg.cloud == "existing":
        return ExistingCluster("cluster", cfg.existing, opts)
    raise AssertionError(f"unreachable: cloud {cfg.cloud!r} passed validation")
