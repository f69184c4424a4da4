"""Which connections a set of Kubernetes NetworkPolicies allows: an evaluator for tests, since the
local API server (kwok) enforces none. It follows the networking.k8s.io/v1 API reference
(NetworkPolicySpec, NetworkPolicyPeer, NetworkPolicyPort, LabelSelector):

- a pod is isolated for ingress (egress) only if a policy of its namespace selects it and has that
  policy type; `policyTypes` defaults to Ingress, plus Egress when the policy has egress rules;
- a connection is allowed iff the source's egress AND the destination's ingress allow it; a
  non-isolated side allows everything, an isolated side needs one rule (of any policy selecting it)
  whose peers and ports both match; policies only ever add;
- a rule without `from`/`to` (or with an empty list) matches every peer, and without `ports`
  every port; a peer's podSelector alone means the policy's own namespace, namespaceSelector alone
  every pod of the matching namespaces, both together the matching pods of those namespaces;
  an empty selector matches everything;
- ports: a number, a range (`endPort`), or a name resolved against the destination pod's
  container ports; protocol defaults to TCP.

Endpoints outside the cluster (the API server, kubelets, the internet) are matched by ipBlock only
and no policy governs their own side. Whether an ipBlock also matches in-cluster pod IPs is left
to the implementation by the API (Calico, the AWS VPC CNI and Azure NPM match them; Cilium does
not): `allowed(..., ipblock_matches_pods=...)` chooses, so a test can ask for a flow to be allowed
on every implementation (False) or denied on every implementation (True).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Union

METADATA_NAME = "kubernetes.io/metadata.name"  # the label Kubernetes puts on every namespace
# Where each workload kind keeps its pod template.
POD_TEMPLATES = {
    "Deployment": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}
PEER_FIELDS = {"podSelector", "namespaceSelector", "ipBlock"}


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"
    name: Optional[str] = None


@dataclass(eq=False)
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None)."""

    name: str
    ip: Optional[str] = None  # pods without one get the next address of the cluster's pod range
    namespace: Optional[str] = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()

    @property
    def in_cluster(self) -> bool:
        return self.namespace is not None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.in_cluster else f"{self.name} ({self.ip})"


def pod(name: str, namespace: str, labels: Optional[Mapping[str, str]] = None, ports: Iterable[Union[Port, int]] = (), ip: Optional[str] = None) -> Endpoint:
    return Endpoint(name, ip, namespace, dict(labels or {}), tuple(p if isinstance(p, Port) else Port(p) for p in ports))


