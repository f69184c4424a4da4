"""How traffic reaches workloads: TLS at the edge, and no exposure beside the ingress controller."""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import PolicyResource

from policies import kube
from policies.framework import ResourceRule, StackRule


def tls_covers(tls_host: str, host: str) -> bool:
    """Whether a TLS host entry (possibly a one-label wildcard) covers a rule host."""
    if tls_host == host:
        return True
    if tls_host.startswith("*.") and not host.startswith("*."):
        return "." in host and host.split(".", 1)[1] == tls_host[2:]
    return False


def _uncovered_hosts(resource: Any, config: Mapping) -> Iterator[str]:
    spec = kube.mapping(resource.props.get("spec"))
    tls_hosts = [h for entry in kube.sequence(spec.get("tls")) for h in kube.sequence(kube.mapping(entry).get("hosts"))]
    if not tls_hosts:
        yield "Ingress has no spec.tls hosts"
    for index, rule in enumerate(kube.sequence(spec.get("rules"))):
        host = kube.mapping(rule).get("host")
        if not host:
            # A rule without a host matches any Host header, which no certificate can cover.
            yield f"rules[{index}] has no host, so TLS cannot cover it"
        elif tls_hosts and not any(tls_covers(t, host) for t in tls_hosts):
            yield f"host {host} is not covered by spec.tls"


INGRESS_TLS = ResourceRule(
    name="ingress-tls-required",
    description="Ingresses terminate TLS for every rule host.",
    rationale="Plain HTTP exposes session cookies and tokens on the wire and lets anyone on the "
    "path rewrite responses.",
    remediation="Add spec.tls entries (with a cert-manager issued secretName) whose hosts cover every "
    "spec.rules[].host; give every rule a host.",
    resource_types=(kube.INGRESS,),
    check=_uncovered_hosts,
)

_GATEWAY_GROUP = "gateway.networking.k8s.io"


def _find_gateway(resources: Sequence[PolicyResource], namespace: str, name: str) -> Optional[PolicyResource]:
    for resource in resources:
        if (
            kube.is_gateway_api_kind(resource.resource_type, "Gateway")
            and kube.object_namespace(resource) == namespace
            and kube.object_name(resource) == name
        ):
            return resource
    return None


def _parent_problem(resources: Sequence[PolicyResource], route: PolicyResource, ref: Mapping) -> Optional[str]:
    if ref.get("group", _GATEWAY_GROUP) != _GATEWAY_GROUP or ref.get("kind", "Gateway") != "Gateway":
        return f"parentRef {ref.get('name')} is a {ref.get('kind')}, not a Gateway"
    namespace = ref.get("namespace") or kube.object_namespace(route)
    gateway = _find_gateway(resources, namespace, ref.get("name"))
    if gateway is None:
        return f"Gateway {namespace}/{ref.get('name')} is not declared in this stack, so its listeners cannot be checked"
    listeners = [kube.mapping(entry) for entry in kube.sequence(kube.get_path(gateway.props, "spec", "listeners"))]
    section = ref.get("sectionName")
    if section:
        # The route attaches to that one listener only.
        listeners = [entry for entry in listeners if entry.get("name") == section]
        if not listeners:
            return f"Gateway {namespace}/{ref.get('name')} has no listener named {section}"
    # Without sectionName the route attaches to every listener, so all of them must be HTTPS.
    plain = [str(entry.get("name")) for entry in listeners if entry.get("protocol") != "HTTPS"]
    if plain:
        return f"Gateway {namespace}/{ref.get('name')} listeners {', '.join(plain)} are not HTTPS"
    return None


def redirects_to_https_only(route: PolicyResource) -> bool:
    """Whether every rule of the route answers with a redirect to https and forwards nothing:
    such a route serves no content in plain text (it is how HTTP listeners send clients to HTTPS)."""
    rules = [kube.mapping(rule) for rule in kube.sequence(kube.get_path(route.props, "spec", "rules"))]

    def redirects(rule: Mapping) -> bool:
        filters = [kube.mapping(f) for f in kube.sequence(rule.get("filters"))]
        return not kube.sequence(rule.get("backendRefs")) and any(
            f.get("type") == "RequestRedirect" and kube.get_path(f, "requestRedirect", "scheme") == "https"
            for f in filters)

    return bool(rules) and all(redirects(rule) for rule in rules)


def _routes_without_https(resources: Sequence[PolicyResource], config: Mapping) -> Iterator[tuple[PolicyResource, str]]:
    for route in resources:
        if not kube.is_gateway_api_kind(route.resource_type, "HTTPRoute") or redirects_to_https_only(route):
            continue
        refs = [kube.mapping(entry) for entry in kube.sequence(kube.get_path(route.props, "spec", "parentRefs"))]
        if not refs:
            yield route, f"HTTPRoute {kube.object_name(route)} has no parentRefs"
        for ref in refs:
            problem = _parent_problem(resources, route, ref)
            if problem:
                yield route, f"HTTPRoute {kube.object_name(route)}: {problem}"


HTTPROUTE_HTTPS = StackRule(
    name="httproute-https-gateway",
    description="Gateway API HTTPRoutes attach only to HTTPS listeners of Gateways declared in the stack "
    "(routes that only redirect to https excepted).",
    rationale="The Gateway API equivalent of ingress-tls-required: a route bound to an HTTP "
    "listener serves in plain text.",
    remediation="Point parentRefs at a Gateway declared by the program, with sectionName naming an "
    "HTTPS listener (or a Gateway whose listeners are all HTTPS).",
    check=_routes_without_https,
)


def _exposed_load_balancers(resource: Any, config: Mapping) -> Iterator[str]:
    if kube.get_path(resource.props, "spec", "type") != "LoadBalancer":
        return
    namespace = kube.object_namespace(resource)
    if namespace not in config["ingressControllerNamespaces"]:
        yield (
            f"Service of type LoadBalancer in namespace {namespace}; only "
            f"{', '.join(config['ingressControllerNamespaces'])} may have one"
        )


NO_LOADBALANCER = ResourceRule(
    name="no-loadbalancer-outside-ingress",
    description="Services of type LoadBalancer exist only in the ingress controller namespaces.",
    rationale="Each LoadBalancer is a public entry point that bypasses the ingress controller's "
    "TLS, WAF and logging, and costs money.",
    remediation="Use a ClusterIP Service behind an Ingress or HTTPRoute; list a namespace in "
    "ingressControllerNamespaces only for an ingress controller.",
    resource_types=(kube.SERVICE,),
    check=_exposed_load_balancers,
    config_properties={
        "ingressControllerNamespaces": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["ingress-nginx"],
            "description": "Namespaces whose Services may be of type LoadBalancer.",
        },
    },
)


def _node_ports(resource: Any, config: Mapping) -> Iterator[str]:
    if kube.get_path(resource.props, "spec", "type") == "NodePort":
        yield "Service is of type NodePort"


NO_NODEPORT = ResourceRule(
    name="no-nodeport-services",
    description="No Service is of type NodePort.",
    rationale="NodePorts open the same port on every node, outside NetworkPolicies' usual "
    "ingress paths and the ingress controller.",
    remediation="Use a ClusterIP Service behind an Ingress or HTTPRoute.",
    resource_types=(kube.SERVICE,),
    check=_node_ports,
)

RULES = [INGRESS_TLS, HTTPROUTE_HTTPS, NO_LOADBALANCER, NO_NODEPORT]
