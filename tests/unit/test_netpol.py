"""The NetworkPolicy evaluator (tests/netpol.py) on small hand-written policies: each rule of the
API's semantics, with the connections it must allow and the ones it must deny."""
from __future__ import annotations

import pytest

from tests.netpol import Cluster, Port, external, pod


def policy(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
WEB = {"app": "web"}


def cluster(*policies: dict, namespaces=()) -> Cluster:
    return Cluster([*namespaces, *policies])


def check(c: Cluster, src, dst, port: int, protocol: str = "TCP", pods_in_ipblock: bool = False) -> bool:
    return c.allowed(src, dst, port, protocol, ipblock_matches_pods=pods_in_ipblock).allowed


# --- isolation and policy types -------------------------------------------------------------


def test_without_policies_everything_is_allowed():
    c = cluster()
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "other"))
    assert check(c, a, b, 80) and check(c, b, a, 53, "UDP")


def test_a_policy_with_no_rules_isolates_only_the_pods_it_selects():
    c = cluster(policy("web-deny", "ns", {"podSelector": {"matchLabels": WEB}}))
    web, db, client = c.add(pod("web", "ns", WEB)), c.add(pod("db", "ns", {"app": "db"})), c.add(pod("client", "ns"))
    assert not check(c, client, web, 80)
    assert check(c, client, db, 5432)  # not selected: not isolated
    assert check(c, web, db, 5432)  # policyTypes defaulted to Ingress: web's egress stays open


def test_policy_types_default_to_egress_too_when_egress_rules_are_present():
    # No policyTypes and an egress rule: the policy isolates both directions (Ingress is always in).
    c = cluster(policy("egress-only-rules", "ns", {"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}))
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "elsewhere"))
    assert check(c, a, b, 53, "UDP")
    assert not check(c, a, b, 80)  # egress isolated
    assert not check(c, b, a, 53, "UDP")  # ingress isolated too, and no ingress rule
    # An empty egress list is no egress rule: Ingress only.
    c2 = cluster(policy("empty-egress", "ns", {"podSelector": {}, "egress": []}))
    x, y = c2.add(pod("x", "ns")), c2.add(pod("y", "other"))
    assert check(c2, x, y, 80) and not check(c2, y, x, 80)


def test_egress_only_policy_type_leaves_ingress_open():
    c = cluster(policy("egress", "ns", {"podSelector": {}, "policyTypes": ["Egress"]}))
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "other"))
    assert not check(c, a, b, 80)
    assert check(c, b, a, 80)


def test_both_sides_must_allow():
    allow_out = policy("out", "src", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    deny_in = policy("in", "dst", {"podSelector": {}, "policyTypes": ["Ingress"]})
    c = cluster(allow_out, deny_in)
    a, b = c.add(pod("a", "src")), c.add(pod("b", "dst"))
    assert not check(c, a, b, 80)
    c = cluster(policy("out", "src", {"podSelector": {}, "policyTypes": ["Egress"]}), policy("in", "dst", {"podSelector": {}, "ingress": [{}]}))
    a, b = c.add(pod("a", "src")), c.add(pod("b", "dst"))
    assert not check(c, a, b, 80)
    c = cluster(allow_out, policy("in", "dst", {"podSelector": {}, "ingress": [{}]}))
    a, b = c.add(pod("a", "src")), c.add(pod("b", "dst"))
    assert check(c, a, b, 80)


def test_policies_add_up_and_apply_only_in_their_namespace():
    c = cluster(
        policy("deny", "ns", DENY_ALL),
        policy("http", "ns", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
        policy("https", "ns", {"podSelector": {}, "ingress": [{"ports": [{"port": 443}]}]}),
        policy("all-in-other-ns", "other", {"podSelector": {}, "ingress": [{}]}),
    )
    a, b = c.add(pod("a", "other")), c.add(pod("b", "ns"))
    assert check(c, a, b, 80) and check(c, a, b, 443)
    assert not check(c, a, b, 8080)
    assert not check(c, b, a, 80)  # b's egress is isolated by its own namespace's default-deny


def test_a_policy_with_an_empty_ingress_list_allows_nothing():
    c = cluster(policy("none", "ns", {"podSelector": {}, "ingress": []}))
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "ns"))
    assert not check(c, a, b, 80)


