"""Building blocks of NetworkPolicy specs, shared by app and add-on namespaces."""
from __future__ import annotations

from typing import Iterable, Optional

from components.settings import DnsLabel, Settings


class DnsSettings(Settings):
    """Where the cluster DNS runs: every pod may send it queries, nothing else by default."""

    namespace: DnsLabel = "kube-system"
    pod_labels: dict[str, str] = {"k8s-app": "kube-dns"}


def port(number: int, protocol: str = "TCP") -> dict:
    return {"port": number, "protocol": protocol}


def in_namespace(namespace: str) -> dict:
    """A peer: every pod of one namespace (by the label Kubernetes sets on each namespace)."""
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def ip_blocks(cidrs: Iterable[str]) -> list[dict]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


def default_deny() -> dict:
    """Deny all traffic in both directions for every pod; other policies open paths on purpose."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def dns_egress(dns: DnsSettings) -> dict:
    peer = {**in_namespace(dns.namespace), "podSelector": {"matchLabels": dict(dns.pod_labels)}}
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [peer], "ports": [port(53, "UDP"), port(53, "TCP")]}],
    }


def ingress_from(peers: list[dict], ports: Iterable[int], pods: Optional[dict] = None) -> dict:
    """Let `peers` (all sources when empty) reach `pods` (all pods when None) on `ports`."""
    rule: dict = {"ports": [port(p) for p in ports]}
    if peers:
        rule["from"] = peers
    return {"podSelector": pods or {}, "policyTypes": ["Ingress"], "ingress": [rule]}


def egress_to(peers: list[dict], ports: Iterable[int], pods: Optional[dict] = None) -> dict:
    """Let `pods` (all pods when None) reach `peers` on `ports`."""
    return {
        "podSelector": pods or {},
        "policyTypes": ["Egress"],
        "egress": [{"to": peers, "ports": [port(p) for p in ports]}],
    }
