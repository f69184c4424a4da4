"""The cloud clusters (GKE, EKS, AKS) under mocks, from the production stack file with `cloud` switched:
the security defaults on the registered cloud resources, identities wired into External Secrets and
cert-manager, DNS records, protection, and config errors that register nothing."""
import json

import pytest

from infra.simulate import DELETE, MOCK_INGRESS_IP, ProgramFailed, simulate

CLOUDS = ("gke", "eks", "aks")
CLUSTER_TYPES = {
    "gke": "gcp:container/cluster:Cluster",
    "eks": "aws:eks/cluster:Cluster",
    "aks": "azure-native:containerservice:ManagedCluster",
}
CLOUD_PREFIXES = ("gcp:", "aws:", "azure-native:", "pulumi:providers:gcp", "pulumi:providers:aws", "pulumi:providers:azure-native")


@pytest.fixture(scope="module")
def runs():
    return {cloud: simulate("production", {"cloud": cloud}) for cloud in CLOUDS}


@pytest.fixture(params=CLOUDS)
def run(request, runs):
    return request.param, runs[request.param]


@pytest.fixture(scope="module")
def variants():
    """Each cloud with the non-default options: a public API limited to CIDRs, and DNS-01."""
    return {
        cloud: simulate(
            "production",
            {
                "cloud": cloud,
                f"{cloud}.api": {"privateEndpoint": False, "authorizedCidrs": ["198.51.100.0/24"]},
                "addons.cert-manager.solver": "dns01",
            },
        )
        for cloud in CLOUDS
    }