# --- peers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [{}, {"from": []}, {"ports": [{"port": 80}]}])
def test_missing_or_empty_from_means_every_source(rule):
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [rule]}))
    b = c.add(pod("b", "ns"))
    for src in (c.add(pod("a", "other")), c.add(external("internet", "198.51.100.7"))):
        assert check(c, src, b, 80)


def test_missing_or_empty_to_means_every_destination():
    c = cluster(policy("p", "ns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [], "ports": [{"port": 443}]}]}))
    a = c.add(pod("a", "ns"))
    assert check(c, a, c.add(pod("b", "other")), 443)
    assert check(c, a, c.add(external("internet", "198.51.100.7")), 443)
    assert not check(c, a, c["other/b"], 80)


def test_pod_selector_alone_means_the_policys_own_namespace():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": WEB}}]}]}))
    dst = c.add(pod("dst", "ns"))
    assert check(c, c.add(pod("web", "ns", WEB)), dst, 80)
    assert not check(c, c.add(pod("web", "other", WEB)), dst, 80)  # same labels, other namespace
    assert not check(c, c.add(pod("api", "ns", {"app": "api"})), dst, 80)


def test_namespace_selector_alone_means_every_pod_of_matching_namespaces():
    ns_peer = {"namespaceSelector": {"matchLabels": {"team": "edge"}}}
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [ns_peer]}]}), namespaces=[namespace("edge", team="edge"), namespace("core", team="core")])
    dst = c.add(pod("dst", "ns"))
    assert check(c, c.add(pod("any", "edge", {"x": "y"})), dst, 80)
    assert not check(c, c.add(pod("any", "core")), dst, 80)
    assert not check(c, c.add(pod("local", "ns")), dst, 80)  # its own namespace does not match


def test_every_namespace_carries_its_metadata_name_label():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}}]}]}))
    dst = c.add(pod("dst", "ns"))
    assert check(c, c.add(pod("a", "edge")), dst, 80)  # namespace created by the pod, label set
    assert not check(c, c.add(pod("a", "edge2")), dst, 80)


def test_namespace_and_pod_selector_in_one_peer_are_anded_in_two_peers_ored():
    both = {"namespaceSelector": {"matchLabels": {"team": "edge"}}, "podSelector": {"matchLabels": WEB}}
    either = [{"namespaceSelector": {"matchLabels": {"team": "edge"}}}, {"podSelector": {"matchLabels": WEB}}]
    edge = namespace("edge", team="edge")
    c = cluster(policy("and", "ns", {"podSelector": {"matchLabels": {"rule": "and"}}, "ingress": [{"from": [both]}]}),
                policy("or", "ns", {"podSelector": {"matchLabels": {"rule": "or"}}, "ingress": [{"from": either}]}), namespaces=[edge])
    anded, ored = c.add(pod("anded", "ns", {"rule": "and"})), c.add(pod("ored", "ns", {"rule": "or"}))
    edge_web, edge_db, local_web = c.add(pod("web", "edge", WEB)), c.add(pod("db", "edge")), c.add(pod("web", "ns", WEB))
    assert check(c, edge_web, anded, 80)
    assert not check(c, edge_db, anded, 80)  # right namespace, wrong pod
    assert not check(c, local_web, anded, 80)  # right pod, wrong namespace
    assert check(c, edge_db, ored, 80) and check(c, local_web, ored, 80)


def test_empty_selectors_match_everything_in_cluster_but_not_outside():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
                policy("q", "ns2", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    dst, dst2 = c.add(pod("dst", "ns")), c.add(pod("dst", "ns2"))
    assert check(c, c.add(pod("a", "anywhere")), dst, 80)
    assert not check(c, c.add(external("internet", "198.51.100.7")), dst, 80)
    assert check(c, c.add(pod("b", "ns2", {"any": "thing"})), dst2, 80)
    assert not check(c, c["anywhere/a"], dst2, 80)


def test_ip_block_with_except():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "172.16.0.0/16", "except": ["172.16.1.0/24"]}}]}]}))
    dst = c.add(pod("dst", "ns"))
    assert check(c, c.add(external("in-range", "172.16.0.9")), dst, 443)
    assert not check(c, c.add(external("excepted", "172.16.1.9")), dst, 443)
    assert not check(c, c.add(external("outside", "172.17.0.1")), dst, 443)
    assert not check(c, c.add(external("ipv6", "2001:db8::1")), dst, 443)


