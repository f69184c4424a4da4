"""What the program registers for the real stack files: the runbook's guard rails, as properties."""
import pytest

from infra.simulate import simulate, stack_config


def _meta(resource):
    return resource.inputs.get("metadata") or {}


def _pod_spec(deployment):
    return deployment.inputs["spec"]["template"]["spec"]


def _policies_in(sim, namespace):
    return [p for p in sim.of_type("NetworkPolicy") if _meta(p)["namespace"] == namespace]


def test_each_baseline_namespace_has_psa_labels_quota_limits_and_default_deny(stack_run):
    config = stack_config(stack_run.stack)
    for name, settings in config["namespaces"].items():
        labels = _meta(stack_run.one("Namespace", name))["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == settings.get("podSecurity", "restricted")
        policies = {_meta(p)["name"]: p.inputs["spec"] for p in _policies_in(stack_run, name)}
        assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        dns = policies["allow-dns"]["egress"][0]
        assert {"port": 53, "protocol": "UDP"} in dns["ports"]
        assert [q for q in stack_run.of_type("ResourceQuota") if _meta(q)["namespace"] == name]
        assert [q for q in stack_run.of_type("LimitRange") if _meta(q)["namespace"] == name]


def test_production_enforces_restricted_pod_security(production):
    assert _meta(production.one("Namespace", "clipper-production"))["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_pod_security_level_is_configurable():
    sim = simulate("staging", {"namespaces.clipper-staging.podSecurity": "baseline"})
    assert _meta(sim.one("Namespace", "clipper-staging"))["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"


def test_app_traffic_ingress_and_database_egress_are_opened_only_where_declared(production):
    policies = {_meta(p)["name"]: p.inputs["spec"] for p in _policies_in(production, "clipper-production")}
    to_backend = policies["allow-frontend-to-backend-ingress"]
    assert to_backend["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "backend"
    assert to_backend["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "frontend"
    assert to_backend["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert "allow-backend-to-frontend-ingress" not in policies
    from_controller = policies["allow-ingress-to-frontend"]["ingress"][0]["from"][0]
    assert from_controller == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    database = policies["allow-egress-database"]
    assert database["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert database["podSelector"]["matchExpressions"][0]["values"] == ["backend"]


def test_every_deployment_is_limited_probed_and_locked_down(stack_run):
    deployments = stack_run.of_type("Deployment")
    assert {_meta(d)["name"] for d in deployments} == set(stack_config(stack_run.stack)["apps"])
    for deployment in deployments:
        pod = _pod_spec(deployment)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
        assert deployment.inputs["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        for container in pod["containers"]:
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["port"] == "http"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 10000
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_ingress_has_tls_for_its_host_from_cert_manager(stack_run):
    ingresses = stack_run.of_type("Ingress")
    assert ingresses
    certificates = {_meta(c)["name"]: c.inputs["spec"] for c in stack_run.of_type("Certificate")}
    for ingress in ingresses:
        spec = ingress.inputs["spec"]
        hosts = {rule["host"] for rule in spec["rules"]}
        tls_hosts = {h for tls in spec["tls"] for h in tls["hosts"]}
        assert hosts <= tls_hosts
        secret = spec["tls"][0]["secretName"]
        certificate = certificates[_meta(ingress)["name"]]
        assert certificate["secretName"] == secret and set(certificate["dnsNames"]) == hosts
        assert certificate["issuerRef"] == {"kind": "ClusterIssuer", "name": "letsencrypt-production"}


def test_production_apps_have_autoscaler_and_disruption_budget(production):
    for app in stack_config("production")["apps"]:
        hpa = production.one("HorizontalPodAutoscaler", app).inputs["spec"]
        assert hpa["scaleTargetRef"]["name"] == app and hpa["minReplicas"] >= 2
        pdb = production.one("PodDisruptionBudget", app).inputs["spec"]
        assert pdb["selector"]["matchLabels"]["app.kubernetes.io/name"] == app
        # the autoscaler owns the replica count
        assert "replicas" not in production.one("Deployment", app).inputs["spec"]


def test_replicas_are_declared_when_autoscaling_is_off():
    sim = simulate("staging", {"apps.frontend.autoscaling.enabled": False, "apps.frontend.replicas": 3})
    assert sim.one("Deployment", "frontend").inputs["spec"]["replicas"] == 3
    assert not [h for h in sim.of_type("HorizontalPodAutoscaler") if _meta(h)["name"] == "frontend"]


def test_migration_job_runs_before_the_deployment_rolls(production):
    [job] = production.of_type("Job")
    assert _meta(job)["name"].startswith("backend-migrate-")
    container = job.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/app/api", "migrate", "up"]
    assert container["image"] == stack_config("production")["apps"]["backend"]["image"]
    assert job.inputs["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job.urn in production.one("Deployment", "backend").dependencies
    # migration pods must not receive Service traffic
    assert job.inputs["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "backend-migrate"


def test_new_image_gets_a_new_migration_job(production):
    before = _meta(production.of_type("Job")[0])["name"]
    after = _meta(simulate("production", {"apps.backend.image": "ghcr.io/clpr-tv/backend:1.5.0"}).of_type("Job")[0])["name"]
    assert before != after


def test_app_secrets_come_from_external_secrets(production):
    external = production.one("ExternalSecret", "backend-secrets").inputs["spec"]
    assert external["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "cloud-secrets"}
    assert {d["secretKey"] for d in external["data"]} == {"DATABASE_URL", "JWT_SIGNING_KEY"}
    env = production.one("Deployment", "backend").inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert refs == {"DATABASE_URL": "backend-secrets", "JWT_SIGNING_KEY": "backend-secrets"}
    assert not production.of_type("Secret"), "the program must not hold secret values"


def test_rbac_binds_groups_and_keeps_the_deployer_least_privileged(production):
    bindings = {_meta(b)["name"]: b.inputs for b in production.of_type("RoleBinding")}
    assert bindings["view"]["roleRef"]["name"] == "view"
    assert bindings["view"]["subjects"] == [{"kind": "Group", "name": "developers", "apiGroup": "rbac.authorization.k8s.io"}]
    assert bindings["admin"]["roleRef"] == {"kind": "ClusterRole", "name": "admin", "apiGroup": "rbac.authorization.k8s.io"}
    assert {"kind": "ServiceAccount", "name": "deployer", "namespace": "clipper-production"} in bindings["deployer"]["subjects"]
    rules = production.one("Role", "deployer").inputs["rules"]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)
    assert not any("secrets" in r["resources"] for r in rules)
    assert production.one("ServiceAccount", "deployer").inputs["automountServiceAccountToken"] is False


def test_deployer_may_read_secrets_only_when_configured():
    rules = simulate("production", {"rbac.deployerReadsSecrets": True}).one("Role", "deployer").inputs["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]} in rules


def test_cluster_issuers_wait_for_cert_manager(production):
    release = production.one("kubernetes:helm.sh/v4:Chart", "cert-manager")
    assert release.inputs["version"] == stack_config("production")["addons"]["cert-manager"]["version"]
    issuers = production.of_type("ClusterIssuer")
    assert {_meta(i)["name"] for i in issuers} == {"letsencrypt-staging", "letsencrypt-production"}
    for issuer in issuers:
        assert release.urn in issuer.dependencies
        assert issuer.inputs["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]


@pytest.mark.parametrize(
    "addon,kinds",
    [
        ("cert-manager", ["clipper:addons:CertManager", "ClusterIssuer", "Certificate"]),
        # Ingress objects stay: they serve a controller the cluster already runs.
        ("ingress-nginx", []),
    ],
)
def test_disabled_addons_register_nothing(addon, kinds, production):
    enabled = production
    sim = simulate("production", {f"addons.{addon}.enabled": False})
    assert [r for r in enabled.of_type("kubernetes:helm.sh/v4:Chart") if r.name == addon]
    assert not [r for r in sim.of_type("kubernetes:helm.sh/v4:Chart") if r.name == addon]
    assert not [r for r in sim.of_type("clipper:addons:HelmAddon") if r.name == addon]
    assert not [r for r in sim.of_type("Namespace") if r.name == f"{addon}-namespace"]
    for kind in kinds:
        assert enabled.of_type(kind) and not sim.of_type(kind), kind


def test_disabling_external_secrets_removes_operator_and_store():
    sim = simulate("production", {"addons.external-secrets.enabled": False, "apps.backend.secrets": {}})
    assert not sim.of_type("ClusterSecretStore") and not sim.of_type("ExternalSecret")
    assert not [r for r in sim.resources if r.name.startswith("external-secrets")]


def test_metrics_server_is_installed_only_where_the_cloud_runs_none(production):
    eks = simulate("production", {"cloud": "eks"})
    assert [r.name for r in eks.of_type("kubernetes:helm.sh/v4:Chart") if r.name == "metrics-server"]
    # GKE (production's cloud) and AKS ship their own: a second one collides on its APIService.
    assert not [r for r in production.of_type("kubernetes:helm.sh/v4:Chart") if r.name == "metrics-server"]
    off = simulate("production", {"cloud": "eks", "addons.metrics-server.enabled": False})
    assert not [r for r in off.of_type("clipper:addons:HelmAddon") if r.name == "metrics-server"]


def test_gateway_controller_routes_with_httproutes_over_https():
    sim = simulate("production", {"ingress.controller": "gateway"})
    assert not sim.of_type("Ingress")
    # The chosen controller is installed, and only that one.
    assert {r.name for r in sim.of_type("kubernetes:helm.sh/v4:Chart")} >= {"envoy-gateway"}
    assert not [r for r in sim.of_type("kubernetes:helm.sh/v4:Chart") if r.name == "ingress-nginx"]
    routes = {_meta(r)["name"]: r.inputs["spec"] for r in sim.of_type("HTTPRoute")}
    redirect = routes.pop("https-redirect")
    assert redirect["parentRefs"] == [{"name": "public", "sectionName": "http"}]
    assert redirect["rules"][0]["filters"][0]["requestRedirect"]["scheme"] == "https"
    assert set(routes) == {"backend", "frontend"}
    [gateway] = sim.of_type("Gateway")
    listeners = {l.get("hostname"): l for l in gateway.inputs["spec"]["listeners"]}
    # HTTP-01 works through the Gateway: an HTTP listener, cert-manager's Gateway API support, and
    # issuers that attach challenge routes to that listener.
    assert listeners[None]["port"] == 80 and listeners[None]["protocol"] == "HTTP"
    assert sim.one("kubernetes:helm.sh/v4:Chart", "cert-manager").inputs["values"]["config"]["enableGatewayAPI"] is True
    for issuer in sim.of_type("ClusterIssuer"):
        [solver] = issuer.inputs["spec"]["acme"]["solvers"]
        assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [
            {"name": "public", "namespace": "clipper-production", "kind": "Gateway", "sectionName": "http"}
        ]
    for route in routes.values():
        [host] = route["hostnames"]
        assert listeners[host]["protocol"] == "HTTPS"
        assert route["parentRefs"][0]["sectionName"] == listeners[host]["name"]
    policies = {_meta(p)["name"]: p.inputs["spec"] for p in _policies_in(sim, "clipper-production")}
    assert policies["allow-ingress-to-backend"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "envoy-gateway-system"
    }


def test_every_kubernetes_resource_uses_the_cluster_provider(stack_run):
    [provider] = stack_run.of_type("pulumi:providers:kubernetes")
    k8s = [r for r in stack_run.resources if r.custom and r.type.startswith("kubernetes:")]
    assert k8s and all(r.provider.startswith(provider.urn + "::") for r in k8s)


def test_components_use_clipper_type_tokens_and_parent_their_children(production):
    # helm.v4.Chart is the provider's own component: its objects are children of the chart.
    components = [r for r in production.resources if not r.custom and not r.type.startswith("kubernetes:helm.sh/")]
    assert components and all(r.type.startswith("clipper:") for r in components)
    component_urns = {r.urn for r in components}
    assert all(r.parent in component_urns for r in production.resources if r.custom)


def test_render_mode_ignores_a_kubeconfig_in_the_environment(monkeypatch, tmp_path):
    # The provider refuses a kubeconfig next to a render directory; $KUBECONFIG must not leak in.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    [provider] = simulate("local").of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == ""
    assert provider.inputs["renderYamlToDirectory"].endswith(".state/render/local")


def test_workloads_start_only_after_their_namespace_guard_rails(production):
    app = production.one("clipper:apps:AppDeployment", "backend")
    # The namespace's own policies; the monitoring add-on's scrape allowances only open a port later.
    policies = {_meta(p)["name"]: p.urn for p in _policies_in(production, "clipper-production") if "NamespaceBaseline" in p.urn}
    assert {"default-deny", "allow-dns", "allow-frontend-to-backend-ingress"} <= set(policies)
    required = {
        production.one("Namespace", "clipper-production").urn,
        production.one("LimitRange", "clipper-production-limits").urn,
        *policies.values(),  # no pod runs before default-deny and the allow rules
    }
    assert required <= set(app.dependencies)
    # the quota's status wait is not on the critical path of a deploy
    assert production.one("ResourceQuota", "clipper-production-quota").urn not in app.dependencies


def test_services_do_not_wait_for_endpoints_the_deployment_already_awaits(production):
    for service in production.of_type("Service"):
        assert _meta(service)["annotations"] == {"pulumi.com/skipAwait": "true"}