def _only(sim, type_):
    found = sim.of_type(type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
    return found[0].inputs


def _by_type(sim, type_):
    return {r.name: r.inputs for r in sim.of_type(type_)}


def test_gke_cluster_is_private_identity_aware_encrypted_and_pinned_to_a_channel(runs):
    cluster = _only(runs["gke"], CLUSTER_TYPES["gke"])
    assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster["privateClusterConfig"]["enablePrivateEndpoint"] is True
    assert cluster["workloadIdentityConfig"] == {"workloadPool": "clpr-production.svc.id.goog"}
    assert cluster["deletionProtection"] is True
    assert cluster["releaseChannel"] == {"channel": "REGULAR"}
    assert cluster["datapathProvider"] == "ADVANCED_DATAPATH"  # Dataplane V2 enforces NetworkPolicy
    assert cluster["databaseEncryption"]["state"] == "ENCRYPTED"
    assert cluster["databaseEncryption"]["keyName"] == "cluster-secrets-key-id"  # the Cloud KMS key's id
    assert cluster["maintenancePolicy"]["recurringWindow"]["recurrence"] == "FREQ=WEEKLY;BYDAY=SA,SU"
    assert cluster["loggingConfig"]["enableComponents"] and cluster["monitoringConfig"]["managedPrometheus"]["enabled"]
    assert cluster["location"] == "europe-west4"  # regional: multi-zone control plane and pools
    pools = _by_type(runs["gke"], "gcp:container/nodePool:NodePool")
    assert set(pools) == {"cluster-system", "cluster-workload", "cluster-spot"}
    for pool in pools.values():
        assert pool["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        assert pool["autoscaling"]["totalMinNodeCount"] <= pool["autoscaling"]["totalMaxNodeCount"]
    assert pools["cluster-spot"]["nodeConfig"]["spot"] is True
    assert pools["cluster-spot"]["nodeConfig"]["taints"] == [{"key": "clipper.dev/spot", "value": "true", "effect": "NO_SCHEDULE"}]


def test_eks_cluster_encrypts_secrets_hides_its_endpoint_and_enforces_network_policy(runs):
    sim = runs["eks"]
    cluster = _only(sim, CLUSTER_TYPES["eks"])
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:key")
    assert _only(sim, "aws:kms/key:Key")["enableKeyRotation"] is True
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]  # the stack file's CI range only
    assert cluster["deletionProtection"] is True
    assert set(cluster["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    oidc = _only(sim, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]
    addons = {a["addonName"]: a for a in _by_type(sim, "aws:eks/addon:Addon").values()}
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    groups = _by_type(sim, "aws:eks/nodeGroup:NodeGroup")
    private = {r.name + "-id" for r in sim.of_type("aws:ec2/subnet:Subnet") if "private" in r.name}
    zones = {r.inputs["availabilityZone"] for r in sim.of_type("aws:ec2/subnet:Subnet")}
    assert zones == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    for group in groups.values():
        assert set(group["subnetIds"]) == private  # nodes only in private subnets
    assert groups["cluster-spot"]["capacityType"] == "SPOT" and groups["cluster-spot"]["taints"]
    for template in _by_type(sim, "aws:ec2/launchTemplate:LaunchTemplate").values():
        assert template["metadataOptions"]["httpTokens"] == "required"
        assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_aks_cluster_has_workload_identity_network_policy_kms_and_a_private_api(runs):
    sim = runs["aks"]
    cluster = _only(sim, CLUSTER_TYPES["aks"])
    assert cluster["oidcIssuerProfile"] == {"enabled": True}
    assert cluster["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert cluster["securityProfile"]["azureKeyVaultKms"]["enabled"] is True
    assert cluster["networkProfile"]["networkPlugin"] == "azure"
    assert cluster["networkProfile"]["networkPolicy"] == "cilium"
    assert cluster["apiServerAccessProfile"] == {
        "enablePrivateCluster": False,
        "enableVnetIntegration": True,  # nodes reach the API server inside the VNet
        "subnetId": "cluster-apiserver-id",
        "authorizedIPRanges": ["203.0.113.0/24"],
    }
    assert cluster["disableLocalAccounts"] is True and cluster["aadProfile"]["enableAzureRBAC"] is True
    assert cluster["autoUpgradeProfile"]["upgradeChannel"] == "stable"
    assert cluster["agentPoolProfiles"][0]["availabilityZones"] == ["1", "2", "3"]
    assert cluster["addonProfiles"]["omsagent"]["enabled"] is True
    vault = _only(sim, "azure-native:keyvault:Vault")["properties"]
    assert vault["enablePurgeProtection"] is True and vault["enableRbacAuthorization"] is True
    schedules = {m["configName"] for m in _by_type(sim, "azure-native:containerservice:MaintenanceConfiguration").values()}
    assert schedules == {"aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule"}
    pools = _by_type(sim, "azure-native:containerservice:AgentPool")
    assert pools["cluster-spot"]["scaleSetPriority"] == "Spot" and pools["cluster-spot"]["nodeTaints"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_public_api_endpoint_is_limited_to_the_configured_cidrs(variants, cloud):
    cluster = _only(variants[cloud], CLUSTER_TYPES[cloud])
    allowed = {
        "gke": lambda: [b["cidrBlock"] for b in cluster["masterAuthorizedNetworksConfig"]["cidrBlocks"]],
        "eks": lambda: cluster["vpcConfig"]["publicAccessCidrs"],
        "aks": lambda: cluster["apiServerAccessProfile"]["authorizedIPRanges"],
    }[cloud]()
    assert allowed == ["198.51.100.0/24"]


def test_every_kubernetes_resource_goes_through_the_clusters_provider(run):
    cloud, sim = run
    [provider] = sim.of_type("pulumi:providers:kubernetes")
    component = {"gke": "GkeCluster", "eks": "EksCluster", "aks": "AksCluster"}[cloud]
    assert provider.parent.endswith(f"clipper:cluster:{component}::cluster")
    kubernetes = [r for r in sim.resources if r.custom and r.type.startswith("kubernetes:")]
    assert kubernetes
    assert {r.provider.rsplit("::", 1)[0] for r in kubernetes} == {provider.urn}
    raw = provider.inputs["kubeconfig"]
    assert isinstance(raw, dict) and "value" in raw, "the kubeconfig is passed as a secret"
    kubeconfig = json.loads(raw["value"])
    user = kubeconfig["users"][0]["user"]
    assert set(user) == {"exec"}, "no tokens or client certificates in the kubeconfig"
    assert user["exec"]["command"] == {"gke": "gke-gcloud-auth-plugin", "eks": "aws", "aks": "kubelogin"}[cloud]


def test_production_cloud_resources_are_protected(run):
    _, sim = run
    cloud_resources = [r for r in sim.resources if r.type.startswith(CLOUD_PREFIXES) or r.type.startswith("clipper:cluster:")]
    assert cloud_resources
    assert [r.name for r in cloud_resources if not r.protect] == [r.name for r in cloud_resources if r.type.startswith(("gcp:dns/recordSet", "aws:route53/record", "azure-native:dns:RecordSet"))]


def test_staging_cloud_resources_are_not_protected():
    sim = simulate("staging", {"cloud": "eks"})
    assert not [r.name for r in sim.resources if r.protect]


EXPECTED_STORES = {
    "gke": ("gcpsm", "iam.gke.io/gcp-service-account"),
    "eks": ("aws", "eks.amazonaws.com/role-arn"),
    "aks": ("azurekv", "azure.workload.identity/client-id"),
}


def test_external_secrets_authenticates_as_a_cloud_identity_scoped_to_the_apps_secrets(run):
    cloud, sim = run
    provider_key, annotation = EXPECTED_STORES[cloud]
    store = sim.one("ClusterSecretStore", "cloud-secrets").inputs["spec"]["provider"]
    assert set(store) == {provider_key}
    release = next(r for r in sim.of_type("kubernetes:helm.sh/v4:Chart") if r.name == "external-secrets")
    annotations = release.inputs["values"]["serviceAccount"]["annotations"]
    assert set(annotations) == {annotation}
    secrets = {"clipper-production-database-url", "clipper-production-jwt-signing-key"}
    subject = "system:serviceaccount:external-secrets:external-secrets"
    if cloud == "eks":
        assert store["aws"]["auth"]["jwt"]["serviceAccountRef"] == {"name": "external-secrets", "namespace": "external-secrets"}
        role = sim.one("aws:iam/role:Role", "cluster-external-secrets-external-secrets")
        assert annotations[annotation] == f"arn:aws:role::123456789012:{role.name}"
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert subject in trust["Condition"]["StringEquals"].values()
        policy = json.loads(sim.one("aws:iam/rolePolicy:RolePolicy", "cluster-external-secrets-external-secrets").inputs["policy"])
        resources = policy["Statement"][0]["Resource"]
        assert {r.split(":secret:")[1].removesuffix("-??????") for r in resources} == secrets
    elif cloud == "gke":
        assert store["gcpsm"]["auth"]["workloadIdentity"]["serviceAccountRef"]["name"] == "external-secrets"
        binding = sim.one("gcp:serviceaccount/iAMMember:IAMMember", "cluster-external-secrets-external-secrets-wi").inputs
        assert binding["role"] == "roles/iam.workloadIdentityUser"
        assert binding["member"] == "serviceAccount:clpr-production.svc.id.goog[external-secrets/external-secrets]"
        grants = sim.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        assert {g.inputs["secretId"] for g in grants} == secrets
        assert {g.inputs["member"] for g in grants} == {f"serviceAccount:{annotations[annotation]}"}
    else:
        assert store["azurekv"]["authType"] == "WorkloadIdentity"
        assert store["azurekv"]["vaultUrl"] == "https://clipper-production-kv.vault.azure.net/"
        assert release.inputs["values"]["podLabels"] == {"azure.workload.identity/use": "true"}
        credential = _only(sim, "azure-native:managedidentity:FederatedIdentityCredential")
        assert credential["subject"] == subject and credential["audiences"] == ["api://AzureADTokenExchange"]
        grant = sim.one("azure-native:authorization:RoleAssignment", "cluster-external-secrets-external-secrets-secrets").inputs
        assert grant["scope"] == "cluster-vault-id"  # the vault: the secrets are written after it exists
        assert grant["roleDefinitionId"].endswith("/4633458b-17de-408a-b874-0445c86b69e6")  # Key Vault Secrets User


def _in_cluster_layer(sim) -> list[dict]:
    """Kubernetes manifests with the store's cloud-specific provider block left out, and without
    metrics-server's namespace (installed only on EKS: GKE and AKS run their own)."""
    manifests = []
    for manifest in sim.manifests():
        if "metrics-server" in (manifest["metadata"].get("name"), manifest["metadata"].get("namespace")):
            continue
        if manifest["kind"] == "ClusterSecretStore":
            manifest = {**manifest, "spec": {k: v for k, v in manifest["spec"].items() if k != "provider"}}
        manifests.append(manifest)
    return sorted(manifests, key=lambda m: (m["kind"], json.dumps(m.get("metadata"), sort_keys=True)))


def test_switching_cloud_changes_only_the_secret_store_in_the_cluster(runs):
    layers = {cloud: _in_cluster_layer(sim) for cloud, sim in runs.items()}
    installs_metrics_server = {
        cloud: any(r.name == "metrics-server" for r in sim.of_type("kubernetes:helm.sh/v4:Chart")) for cloud, sim in runs.items()
    }
    assert installs_metrics_server == {"gke": False, "eks": True, "aks": False}
    assert layers["gke"] == layers["eks"] == layers["aks"]
    assert len(layers["gke"]) > 30


@pytest.mark.parametrize("cloud", CLOUDS)
def test_app_hosts_get_records_pointing_at_the_ingress_load_balancer(runs, cloud):
    record_type = {"gke": "gcp:dns/recordSet:RecordSet", "eks": "aws:route53/record:Record", "aks": "azure-native:dns:RecordSet"}[cloud]
    records = {r.name: r.inputs for r in runs[cloud].of_type(record_type)}
    assert set(records) == {"api.clpr.tv", "clpr.tv"}
    for record in records.values():
        assert MOCK_INGRESS_IP in json.dumps(record)


def test_route53_points_hostnames_at_the_load_balancer_with_alias_records():
    sim = simulate("production", {"cloud": "eks", "dns.target": "abc.elb.eu-west-1.amazonaws.com"})
    for record in sim.of_type("aws:route53/record:Record"):
        assert record.inputs["type"] == "A"
        assert record.inputs["aliases"][0]["name"] == "abc.elb.eu-west-1.amazonaws.com"


def test_the_gateway_controller_gets_records_only_for_an_explicit_target():
    gateway = {"ingress.controller": "gateway", "addons.envoy-gateway.enabled": True}
    assert not simulate("production", gateway).of_type("gcp:dns/recordSet:RecordSet")
    records = simulate("production", {**gateway, "dns.target": "198.51.100.7"}).of_type("gcp:dns/recordSet:RecordSet")
    assert {tuple(r.inputs["rrdatas"]) for r in records} == {("198.51.100.7",)}


def test_without_a_dns_zone_no_records_are_made():
    sim = simulate("production", {"cloud": "gke", "dns": DELETE})
    assert not sim.of_type("gcp:dns/recordSet:RecordSet")


DNS01 = {
    "gke": ("cloudDNS", "gcp:dns/dnsManagedZoneIamMember:DnsManagedZoneIamMember"),
    "eks": ("route53", "aws:iam/rolePolicy:RolePolicy"),
    "aks": ("azureDNS", "azure-native:authorization:RoleAssignment"),
}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_cert_manager_dns01_uses_its_own_workload_identity_on_the_zone(variants, cloud):
    sim = variants[cloud]
    solver_key, grant_type = DNS01[cloud]
    [solver] = sim.one("ClusterIssuer", "letsencrypt-production").inputs["spec"]["acme"]["solvers"]
    assert set(solver["dns01"]) == {solver_key}
    assert solver["selector"] == {"dnsZones": ["clpr.tv"]}
    release = next(r for r in sim.of_type("kubernetes:helm.sh/v4:Chart") if r.name == "cert-manager")
    assert set(release.inputs["values"]["serviceAccount"]["annotations"]) == {EXPECTED_STORES[cloud][1]}
    assert [g for g in sim.of_type(grant_type) if g.name.startswith("cluster-cert-manager-cert-manager")]


BAD_CLOUD_CONFIG = {
    "gke region format": ({"gke.region": "Europe West 4"}, "clipper:gke.region: 'Europe West 4' is not a region name"),
    "eks region format": ({"cloud": "eks", "eks.region": "euwest1"}, "clipper:eks.region: 'euwest1' is not a region name"),
    "aks region format": ({"cloud": "aks", "aks.location": "West Europe"}, "clipper:aks.location: 'West Europe' is not a region name"),
    "gke missing project": ({"gke.project": DELETE}, "clipper:gke.project: required key is missing"),
    "aks missing resource group": ({"cloud": "aks", "aks.resourceGroup": DELETE}, "clipper:aks.resourceGroup: required key is missing"),
    "node pool min above max": (
        {"cloud": "eks", "eks.nodePools": {"workload": {"minNodes": 5, "maxNodes": 3}}},
        "clipper:eks.nodePools.workload: minNodes (5) is greater than maxNodes (3)",
    ),
    "selected cloud without settings": ({"cloud": "aks", "aks": DELETE}, "aks: settings are required for cloud: aks"),
    "API open to the internet": (
        {"gke.api": {"privateEndpoint": False, "authorizedCidrs": ["0.0.0.0/0"]}},
        "clipper:gke.api: authorizedCidrs ['0.0.0.0/0'] opens the API server to the internet",
    ),
    "public API without CIDRs": ({"eks.api": {"privateEndpoint": False}}, "clipper:eks.api: a public API endpoint needs authorizedCidrs"),
    "secret name Key Vault refuses": (
        {"cloud": "aks", "apps.backend.secrets.DATABASE_URL": "clipper/production/database-url"},
        "apps.backend.secrets.DATABASE_URL: 'clipper/production/database-url' is not a valid name for aks",
    ),
    "host outside the zone": ({"apps.frontend.host": "clpr.example"}, "apps.frontend.host: 'clpr.example' is not in dns.zone 'clpr.tv'"),
    "dns01 without a zone": ({"addons.cert-manager.solver": "dns01", "dns": DELETE}, "dns01 needs dns.zone"),
    "GKE maintenance too short": (
        {"gke.maintenance": {"days": ["Sunday"], "durationHours": 4}},
        "clipper:gke: maintenance: GKE needs at least 48 hours",
    ),
}


@pytest.mark.parametrize("overrides,expected", BAD_CLOUD_CONFIG.values(), ids=BAD_CLOUD_CONFIG.keys())
def test_bad_cloud_config_fails_naming_the_key_and_registers_nothing(overrides, expected):
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", overrides)
    assert expected in str(failure.value)
    assert "Pulumi.production.yaml" in str(failure.value)
    assert failure.value.registered == []


def test_empty_blocks_from_pulumi_yaml_defaults_mean_not_configured():
    # The CLI fills unset structured keys with Pulumi.yaml's `default: {}`.
    sim = simulate("production", {"cloud": "eks", "gke": {}, "aks": {}, "dns": {}})
    assert sim.of_type(CLUSTER_TYPES["eks"]) and not sim.of_type("aws:route53/record:Record")
    with pytest.raises(ProgramFailed, match="gke: settings are required for cloud: gke"):
        simulate("production", {"gke": {}})


def test_node_pool_keys_override_single_defaults():
    sim = simulate("production", {"cloud": "aks", "aks.nodePools": {"workload": {"maxNodes": 20}}})
    workload = sim.one("azure-native:containerservice:AgentPool", "cluster-workload").inputs
    assert (workload["vmSize"], workload["minCount"], workload["maxCount"]) == ("Standard_D2s_v5", 2, 20)


def test_existing_cluster_still_works_and_ignores_the_cloud_blocks():
    sim = simulate("production", {"cloud": "existing", "existing": {"mode": "render", "secretStore": {"fake": {"data": []}}}})
    assert not [r for r in sim.resources if r.type.startswith(CLOUD_PREFIXES)]
    assert sim.one("ClusterSecretStore", "cloud-secrets").inputs["spec"]["provider"] == {"fake": {"data": []}}