def test_ip_block_and_pod_ips_is_the_callers_choice():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}))
    dst, other = c.add(pod("dst", "ns")), c.add(pod("other", "elsewhere"))
    assert not check(c, other, dst, 443, pods_in_ipblock=False)  # e.g. Cilium
    assert check(c, other, dst, 443, pods_in_ipblock=True)  # e.g. Calico
    # Pods get addresses of the cluster's pod range: a block elsewhere does not match them either way.
    c2 = Cluster([policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "172.16.0.0/28"}}]}]})], pod_cidr="10.128.0.0/14")
    dst2, other2 = c2.add(pod("dst", "ns")), c2.add(pod("other", "elsewhere"))
    assert other2.ip.startswith("10.")
    assert not check(c2, other2, dst2, 443, pods_in_ipblock=True)


def test_sources_outside_the_cluster_are_not_subject_to_egress_and_destinations_outside_to_no_ingress():
    c = cluster(policy("deny", "ns", DENY_ALL), policy("to-db", "ns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}], "ports": [{"port": 5432}]}]}))
    a, db, api = c.add(pod("a", "ns")), c.add(external("db", "10.20.0.5")), c.add(external("api", "172.16.0.2"))
    assert check(c, a, db, 5432)
    assert not check(c, a, db, 5433)
    assert not check(c, a, api, 443)
    assert not check(c, api, a, 443)  # a's ingress is isolated; the API server's own side is not governed
    assert check(c, api, db, 5432)  # nothing governs traffic between two outside endpoints


# --- selectors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression,labels,matches",
    [
        ({"key": "tier", "operator": "In", "values": ["web", "api"]}, {"tier": "api"}, True),
        ({"key": "tier", "operator": "In", "values": ["web", "api"]}, {"tier": "db"}, False),
        ({"key": "tier", "operator": "In", "values": ["web"]}, {}, False),
        ({"key": "tier", "operator": "NotIn", "values": ["db"]}, {"tier": "web"}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["db"]}, {"tier": "db"}, False),
        ({"key": "tier", "operator": "NotIn", "values": ["db"]}, {}, True),  # absent key: not in
        ({"key": "tier", "operator": "Exists"}, {"tier": ""}, True),
        ({"key": "tier", "operator": "Exists"}, {"other": "x"}, False),
        ({"key": "tier", "operator": "DoesNotExist"}, {}, True),
        ({"key": "tier", "operator": "DoesNotExist"}, {"tier": "web"}, False),
    ],
)
def test_match_expressions(expression, labels, matches):
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [expression]}}]}]}))
    assert check(c, c.add(pod("src", "ns", labels)), c.add(pod("dst", "ns")), 80) is matches


def test_match_labels_and_expressions_are_anded():
    selector = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}
    c = cluster(policy("p", "ns", {"podSelector": selector}))  # isolates the selected pods only
    src = c.add(pod("src", "ns"))
    assert not check(c, src, c.add(pod("stable", "ns", {"app": "web"})), 80)
    assert check(c, src, c.add(pod("canary", "ns", {"app": "web", "canary": "1"})), 80)
    assert check(c, src, c.add(pod("other", "ns", {"app": "api"})), 80)


# --- ports ------------------------------------------------------------------------------------


def test_ports_protocol_defaults_to_tcp():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"ports": [{"port": 53}]}, {"ports": [{"port": 123, "protocol": "UDP"}]}]}))
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "ns"))
    assert check(c, a, b, 53) and not check(c, a, b, 53, "UDP")
    assert check(c, a, b, 123, "UDP") and not check(c, a, b, 123)


def test_port_ranges_include_both_ends():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"ports": [{"port": 32000, "endPort": 32768}]}]}))
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "ns"))
    assert check(c, a, b, 32000) and check(c, a, b, 32768) and check(c, a, b, 32100)
    assert not check(c, a, b, 31999) and not check(c, a, b, 32769)


def test_a_port_entry_without_a_number_is_every_port_of_its_protocol():
    c = cluster(policy("p", "ns", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}))
    a, b = c.add(pod("a", "ns")), c.add(pod("b", "ns"))
    assert check(c, a, b, 9999, "UDP") and not check(c, a, b, 9999)


