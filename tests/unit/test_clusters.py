"""The cloud clusters (GKE, EKS, AKS) under mocks, from the production stack file with `cloud` switched:
the security defaults on the registered cloud resources, identities wired into External Secrets and
cert-manager, DNS records, protection, and config errors that register nothing."""
import json
import subprocess
import sys

import pytest

from infra.simulate import DELETE, MOCK_INGRESS_IP, ROOT, ProgramFailed, simulate

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
        credential = sim.one("azure-native:managedidentity:FederatedIdentityCredential", "cluster-external-secrets-external-secrets").inputs
        assert credential["subject"] == subject and credential["audiences"] == ["api://AzureADTokenExchange"]
        grant = sim.one("azure-native:authorization:RoleAssignment", "cluster-external-secrets-external-secrets-secrets").inputs
        assert grant["scope"] == "cluster-vault-id"  # the vault: the secrets are written after it exists
        assert grant["roleDefinitionId"].endswith("/4633458b-17de-408a-b874-0445c86b69e6")  # Key Vault Secrets User


def _in_cluster_layer(sim) -> list[dict]:
    """Kubernetes manifests with the store's cloud-specific provider block, the webhooks' callers
    (each cloud's control plane range) and the VolumeSnapshotClass' CSI driver (test_backups.py checks
    each cloud's) left out, and without metrics-server's namespace and Cluster Autoscaler (installed
    only on EKS: GKE and AKS run their own)."""
    manifests = []
    for manifest in sim.manifests():
        name = manifest["metadata"].get("name", "")
        if "metrics-server" in (name, manifest["metadata"].get("namespace")) or name.startswith("cluster-autoscaler"):
            continue
        if manifest["kind"] == "ClusterSecretStore":
            manifest = {**manifest, "spec": {k: v for k, v in manifest["spec"].items() if k != "provider"}}
        if manifest["kind"] == "VolumeSnapshotClass":
            manifest = {**manifest, "driver": "<the cloud's CSI driver>"}
        if manifest["metadata"].get("name") == "allow-webhooks-from-api-server":
            manifest = {**manifest, "spec": {**manifest["spec"], "ingress": [{**r, "from": "<control plane>"} for r in manifest["spec"]["ingress"]]}}
        manifests.append(manifest)
    return sorted(manifests, key=lambda m: (m["kind"], json.dumps(m.get("metadata"), sort_keys=True)))


def test_switching_cloud_changes_only_the_secret_store_in_the_cluster(runs):
    layers = {cloud: _in_cluster_layer(sim) for cloud, sim in runs.items()}
    installs_metrics_server = {
        cloud: any(r.name == "metrics-server" for r in sim.of_type("kubernetes:helm.sh/v4:Chart")) for cloud, sim in runs.items()
    }
    assert installs_metrics_server == {"gke": False, "eks": True, "aks": False}
    installs_autoscaler = {cloud: bool(sim.of_type("clipper:addons:ClusterAutoscaler")) for cloud, sim in runs.items()}
    assert installs_autoscaler == {"gke": False, "eks": True, "aks": False}
    assert layers["gke"] == layers["eks"] == layers["aks"]
    assert len(layers["gke"]) > 30


def test_webhooks_admit_only_the_control_plane_range_each_cloud_gives_it(runs):
    callers = {
        cloud: {
            m["metadata"]["namespace"]: [peer["ipBlock"]["cidr"] for rule in m["spec"]["ingress"] for peer in rule["from"]]
            for m in sim.manifests()
            if m["metadata"].get("name") == "allow-webhooks-from-api-server"
        }
        for cloud, sim in runs.items()
    }
    expected = {"gke": ["172.16.0.0/28"], "eks": ["10.10.96.0/28", "10.10.96.16/28", "10.10.96.32/28"], "aks": ["10.10.16.0/28"]}
    for cloud, namespaces in callers.items():
        assert namespaces and all(cidrs == expected[cloud] for cidrs in namespaces.values()), (cloud, namespaces)
    eks_api_subnets = {s.inputs["cidrBlock"] for s in runs["eks"].of_type("aws:ec2/subnet:Subnet") if "control-plane" in s.name}
    assert eks_api_subnets == set(expected["eks"])
    assert _only(runs["eks"], CLUSTER_TYPES["eks"])["vpcConfig"]["subnetIds"] == [
        f"cluster-control-plane-eu-west-1{z}-id" for z in "abc"
    ]


