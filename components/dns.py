"""Public DNS for the app hosts: one record per host, pointing at the ingress load balancer.

The zone lives in the stack's cloud (Cloud DNS, Route 53, Azure DNS); each cluster implementation
returns a `DnsZone` for it, so the wiring never asks which cloud. The same zone is what
cert-manager's DNS-01 solver writes challenge records into.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Optional, Protocol

import pulumi
from pydantic import Field

from components.settings import Settings

if TYPE_CHECKING:
    from components.cluster.base import WorkloadIdentity

_DOMAIN = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"


class DnsSettings(Settings):
    """Records for every app `host` in one public zone of the stack's cloud."""

    zone: str = Field(pattern=_DOMAIN, description="The public zone's domain, e.g. clpr.tv; app hosts must be in it.")
    ttl: int = Field(default=300, ge=30, le=86400, description="Record TTL in seconds.")
    target: Optional[str] = Field(
        default=None,
        description="Load-balancer IP or hostname the hosts point at. Default: the ingress-nginx Service's "
        "address; required with ingress.controller: gateway (Envoy names its Service per Gateway).",
    )

    def contains(self, host: str) -> bool:
        return host == self.zone or host.endswith("." + self.zone)


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class DnsZone(Protocol):
    """One cloud's public zone: where host records and ACME challenge records go."""

    domain: str
    # The cloud's handle for the zone (managed zone name / hosted zone id / zone resource id):
    # what `IdentityPermissions.dns_zones` holds to scope write access to this zone alone.
    ref: pulumi.Input[str]

    def record(self, host: str, target: pulumi.Input[str], ttl: int, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """An A record (IP target) or CNAME/alias (hostname target) for `host`."""
        ...

    def acme_dns01_solver(self, identity: "WorkloadIdentity") -> dict:
        """cert-manager's `solvers[]` entry for this zone, authenticated as `identity` (no keys)."""
        ...


class HostRecords(pulumi.ComponentResource):
    """The app hosts' records in `zone`, all pointing at `target`."""

    def __init__(
        self,
        name: str,
        zone: DnsZone,
        hosts: list[str],
        target: pulumi.Input[str],
        ttl: int,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("clipper:dns:HostRecords", name, None, opts)
        self.records = {host: zone.record(host, target, ttl, pulumi.ResourceOptions(parent=self)) for host in sorted(hosts)}
        self.register_outputs({"hosts": sorted(hosts)})
