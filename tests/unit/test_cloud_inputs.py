"""Every cloud resource the program registers, checked against the installed provider SDK's typed
inputs at every nesting level (tests/cloud_types.py): no unknown property names, no wrong scalar
types, no values outside an SDK enum, no missing required nested properties. The mocks accept any
input, so without this a misspelled nested key would surface only at `pulumi up`."""
import copy

import pytest

from tests import cloud_types
from tests.cloud_types import check, simulated, validate

STACKS = ("staging", "production")
CLOUDS = ("gke", "eks", "aks")
CLUSTER_TYPES = {
    "gke": "gcp:container/cluster:Cluster",
    "eks": "aws:eks/cluster:Cluster",
    "aks": "azure-native:containerservice:ManagedCluster",
}
PROVIDERS = {"gke": "pulumi:providers:gcp", "eks": "pulumi:providers:aws", "aks": "pulumi:providers:azure-native"}


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("stack", STACKS)
def test_every_cloud_resource_matches_the_sdk_input_types(stack, cloud):
    sim = simulated(stack, {"cloud": cloud})
    report = check(sim.resources)
    assert report.problems == [], "\n".join(report.problems)
    checked = {r.type for r in sim.resources if r.custom and cloud_types.is_cloud_resource(r.type)}
    assert {CLUSTER_TYPES[cloud], PROVIDERS[cloud]} <= checked
    # Nested objects were walked, not just the top-level keys.
    top_level = sum(len(r.inputs) for r in sim.resources if r.custom and cloud_types.is_cloud_resource(r.type))
    assert report.properties > top_level


def _cluster(cloud: str):
    [cluster] = simulated("production", {"cloud": cloud}).of_type(CLUSTER_TYPES[cloud])
    return copy.deepcopy(cluster.inputs)


def test_a_misspelled_nested_key_is_named_with_its_path_and_the_right_spelling():
    inputs = _cluster("gke")
    private = inputs["privateClusterConfig"]
    private["enablePrivateEndpont"] = private.pop("enablePrivateEndpoint")
    assert validate(CLUSTER_TYPES["gke"], inputs) == [
        "privateClusterConfig.enablePrivateEndpont: unknown property of ClusterPrivateClusterConfigArgs"
        " (did you mean enablePrivateEndpoint?)"
    ]


def test_wrong_scalar_types_are_caught_inside_lists_and_maps():
    inputs = _cluster("gke")
    inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"] = [{"cidrBlock": 24, "displayName": "office"}]
    inputs["maintenancePolicy"]["recurringWindow"]["startTime"] = True
    inputs["loggingConfig"]["enableComponents"] = "APISERVER"
    assert validate(CLUSTER_TYPES["gke"], inputs) == [
        "loggingConfig.enableComponents: expected a list, got str 'APISERVER'",
        "maintenancePolicy.recurringWindow.startTime: expected str, got bool True",
        "masterAuthorizedNetworksConfig.cidrBlocks[0].cidrBlock: expected str, got int 24",
    ]


def test_values_outside_an_azure_enum_are_refused():
    inputs = _cluster("aks")
    inputs["networkProfile"]["networkPolicy"] = "ciliun"
    inputs["agentPoolProfiles"][0]["osSKU"] = "AzureLinux"  # valid: stays quiet
    assert validate(CLUSTER_TYPES["aks"], inputs) == [
        "networkProfile.networkPolicy: 'ciliun' is not one of NetworkPolicy ['azure', 'calico', 'cilium', 'none']"
    ]


def test_a_missing_required_nested_property_is_reported():
    inputs = _cluster("eks")
    del inputs["vpcConfig"]["subnetIds"]
    del inputs["encryptionConfig"]["provider"]["keyArn"]
    assert validate(CLUSTER_TYPES["eks"], inputs) == [
        "encryptionConfig.provider.keyArn: required property of ClusterEncryptionConfigProviderArgs is missing",
        "vpcConfig.subnetIds: required property of ClusterVpcConfigArgs is missing",
    ]


def test_values_the_mocks_leave_unknown_and_secrets_are_accepted():
    inputs = _cluster("eks")
    del inputs["name"]  # a required input from an unknown Output: the wire drops it
    inputs["encryptionConfig"]["provider"]["keyArn"] = None
    inputs["roleArn"] = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "arn:aws:iam::1:role/x"}
    assert validate(CLUSTER_TYPES["eks"], inputs) == []
    inputs["roleArn"]["value"] = 7
    assert validate(CLUSTER_TYPES["eks"], inputs) == ["roleArn: expected str, got int 7"]


def test_provider_config_travels_as_strings_and_is_checked_decoded():
    assert validate("pulumi:providers:aws", {"region": "eu-west-1", "maxRetries": "3", "skipRegionValidation": "true"}) == []
    assert validate("pulumi:providers:aws", {"region": "eu-west-1", "skipRegionValidation": "yes"}) == [
        "skipRegionValidation: expected bool, got str 'yes'"
    ]


def test_a_type_the_sdk_does_not_know_is_an_error_not_a_pass():
    with pytest.raises(LookupError, match="no module gcp:container/nodePol"):
        validate("gcp:container/nodePol:NodePool", {})
