import pytest

from policies.rules import clusters as c
from tests.policy.builders import policy_resource, stack_violations, violations

GKE = {
    "privateClusterConfig": {"enablePrivateNodes": True},
    "workloadIdentityConfig": {"workloadPool": "clipper-prod.svc.id.goog"},
    "deletionProtection": True,
    "releaseChannel": {"channel": "REGULAR"},
    "removeDefaultNodePool": True,
    "nodeConfig": {"machineType": "e2-small"},
}
NODE_POOL = {"cluster": "gke", "nodeConfig": {"workloadMetadataConfig": {"mode": "GKE_METADATA"}}}
EKS = {
    "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:eu-west-1:1:key/k"}},
    "vpcConfig": {"subnetIds": ["a", "b"], "endpointPublicAccess": False, "endpointPrivateAccess": True},
}
AKS = {
    "securityProfile": {"workloadIdentity": {"enabled": True}},
    "oidcIssuerProfile": {"enabled": True},
    "networkProfile": {"networkPlugin": "azure", "networkPolicy": "cilium"},
    "apiServerAccessProfile": {"enablePrivateCluster": True},
}


@pytest.mark.parametrize("rule, resource_type, compliant, violating, expected", [
    (c.GKE_PRIVATE_NODES, c.GKE_CLUSTER, GKE, {**GKE, "privateClusterConfig": {"enablePrivateNodes": False}},
     "privateClusterConfig.enablePrivateNodes is not true"),
    (c.GKE_WORKLOAD_IDENTITY, c.GKE_CLUSTER, GKE, {**GKE, "workloadIdentityConfig": None},
     "workloadIdentityConfig.workloadPool is not set"),
    (c.GKE_DELETION_PROTECTION, c.GKE_CLUSTER, GKE, {k: v for k, v in GKE.items() if k != "deletionProtection"},
     "deletionProtection is not set to true"),
    (c.GKE_RELEASE_CHANNEL, c.GKE_CLUSTER, GKE, {**GKE, "releaseChannel": {"channel": "UNSPECIFIED"}},
     "releaseChannel.channel is not set"),
    (c.GKE_NODE_METADATA, c.GKE_NODE_POOL, NODE_POOL, {"cluster": "gke", "nodeConfig": {}},
     "nodeConfig.workloadMetadataConfig.mode is not set, not GKE_METADATA"),
    (c.GKE_NODE_METADATA, c.GKE_CLUSTER, GKE, {**GKE, "removeDefaultNodePool": False},
     "nodeConfig.workloadMetadataConfig.mode is not set, not GKE_METADATA"),
    (c.EKS_SECRETS_ENCRYPTION, c.EKS_CLUSTER, EKS, {**EKS, "encryptionConfig": {"resources": [], "provider": {"keyArn": "k"}}},
     "encryptionConfig does not encrypt 'secrets' with a KMS key (provider.keyArn)"),
    (c.EKS_PRIVATE_ENDPOINT, c.EKS_CLUSTER, {**EKS, "vpcConfig": {"publicAccessCidrs": ["203.0.113.0/24"]}},
     {**EKS, "vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}},
     "the public API endpoint is open to 0.0.0.0/0 (set endpointPublicAccess: false or narrow publicAccessCidrs)"),
    (c.AKS_WORKLOAD_IDENTITY, c.AKS_CLUSTER, AKS, {**AKS, "securityProfile": {}},
     "securityProfile.workloadIdentity.enabled is not true"),
    (c.AKS_OIDC_ISSUER, c.AKS_CLUSTER, AKS, {**AKS, "oidcIssuerProfile": {"enabled": False}},
     "oidcIssuerProfile.enabled is not true"),
    (c.AKS_NETWORK_POLICY, c.AKS_CLUSTER, AKS, {**AKS, "networkProfile": {"networkPlugin": "kubenet"}},
     "networkProfile.networkPolicy is not set, so NetworkPolicies are not enforced"),
    (c.AKS_PRIVATE_API_SERVER, c.AKS_CLUSTER, {**AKS, "apiServerAccessProfile": {"authorizedIPRanges": ["203.0.113.0/24"]}},
     {**AKS, "apiServerAccessProfile": {"authorizedIPRanges": ["0.0.0.0/0"]}},
     "apiServerAccessProfile.authorizedIPRanges contains 0.0.0.0/0"),
])
def test_cluster_rules(rule, resource_type, compliant, violating, expected):
    assert violations(rule, resource_type, compliant) == []
    assert violations(rule, resource_type, violating) == [expected]


def test_eks_defaults_are_a_public_endpoint_open_to_everyone():
    assert len(violations(c.EKS_PRIVATE_ENDPOINT, c.EKS_CLUSTER, {"vpcConfig": {"subnetIds": ["a"]}})) == 1


def test_eks_encryption_accepts_the_older_list_shape():
    assert violations(c.EKS_SECRETS_ENCRYPTION, c.EKS_CLUSTER, {"encryptionConfig": [EKS["encryptionConfig"]]}) == []


def test_aks_public_api_without_ranges():
    assert violations(c.AKS_PRIVATE_API_SERVER, c.AKS_CLUSTER, {**AKS, "apiServerAccessProfile": {}}) == [
        "the API server is public with no apiServerAccessProfile.authorizedIPRanges"]


def test_eks_cluster_needs_an_oidc_provider_in_the_stack():
    cluster = policy_resource(c.EKS_CLUSTER, EKS, "eks")
    oidc = policy_resource(c.IAM_OIDC_PROVIDER, {"url": "https://oidc.eks", "clientIdLists": ["sts.amazonaws.com"]}, "oidc")
    assert stack_violations(c.EKS_OIDC_PROVIDER, [cluster, oidc]) == []
    assert stack_violations(c.EKS_OIDC_PROVIDER, [oidc]) == []
    assert stack_violations(c.EKS_OIDC_PROVIDER, [cluster]) == [
        (cluster.urn, "EKS cluster eks has no aws:iam OpenIdConnectProvider in the stack")]