def test_named_ports_resolve_against_the_destination_pods_container_ports():
    ingress = policy("in", "ns", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})
    egress = policy("out", "client", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "metrics"}]}]})
    c = cluster(ingress, egress)
    server = c.add(pod("server", "ns", ports=[Port(8080, name="http"), Port(9090, name="metrics")]))
    other = c.add(pod("other", "ns", ports=[Port(9000, name="http")]))
    udp = c.add(pod("udp", "ns", ports=[Port(8080, "UDP", "http")]))
    client = c.add(pod("client", "client", ports=[Port(7000, name="metrics")]))
    free = c.add(pod("free", "free"))
    assert check(c, free, server, 8080)
    assert not check(c, free, server, 9090)
    assert check(c, free, other, 9000) and not check(c, free, other, 8080)  # each pod its own number
    assert not check(c, free, udp, 8080)  # the name is TCP on no container port
    assert not check(c, free, udp, 8080, "UDP")  # the rule's protocol (TCP) does not match
    # Egress resolves the name against the destination, not the source: "metrics" is 9090 there.
    assert not check(c, client, server, 8080)
    assert not check(c, client, server, 7000)
    outside_ingress = policy("in2", "ns", {"podSelector": {}, "ingress": [{"ports": [{"port": "metrics"}]}]})
    c2 = cluster(outside_ingress, egress)
    server2, client2 = c2.add(pod("server", "ns", ports=[Port(9090, name="metrics")])), c2.add(pod("client", "client"))
    assert check(c2, client2, server2, 9090)
    assert not check(c2, client2, c2.add(external("internet", "198.51.100.7")), 9090)  # no container ports outside


# --- objects ----------------------------------------------------------------------------------


def _template(labels: dict, ports: list) -> dict:
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "ports": ports}]}}


def test_pods_come_from_workload_templates():
    objects = [
        {"kind": "Deployment", "metadata": {"name": "web", "namespace": "apps"}, "spec": {"template": _template({"app": "web"}, [{"name": "http", "containerPort": 8080}])}},
        {"kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "ops"}, "spec": {"template": _template({"app": "agent"}, [{"containerPort": 9100}])}},
        {"kind": "StatefulSet", "metadata": {"name": "db", "namespace": "apps"}, "spec": {"template": _template({"app": "db"}, [{"containerPort": 5432}])}},
        {"kind": "Job", "metadata": {"name": "migrate", "namespace": "apps"}, "spec": {"template": _template({"app": "migrate"}, [])}},
        {"kind": "CronJob", "metadata": {"name": "backup"}, "spec": {"jobTemplate": {"spec": {"template": _template({"app": "backup"}, [{"containerPort": 53, "protocol": "UDP"}])}}}},
        {"kind": "Service", "metadata": {"name": "web", "namespace": "apps"}, "spec": {}},
    ]
    c = Cluster(objects)
    assert sorted(c.endpoints) == ["apps/db", "apps/migrate", "apps/web", "default/backup", "ops/agent"]
    assert c["apps/web"].labels == {"app": "web"} and c["apps/web"].ports == (Port(8080, "TCP", "http"),)
    assert c["default/backup"].ports == (Port(53, "UDP"),)
    assert len({e.ip for e in c.endpoints.values()}) == 5
    assert c.namespaces["ops"] == {"kubernetes.io/metadata.name": "ops"}


def test_declared_namespace_labels_are_kept_and_the_name_label_is_added():
    c = Cluster([namespace("apps", team="core")])
    assert c.namespaces["apps"] == {"team": "core", "kubernetes.io/metadata.name": "apps"}


@pytest.mark.parametrize(
    "spec",
    [
        {"podSelector": {}, "ingress": [{"from": [{}]}]},
        {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}]}]},
        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}]},
        {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
    ],
)
def test_invalid_policies_are_rejected_not_guessed(spec):
    c = cluster(policy("bad", "ns", spec))
    with pytest.raises(ValueError):
        check(c, c.add(pod("a", "ns", {"a": "b"}, ports=[Port(80, name="http")])), c.add(pod("b", "ns", ports=[Port(80, name="http")])), 80)


def test_a_policy_without_pod_selector_or_with_unknown_types_is_rejected():
    with pytest.raises(ValueError):
        Cluster([policy("bad", "ns", {"ingress": [{}]})])
    with pytest.raises(ValueError):
        Cluster([policy("bad", "ns", {"podSelector": {}, "policyTypes": ["Inbound"]})])
