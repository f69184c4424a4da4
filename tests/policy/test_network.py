import pytest

from policies import kube
from policies.rules import network as net
from tests.policy.builders import meta, policy_resource, stack_violations, violations

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
HTTPROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


def ingress(hosts, tls_hosts):
    spec = {"rules": [{"host": h} if h else {} for h in hosts]}
    if tls_hosts is not None:
        spec["tls"] = [{"hosts": tls_hosts, "secretName": "tls"}]
    return {"metadata": meta("web"), "spec": spec}


@pytest.mark.parametrize("hosts, tls_hosts, expected", [
    (["app.clipper.dev"], ["app.clipper.dev"], []),
    (["app.clipper.dev", "api.clipper.dev"], ["*.clipper.dev"], []),
    (["app.clipper.dev"], None, ["Ingress has no spec.tls hosts"]),
    (["app.clipper.dev", "api.clipper.dev"], ["app.clipper.dev"], ["host api.clipper.dev is not covered by spec.tls"]),
    (["a.b.clipper.dev"], ["*.clipper.dev"], ["host a.b.clipper.dev is not covered by spec.tls"]),
    ([None], ["app.clipper.dev"], ["rules[0] has no host, so TLS cannot cover it"]),
])
def test_ingress_tls_covers_every_host(hosts, tls_hosts, expected):
    assert violations(net.INGRESS_TLS, kube.INGRESS, ingress(hosts, tls_hosts)) == expected


def gateway(listeners, name="edge", namespace="gateway"):
    return policy_resource(GATEWAY, {"metadata": meta(name, namespace), "spec": {
        "gatewayClassName": "nginx", "listeners": listeners}}, name)


def route(parent_refs):
    return policy_resource(HTTPROUTE, {"metadata": meta("web"), "spec": {"parentRefs": parent_refs}}, "web")


HTTPS = {"name": "https", "protocol": "HTTPS", "port": 443}
HTTP = {"name": "http", "protocol": "HTTP", "port": 80}


def redirect(parent_refs, rules):
    spec = {"parentRefs": parent_refs, "rules": rules}
    return policy_resource(HTTPROUTE, {"metadata": meta("https-redirect"), "spec": spec}, "https-redirect")


TO_HTTPS = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}


def test_a_route_that_only_redirects_to_https_may_use_an_http_listener():
    http = [{"name": "edge", "namespace": "gateway", "sectionName": "http"}]
    assert stack_violations(net.HTTPROUTE_HTTPS, [gateway([HTTP, HTTPS]), redirect(http, [{"filters": [TO_HTTPS]}])]) == []
    # Not when a rule still forwards to a backend, redirects elsewhere than https, or has no filter.
    backend = {"filters": [TO_HTTPS], "backendRefs": [{"name": "web", "port": 80}]}
    to_http = {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "http"}}]}
    for rules in ([backend], [{"filters": [TO_HTTPS]}, to_http], [{}], []):
        found = stack_violations(net.HTTPROUTE_HTTPS, [gateway([HTTP, HTTPS]), redirect(http, rules)])
        assert [message for _, message in found] == ["HTTPRoute https-redirect: Gateway gateway/edge listeners http are not HTTPS"]


def test_httproute_on_https_listener_passes():
    assert stack_violations(net.HTTPROUTE_HTTPS, [gateway([HTTPS]), route([{"name": "edge", "namespace": "gateway"}])]) == []
    section = {"name": "edge", "namespace": "gateway", "sectionName": "https"}
    assert stack_violations(net.HTTPROUTE_HTTPS, [gateway([HTTP, HTTPS]), route([section])]) == []


@pytest.mark.parametrize("gateways, refs, expected", [
    ([[HTTP, HTTPS]], [{"name": "edge", "namespace": "gateway"}], "Gateway gateway/edge listeners http are not HTTPS"),
    ([[HTTP, HTTPS]], [{"name": "edge", "namespace": "gateway", "sectionName": "http"}], "Gateway gateway/edge listeners http are not HTTPS"),
    ([[HTTPS]], [{"name": "missing", "namespace": "gateway"}], "Gateway gateway/missing is not declared in this stack, so its listeners cannot be checked"),
    ([[HTTPS]], [{"name": "edge"}], "Gateway apps/edge is not declared in this stack, so its listeners cannot be checked"),
    ([[HTTPS]], [{"name": "svc", "kind": "Service", "group": ""}], "parentRef svc is a Service, not a Gateway"),
    ([[HTTPS]], [], "HTTPRoute web has no parentRefs"),
])
def test_httproute_violations(gateways, refs, expected):
    resources = [gateway(listeners) for listeners in gateways] + [route(refs)]
    found = stack_violations(net.HTTPROUTE_HTTPS, resources)
    assert [m.removeprefix("HTTPRoute web: ") for _, m in found] == [expected]


def service(service_type, namespace="apps"):
    return {"metadata": meta("svc", namespace), "spec": {"type": service_type, "ports": [{"port": 80}]}}


def test_load_balancers_only_in_ingress_controller_namespaces():
    rule = net.NO_LOADBALANCER
    assert violations(rule, kube.SERVICE, service("LoadBalancer", "ingress-nginx")) == []
    assert violations(rule, kube.SERVICE, service("ClusterIP")) == []
    assert violations(rule, kube.SERVICE, service("LoadBalancer")) == [
        "Service of type LoadBalancer in namespace apps; only ingress-nginx may have one"]
    assert violations(rule, kube.SERVICE, service("LoadBalancer", "gw"), {"ingressControllerNamespaces": ["gw"]}) == []


def test_no_nodeport_services():
    assert violations(net.NO_NODEPORT, kube.SERVICE, service("ClusterIP")) == []
    assert violations(net.NO_NODEPORT, kube.SERVICE, service("NodePort")) == ["Service is of type NodePort"]
