"""Picks the cluster implementation the stack's `cloud` key names."""
from __future__ import annotations

import pulumi

from components.cluster.base import Cluster
from components.cluster.existing import ExistingCluster
from infra.config import PlatformConfig


def cluster_for(cfg: PlatformConfig) -> Cluster:
    opts = pulumi.ResourceOptions(protect=cfg.is_production and cfg.cloud != "existing")
    if cfg.cloud == "existing":
        return ExistingCluster("cluster", cfg.existing, opts)
    raise AssertionError(f"unreachable: cloud {cfg.cloud!r} passed validation")