def test_gke_control_plane_may_call_webhooks_on_the_nodes(runs):
    rule = _only(runs["gke"], "gcp:compute/firewall:Firewall")
    assert rule["sourceRanges"] == ["172.16.0.0/28"] and rule["direction"] == "INGRESS"
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["8443", "9443"]}]
    assert rule["targetServiceAccounts"]  # the nodes' account, not every instance in the VPC


def test_configured_control_plane_cidrs_win():
    sim = simulate("production", {"cloud": "gke", "network.controlPlaneCidrs": ["10.1.0.0/28"]})
    for m in sim.manifests():
        if m["metadata"].get("name") in ("allow-webhooks-from-api-server", "allow-api-server"):
            assert json.dumps(m["spec"]).count("10.1.0.0/28") == 1 and "0.0.0.0/0" not in json.dumps(m["spec"])


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
    location = {"provider": "aws", "bucket": "clipper-backups", "config": {"region": "eu-west-1"}}  # backups go elsewhere
    sim = simulate("production", {"cloud": "existing", "existing": {"mode": "render", "secretStore": {"fake": {"data": []}}},
                                  "addons.backups.location": location})
    assert not [r for r in sim.resources if r.type.startswith(CLOUD_PREFIXES)]
    assert sim.one("ClusterSecretStore", "cloud-secrets").inputs["spec"]["provider"] == {"fake": {"data": []}}


# --- issue 11: what a real first `up`, day-2 change and destroy would hit ------------------------


def _urn(sim, type_, name):
    return sim.one(type_, name).urn


def _kubeconfig(sim) -> dict:
    [provider] = sim.of_type("pulumi:providers:kubernetes")
    return json.loads(provider.inputs["kubeconfig"]["value"])


def test_gke_first_up_reaches_the_private_cluster_through_the_iam_checked_dns_endpoint(runs):
    sim = runs["gke"]
    cluster = _only(sim, CLUSTER_TYPES["gke"])
    assert cluster["privateClusterConfig"]["enablePrivateEndpoint"] is True  # the IP endpoint stays private
    assert cluster["controlPlaneEndpointsConfig"]["dnsEndpointConfig"]["allowExternalTraffic"] is True
    server = _kubeconfig(sim)["clusters"][0]["cluster"]
    # The DNS endpoint serves a publicly trusted certificate: the cluster CA would fail verification.
    assert server == {"server": "https://gke-mock0123.europe-west4.gke.goog"}


def test_gke_ip_endpoint_kubeconfig_keeps_the_cluster_ca():
    sim = simulate("production", {"gke.api": {"privateEndpoint": False, "dnsEndpoint": False, "authorizedCidrs": ["198.51.100.0/24"]}})
    assert _kubeconfig(sim)["clusters"][0]["cluster"] == {"server": "https://203.0.113.1", "certificate-authority-data": "TU9DSy1DQQ=="}


