"""Settings every cloud cluster shares: API access, node pools, maintenance window.

Each cloud's settings model (in gke.py, eks.py, aks.py) composes these with its own defaults
(machine types, regions) and adds what only that cloud has (project, resource group, ...).
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import AfterValidator, Field, field_validator, model_validator

from components.cluster.naming import bounded_name
from components.settings import Settings, deep_merge

Weekday = Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_KUBERNETES_VERSION = re.compile(r"^1\.\d{2}$")


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a CIDR block (example: 203.0.113.0/24): {error}") from None
    return str(network)


def _kubernetes_version(value: str) -> str:
    if not _KUBERNETES_VERSION.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes minor version (example: 1.33)")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
KubernetesVersion = Annotated[str, AfterValidator(_kubernetes_version)]


def region_validator(pattern: str, example: str, what: str = "a region name in this cloud's format"):
    """An AfterValidator that checks a cloud's spelling of an id, so typos fail before any API call."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what} (example: {example})")
        return value

    return AfterValidator(check)


class ApiAccess(Settings):
    """Who can reach the Kubernetes API server. Never open to the internet.

    The first `up` runs from outside a network the program creates (a laptop, a CI runner), and
    its in-cluster half needs the API: each cloud's settings check that it has a way in.
    """

    private_endpoint: bool = Field(
        default=True,
        description="true: nodes reach the API server on a private address; from outside, only through the "
        "cloud's authenticated door (GKE: the IAM-checked DNS endpoint; EKS/AKS: a public endpoint limited to "
        "authorizedCidrs). false: a public endpoint limited to authorizedCidrs.",
    )
    authorized_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="Public CIDRs allowed to reach the API server (CI runners, office VPN). Required for a public "
        "endpoint, and on EKS/AKS whenever the program creates the network (see docs/clouds.md).",
    )

    @model_validator(mode="after")
    def _not_open(self):
        if not self.private_endpoint and not self.authorized_cidrs:
            raise ValueError("a public API endpoint needs authorizedCidrs (or set privateEndpoint: true)")
        open_ranges = [c for c in self.authorized_cidrs if ipaddress.ip_network(c).prefixlen == 0]
        if open_ranges:
            raise ValueError(f"authorizedCidrs {open_ranges} opens the API server to the internet; list the real ranges")
        return self


class NodePool(Settings):
    """An autoscaling group of identical nodes."""

    enabled: bool = True
    machine_type: str = Field(min_length=1, description="Instance / VM size for this cloud.")
    min_nodes: int = Field(ge=0, description="Per zone on GKE; for the whole pool on EKS and AKS.")
    max_nodes: int = Field(ge=1)
    disk_size_gb: int = Field(default=100, ge=20)

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"minNodes ({self.min_nodes}) is greater than maxNodes ({self.max_nodes})")
        return self


class NodePools(Settings):
    """system: cluster add-ons (tainted on AKS); workload: the apps; spot: cheap, interruptible, tainted."""

    system: NodePool
    workload: NodePool
    spot: NodePool


class MaintenanceWindow(Settings):
    """When the cloud may upgrade the control plane and nodes (UTC)."""

    days: list[Weekday] = Field(default_factory=lambda: ["Saturday", "Sunday"], min_length=1)
    start_hour_utc: int = Field(default=3, ge=0, le=23)
    duration_hours: int = Field(default=6, ge=4, le=23)


class CloudClusterSettings(Settings):
    """What GKE, EKS and AKS settings have in common; each subclass sets its cloud's defaults."""

    name: Optional[str] = Field(
        default=None, pattern=r"^[a-z][-a-z0-9]{1,38}[a-z0-9]$", description="Cluster name (default: clipper-<stack>)."
    )
    kubernetes_version: Optional[KubernetesVersion] = Field(
        default=None, description="Minor version to pin (default: the release channel's)."
    )
    api: ApiAccess = Field(default_factory=ApiAccess, description="API server reachability.")
    node_pools: NodePools = Field(
        default=None, validate_default=True, description="system, workload and spot pools; keys given override the defaults."
    )
    maintenance: MaintenanceWindow = Field(default_factory=MaintenanceWindow)
    deletion_protection: bool = Field(default=True, description="Cloud-side guard against deleting the cluster.")
    incarnation: int = Field(
        default=1,
        ge=1,
        description="Raise by one after `pulumi destroy`, before creating the stack again: names the cloud keeps "
        "after a delete (GCP key rings forever, Key Vaults under purge protection for 90 days) get it as a suffix.",
    )

    # Each cloud's default pool sizes; a stack file overrides single keys (e.g. workload.maxNodes).
    default_node_pools: ClassVar[NodePools]

    @field_validator("node_pools", mode="before")
    @classmethod
    def _pools_over_defaults(cls, value: Any) -> Any:
        if value is None:
            return cls.default_node_pools
        if isinstance(value, dict):
            return deep_merge(cls.default_node_pools.model_dump(by_alias=True), value)
        return value

    def cluster_name(self, stack: str) -> str:
        return self.name or f"clipper-{stack}"

    def unreleased_name(self, *parts: str, limit: int) -> str:
        """A name the cloud never frees after a delete: the first incarnation keeps the plain name,
        later ones end in `-<incarnation>`, so a re-created stack never asks for a name still held."""
        return bounded_name(*parts, str(self.incarnation) if self.incarnation > 1 else "", limit=limit)