def external(name: str, ip: str) -> Endpoint:
    return Endpoint(name, ip)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def selector_matches(selector: Mapping, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions ANDed; empty matches everything."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                raise ValueError(f"{operator} needs values: {expression}")
            found = key in labels and labels[key] in values
            if found != (operator == "In"):
                return False
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                raise ValueError(f"{operator} takes no values: {expression}")
            if (key in labels) != (operator == "Exists"):
                return False
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


def policy_types(spec: Mapping) -> set[str]:
    types = spec.get("policyTypes")
    if types:
        if not set(types) <= {"Ingress", "Egress"}:
            raise ValueError(f"unknown policyTypes {types}")
        return set(types)
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def in_ip_block(ip: str, block: Mapping) -> bool:
    address, network = ipaddress.ip_address(ip), ipaddress.ip_network(block["cidr"], strict=False)
    if address.version != network.version or address not in network:
        return False
    return not any(address in ipaddress.ip_network(cidr, strict=False) for cidr in block.get("except") or [])


class Cluster:
    """Namespaces, NetworkPolicies and endpoints, read from Kubernetes objects (dicts)."""

    def __init__(self, objects: Iterable[Mapping] = (), endpoints: Iterable[Endpoint] = (), pod_cidr: str = "10.128.0.0/14"):
        self.namespaces: dict[str, dict[str, str]] = {}
        self.policies: list[Mapping] = []
        self.endpoints: dict[str, Endpoint] = {}
        self._free_ips = ipaddress.ip_network(pod_cidr).hosts()
        workloads = []
        for obj in objects:
            kind, meta = obj.get("kind"), obj.get("metadata") or {}
            if kind == "Namespace":
                self.add_namespace(meta["name"], meta.get("labels"))
            elif kind == "NetworkPolicy":
                if "podSelector" not in (obj.get("spec") or {}):
                    raise ValueError(f"NetworkPolicy {meta.get('name')}: spec.podSelector is required")
                policy_types(obj["spec"])  # validates
                self.policies.append(obj)
            elif kind in POD_TEMPLATES:
                workloads.append(obj)
        for obj in workloads:
            self.add(self._pod_of(obj))
        for endpoint in endpoints:
            self.add(endpoint)

    def add_namespace(self, name: str, labels: Optional[Mapping[str, str]] = None) -> None:
        self.namespaces[name] = {**self.namespaces.get(name, {}), **(labels or {}), METADATA_NAME: name}

    def add(self, endpoint: Endpoint) -> Endpoint:
        """Register an endpoint; a pod's namespace comes into being with it if undeclared."""
        if endpoint.in_cluster:
            if endpoint.namespace not in self.namespaces:
                self.add_namespace(endpoint.namespace)
            if endpoint.ip is None:
                endpoint.ip = str(next(self._free_ips))
        elif endpoint.ip is None:
            raise ValueError(f"{endpoint.name}: an endpoint outside the cluster needs an IP")
        key = str(endpoint) if endpoint.in_cluster else endpoint.name
        if key in self.endpoints:
            raise ValueError(f"two endpoints named {key}")
        self.endpoints[key] = endpoint
        return endpoint

    def __getitem__(self, key: str) -> Endpoint:
        """An endpoint by `namespace/name` (pods; a workload's pods by the workload's name) or name."""
        return self.endpoints[key]

    @staticmethod
    def _pod_of(obj: Mapping) -> Endpoint:
        template = obj
        for key in POD_TEMPLATES[obj["kind"]]:
            template = template[key]
        spec = template.get("spec") or {}
        ports = [
            Port(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            for p in c.get("ports") or []
        ]
        meta = obj.get("metadata") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        return pod(meta["name"], meta.get("namespace") or "default", labels, ports)

    # --- evaluation -------------------------------------------------------------------------

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP", *, ipblock_matches_pods: bool) -> Verdict:
        egress = self._side("Egress", src, src, dst, port, protocol, ipblock_matches_pods)
        ingress = self._side("Ingress", dst, src, dst, port, protocol, ipblock_matches_pods)
        reason = f"{src} -> {dst} {port}/{protocol}: egress {egress.reason}; ingress {ingress.reason}"
        return Verdict(egress.allowed and ingress.allowed, reason)

    def _side(self, direction: str, subject: Endpoint, src: Endpoint, dst: Endpoint, port: int, protocol: str, ipblock_pods: bool) -> Verdict:
        if not subject.in_cluster:
            return Verdict(True, "not governed (outside the cluster)")
        selecting = [
            p for p in self.policies
            if _namespace(p) == subject.namespace
            and selector_matches(p["spec"]["podSelector"], subject.labels)
            and direction in policy_types(p["spec"])
        ]
        if not selecting:
            return Verdict(True, "not isolated")
        peer, peers_key = (dst, "to") if direction == "Egress" else (src, "from")
        for policy in selecting:
            for rule in policy["spec"].get(direction.lower()) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(q, _namespace(policy), peer, ipblock_pods) for q in peers):
                    continue
                if _ports_match(rule.get("ports") or [], dst, port, protocol):
                    return Verdict(True, f"allowed by {_namespace(policy)}/{policy['metadata']['name']}")
        names = ", ".join(p["metadata"]["name"] for p in selecting)
        return Verdict(False, f"DENIED (isolated by {names}; no rule matches)")

    def _peer_matches(self, peer: Mapping, policy_namespace: str, endpoint: Endpoint, ipblock_pods: bool) -> bool:
        if not peer or not set(peer) <= PEER_FIELDS:
            raise ValueError(f"invalid NetworkPolicyPeer {peer}")
        if "ipBlock" in peer:
            if len(peer) > 1:
                raise ValueError(f"ipBlock cannot be combined with selectors: {peer}")
            if endpoint.in_cluster and not ipblock_pods:
                return False
            return in_ip_block(endpoint.ip, peer["ipBlock"])
        if not endpoint.in_cluster:
            return False
        namespaces = peer.get("namespaceSelector")
        if namespaces is None:
            in_namespace = endpoint.namespace == policy_namespace
        else:
            in_namespace = selector_matches(namespaces, self.namespaces[endpoint.namespace])
        pods = peer.get("podSelector")
        return in_namespace and (pods is None or selector_matches(pods, endpoint.labels))


def _namespace(obj: Mapping) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def _ports_match(ports: list[Mapping], dst: Endpoint, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        value = entry.get("port")
        if value is None:
            return True
        if isinstance(value, str):  # a named port: the destination pod's container port of that name
            if "endPort" in entry:
                raise ValueError(f"endPort needs a numeric port: {entry}")
            if any(p.name == value and p.protocol == protocol and p.number == port for p in dst.ports if dst.in_cluster):
                return True
        elif value <= port <= entry.get("endPort", value):
            return True
    return False