def test_eks_with_an_existing_vpc_and_no_public_endpoint_lets_the_vpc_reach_the_api():
    sim = simulate(
        "production",
        {"cloud": "eks", "eks.api": {}, "eks.network": {"vpcId": "vpc-0abc", "privateSubnetIds": ["subnet-a", "subnet-b"]}},
    )
    vpc = _only(sim, CLUSTER_TYPES["eks"])["vpcConfig"]
    assert vpc["endpointPublicAccess"] is False and vpc["endpointPrivateAccess"] is True
    rule = _only(sim, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert (rule["securityGroupId"], rule["cidrIpv4"], rule["fromPort"], rule["toPort"]) == ("sg-0mockcluster", "10.0.0.0/16", 443, 443)


def test_aks_api_server_subnet_is_delegated_and_only_the_listed_ranges_reach_the_api(runs):
    subnet = runs["aks"].one("azure-native:network:Subnet", "cluster-apiserver").inputs
    assert subnet["delegations"] == [{"name": "aks-apiserver", "serviceName": "Microsoft.ContainerService/managedClusters"}]
    assert subnet["addressPrefix"] == "10.10.16.0/28"


def test_aks_private_cluster_in_an_existing_network_needs_no_public_ranges():
    sim = simulate("production", {"cloud": "aks", "aks.api": {}, "aks.network": {"subnetId": "/subscriptions/s/nodes"}})
    assert _only(sim, CLUSTER_TYPES["aks"])["apiServerAccessProfile"] == {"enablePrivateCluster": True}
    [grant] = [g for g in sim.of_type("azure-native:authorization:RoleAssignment") if g.name == "cluster-subnet-network"]
    assert grant.inputs["scope"] == "/subscriptions/s/nodes"


def test_gke_pool_changes_leave_the_cluster_alone_and_pool_sizes_never_force_replacement():
    before = simulate("staging", {"cloud": "gke"})
    after = simulate("staging", {"cloud": "gke", "gke.nodePools": {"system": {"machineType": "e2-standard-8", "minNodes": 6, "maxNodes": 9}}})
    [cluster_before], [cluster_after] = before.of_type(CLUSTER_TYPES["gke"]), after.of_type(CLUSTER_TYPES["gke"])
    assert cluster_before.inputs == cluster_after.inputs  # a pool's settings never reach the cluster resource
    assert set(cluster_after.ignore_changes) >= {"nodeConfig", "initialNodeCount"}  # the removed default pool's
    for pool in after.of_type("gcp:container/nodePool:NodePool"):
        # initialNodeCount forces replacement (SDK docstring); the autoscaler owns the size after creation.
        assert "initialNodeCount" in pool.ignore_changes


def test_eks_cluster_and_node_groups_wait_for_their_role_policies_and_nat_for_the_internet_gateway(runs):
    sim = runs["eks"]
    attachment = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    cluster = sim.one(CLUSTER_TYPES["eks"], "cluster")
    assert _urn(sim, attachment, "cluster-control-plane-AmazonEKSClusterPolicy") in cluster.dependencies
    for pool in ("system", "workload", "spot"):
        group = sim.one("aws:eks/nodeGroup:NodeGroup", f"cluster-{pool}")
        for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"):
            assert _urn(sim, attachment, f"cluster-{pool}-nodes-{policy}") in group.dependencies
    cni = sim.one("aws:eks/addon:Addon", "cluster-vpc-cni")
    assert _urn(sim, attachment, "cluster-vpc-cni-AmazonEKS_CNI_Policy") in cni.dependencies
    igw = _urn(sim, "aws:ec2/internetGateway:InternetGateway", "cluster-igw")
    for kind in ("aws:ec2/eip:Eip", "aws:ec2/natGateway:NatGateway"):
        assert sim.of_type(kind) and all(igw in r.dependencies for r in sim.of_type(kind))


def test_aks_secrets_are_granted_on_the_vault_and_someone_may_write_them():
    sim = simulate("production", {"cloud": "aks", "aks.secretsOfficerObjectIds": ["11111111-2222-3333-4444-555555555555"]})
    grants = _by_type(sim, "azure-native:authorization:RoleAssignment")
    assert not [g for g in grants.values() if "/secrets/" in str(g["scope"])]  # no grant on a secret not yet written
    officers = {name: g for name, g in grants.items() if name.endswith("-secrets-officer")}
    assert {g["principalId"] for g in officers.values()} == {"00000000-0000-0000-0000-000000000003", "11111111-2222-3333-4444-555555555555"}
    for grant in officers.values():
        assert grant["scope"] == "cluster-vault-id"
        assert grant["roleDefinitionId"].endswith("/b86a8fe4-44ce-4948-aee5-eccb2c155cd7")  # Key Vault Secrets Officer


def test_aks_kms_follows_the_keys_current_version(runs):
    kms = _only(runs["aks"], CLUSTER_TYPES["aks"])["securityProfile"]["azureKeyVaultKms"]
    # The mock's getKey answers as after a rotation: the cluster must not stay on the creation version.
    assert kms["keyId"] == "https://clipper-production-kv.vault.azure.net/keys/clipper-production-secrets/rotated456"


def test_aks_network_contributor_covers_the_vnet_it_creates(runs):
    sim = runs["aks"]
    grant = sim.one("azure-native:authorization:RoleAssignment", "cluster-vnet-network").inputs
    assert grant["scope"] == "cluster-vnet-id"
    assert grant["principalId"] == "cluster-control-plane-principal-id"
    assert grant["roleDefinitionId"].endswith("/4d97b98b-1d4f-4787-a291-c67834d212e7")  # Network Contributor


def test_aks_spot_pool_declares_the_taint_aks_sets_and_no_surge(runs):
    pools = _by_type(runs["aks"], "azure-native:containerservice:AgentPool")
    assert pools["cluster-spot"]["nodeTaints"] == ["kubernetes.azure.com/scalesetpriority=spot:NoSchedule"]
    assert "upgradeSettings" not in pools["cluster-spot"]
    assert pools["cluster-workload"]["upgradeSettings"] == {"maxSurge": "33%"}


def test_apps_opt_in_to_spot_with_a_toleration_and_a_soft_preference():
    sim = simulate("production", {"apps.backend.spot": True})
    pod = sim.one("Deployment", "backend").inputs["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "clipper.dev/spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    [preferred] = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["preference"]["matchExpressions"] == [{"key": "clipper.dev/pool", "operator": "In", "values": ["spot"]}]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["nodeAffinity"]  # falls back to on-demand
    [job] = [r for r in sim.of_type("Job") if r.inputs["metadata"]["name"].startswith("backend-migrate")]
    assert "tolerations" not in job.inputs["spec"]["template"]["spec"]  # a migration is never evicted halfway
    assert "tolerations" not in sim.one("Deployment", "frontend").inputs["spec"]["template"]["spec"]


def test_eks_cluster_autoscaler_may_resize_only_this_clusters_node_groups(runs):
    sim = runs["eks"]
    role = sim.one("aws:iam/role:Role", "cluster-kube-system-cluster-autoscaler")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert "system:serviceaccount:kube-system:cluster-autoscaler" in trust["Condition"]["StringEquals"].values()
    policy = json.loads(sim.one("aws:iam/rolePolicy:RolePolicy", "cluster-kube-system-cluster-autoscaler").inputs["policy"])
    resize = next(s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"])
    assert resize["Condition"] == {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/clipper-production": "owned"}}
    for group in sim.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert "scalingConfig.desiredSize" in group.ignore_changes  # the autoscaler's to change


def test_names_clouds_never_free_change_with_the_incarnation(runs):
    assert _only(runs["gke"], "gcp:kms/keyRing:KeyRing")["name"] == "clipper-production"
    assert _only(runs["aks"], "azure-native:keyvault:Vault")["vaultName"] == "clipper-production-kv"
    gke = simulate("production", {"gke.incarnation": 2})
    assert _only(gke, "gcp:kms/keyRing:KeyRing")["name"] == "clipper-production-2"
    aks = simulate("production", {"cloud": "aks", "aks.incarnation": 2})
    assert _only(aks, "azure-native:keyvault:Vault")["vaultName"] == "clipper-production-kv-2"


def test_eks_admins_come_only_from_config_through_access_entries(runs):
    sim = runs["eks"]
    cluster = _only(sim, CLUSTER_TYPES["eks"])
    assert cluster["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    entries = _by_type(sim, "aws:eks/accessEntry:AccessEntry")
    assert [e["principalArn"] for e in entries.values()] == ["arn:aws:iam::123456789012:role/clipper-deployer"]
    association = sim.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", "cluster-admin-0")
    [provider] = sim.of_type("pulumi:providers:kubernetes")
    assert association.urn in provider.dependencies  # in-cluster resources wait until `up` may administer


def test_only_the_selected_clouds_sdk_is_imported():
    code = (
        "import sys; from infra.simulate import simulate; simulate('production', {'cloud': 'eks'}); "
        "print(sorted(m for m in ('pulumi_gcp', 'pulumi_aws', 'pulumi_azure_native') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == "['pulumi_aws']"


NO_WAY_IN = {
    "eks created VPC without CIDRs": (
        {"cloud": "eks", "eks.api": {}},
        "clipper:eks: api.authorizedCidrs: required when the program creates the VPC",
    ),
    "aks created VNet without CIDRs": (
        {"cloud": "aks", "aks.api": {}},
        "clipper:aks: api.authorizedCidrs: required when the program creates the VNet",
    ),
    "aks existing subnet, public ranges, no API server subnet": (
        {"cloud": "aks", "aks.network": {"subnetId": "/subscriptions/s/nodes"}},
        "clipper:aks: network.apiServerSubnetId: required with network.subnetId",
    ),
    "gke private without the DNS endpoint": (
        {"gke.api": {"dnsEndpoint": False}},
        "clipper:gke: api.dnsEndpoint: false with a private endpoint",
    ),
    "eks without admins": ({"cloud": "eks", "eks.adminRoleArns": []}, "clipper:eks: adminRoleArns: list at least one IAM role"),
    "eks admin that is not a role ARN": (
        {"cloud": "eks", "eks.adminRoleArns": ["arn:aws:iam::123456789012:user/alice"]},
        "clipper:eks.adminRoleArns.0: 'arn:aws:iam::123456789012:user/alice' is not an IAM role ARN",
    ),
}


@pytest.mark.parametrize("overrides,expected", NO_WAY_IN.values(), ids=NO_WAY_IN.keys())
def test_a_stack_the_first_up_could_not_administer_fails_before_any_resource(overrides, expected):
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", overrides)
    assert expected in str(failure.value)
    assert failure.value.registered == []
