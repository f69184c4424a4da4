"""Day-2 changes and re-created stacks, under mocks, against what the providers replace.

A day-2 change (pool sizes, Kubernetes version, machine type, authorised CIDRs, the spot pool, apps
on spot) must update clusters, node pools, keys and networks in place: the test simulates each
stack file and cloud before and after, diffs the inputs of every cloud resource present in both
(matched by URN), and fails on a changed input the provider documents as forcing replacement,
unless the resource ignores changes to it. No cloud resource may disappear or move (URN change).

A destroyed and re-created stack (`incarnation` raised by one) must not ask for a name the cloud
never frees, and must keep every other name, so nothing else churns.
"""
from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests import cloud_types
from tests.cloud_types import simulated

STACKS = ("staging", "production")
CLOUDS = ("gke", "eks", "aks")

# --- what forces replacement -------------------------------------------------------------------
# Input properties (wire paths; list items transparent) whose change replaces the resource, or
# that the cloud refuses to change in place, for the clusters, node pools, keys and networks the
# program creates. The installed SDKs carry no schema (no replaceOnChanges anywhere in them), so:
# * gcp and aws are bridged from Terraform: the bridged provider replaces on the upstream schema's
#   `ForceNew: true` (hashicorp/terraform-provider-google google/services/{container,kms,compute},
#   hashicorp/terraform-provider-aws internal/service/{eks,ec2,kms}; GKE node pools change
#   machineType/diskType/diskSizeGb in place since provider 5.10). A few SDK docstrings say it too
#   ("Changing this will force recreation of the resource").
# * azure-native replaces on its provider's forceNewMap (pulumi/pulumi-azure-native
#   provider/pkg/gen/replacement.go: e.g. AgentPool vmSize, ManagedCluster dnsPrefix and
#   networkProfile.*), on the resource id's path parameters (resource group and names) and on
#   `location`; the SDK docstrings add properties Azure only sets at creation.
# Keeping it current: when a provider SDK in requirements.txt moves, re-read those sources for the
# types below. test_every_listed_property_exists_in_the_installed_sdk fails when a listed path is
# gone or renamed; test_sdk_docstrings_that_say_a_property_is_fixed_are_listed fails when an SDK
# docstring newly says so of a property the program sets.
FORCES_REPLACEMENT: dict[str, tuple[str, ...]] = {
    # GKE
    "gcp:container/cluster:Cluster": (
        "name", "location", "project", "network", "subnetwork", "initialNodeCount", "nodeConfig",
        "networkingMode", "datapathProvider", "ipAllocationPolicy", "privateClusterConfig.masterIpv4CidrBlock",
        "masterAuth.clientCertificateConfig",
    ),
    "gcp:container/nodePool:NodePool": (
        "name", "location", "cluster", "project", "initialNodeCount", "nodeConfig.spot", "nodeConfig.serviceAccount",
        "nodeConfig.oauthScopes", "nodeConfig.metadata", "nodeConfig.shieldedInstanceConfig",
    ),
    "gcp:kms/keyRing:KeyRing": ("name", "location", "project"),
    "gcp:kms/cryptoKey:CryptoKey": ("name", "keyRing", "purpose"),
    "gcp:compute/network:Network": ("name", "project", "autoCreateSubnetworks"),
    "gcp:compute/subnetwork:Subnetwork": ("name", "project", "network", "region"),
    "gcp:compute/router:Router": ("name", "project", "network", "region"),
    "gcp:compute/routerNat:RouterNat": ("name", "project", "router", "region"),
    "gcp:serviceaccount/account:Account": ("accountId",),
    # EKS
    "aws:eks/cluster:Cluster": (
        "name", "roleArn", "bootstrapSelfManagedAddons", "accessConfig.bootstrapClusterCreatorAdminPermissions",
        "kubernetesNetworkConfig.serviceIpv4Cidr", "kubernetesNetworkConfig.ipFamily",
    ),
    "aws:eks/nodeGroup:NodeGroup": (
        "clusterName", "nodeGroupName", "nodeGroupNamePrefix", "nodeRoleArn", "subnetIds", "instanceTypes",
        "capacityType", "amiType", "diskSize", "remoteAccess", "launchTemplate.id", "launchTemplate.name",
    ),
    "aws:ec2/launchTemplate:LaunchTemplate": ("name", "namePrefix"),
    "aws:kms/key:Key": ("keyUsage", "customerMasterKeySpec", "customKeyStoreId", "multiRegion"),
    "aws:ec2/vpc:Vpc": ("cidrBlock", "ipv4IpamPoolId"),
    "aws:ec2/subnet:Subnet": ("vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"),
    "aws:ec2/natGateway:NatGateway": ("allocationId", "subnetId", "connectivityType"),
    "aws:ec2/routeTable:RouteTable": ("vpcId",),
    # AKS
    "azure-native:resources:ResourceGroup": ("resourceGroupName", "location"),
    "azure-native:containerservice:ManagedCluster": (
        "resourceGroupName", "resourceName", "location", "dnsPrefix", "fqdnSubdomain", "nodeResourceGroup",
        "linuxProfile", "windowsProfile", "diskEncryptionSetID", "networkProfile.serviceCidr",
        "networkProfile.serviceCidrs", "networkProfile.dnsServiceIP", "networkProfile.networkMode",
        "networkProfile.networkPlugin", "networkProfile.networkPluginMode", "networkProfile.podCidr",
        "networkProfile.networkDataplane", "networkProfile.networkPolicy", "networkProfile.outboundType",
    ),
    "azure-native:containerservice:AgentPool": (
        "resourceGroupName", "resourceName", "agentPoolName", "vmSize", "gpuInstanceProfile",
    ),
    "azure-native:keyvault:Vault": ("resourceGroupName", "vaultName", "location"),
    "azure-native:keyvault:Key": ("resourceGroupName", "vaultName", "keyName"),
    "azure-native:network:VirtualNetwork": ("resourceGroupName", "virtualNetworkName", "location"),
    "azure-native:network:Subnet": ("resourceGroupName", "virtualNetworkName", "subnetName", "defaultOutboundAccess"),
    "azure-native:storage:StorageAccount": ("resourceGroupName", "accountName", "location"),  # Velero's (backups)
}

# What an SDK docstring says when a property cannot change in place.
_FIXED_PHRASE = re.compile(
    r"forces? (a )?(new|replacement|recreat)|will force|cannot be (changed|updated)|can't be changed"
    r"|only be set at (the time of )?\w+ creat|immutable",
    re.IGNORECASE,
)

# --- the day-2 changes -------------------------------------------------------------------------
MACHINE_TYPES = {"gke": "e2-standard-8", "eks": "m6i.xlarge", "aks": "Standard_D4s_v5"}


def spot_pool_disabled(cloud: str) -> dict:
    """The stack before its spot pool was added (the stack files run one)."""
    return {"cloud": cloud, f"{cloud}.nodePools.spot.enabled": False}


def day2_changes(cloud: str, machine_type: bool = True) -> dict:
    """The common day-2 edits of a stack file (components/cluster/settings.py), all at once."""
    changes = {
        "cloud": cloud,
        # 4 nodes: more than one per zone on GKE's three, so its initialNodeCount (per zone) changes too.
        f"{cloud}.nodePools.workload.minNodes": 4,
        f"{cloud}.nodePools.workload.maxNodes": 12,
        f"{cloud}.kubernetesVersion": "1.33",
        f"{cloud}.api.authorizedCidrs": ["203.0.113.0/24", "198.51.100.0/24"],
        "apps.backend.spot": True,
    }
    if machine_type:
        changes[f"{cloud}.nodePools.workload.machineType"] = MACHINE_TYPES[cloud]
    return changes


# --- diffing -----------------------------------------------------------------------------------
def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf values by path, e.g. {'nodeConfig.taints[0].key': ...}; empty containers are leaves."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def changed_paths(before: dict, after: dict) -> dict[str, tuple[Any, Any]]:
    old, new = _leaves(before), _leaves(after)
    return {p: (old.get(p), new.get(p)) for p in sorted(old.keys() | new.keys()) if old.get(p) != new.get(p)}


def _covers(pattern: str, path: str) -> bool:
    """`pattern` (a listed property or an ignoreChanges path; `[*]` any index) is `path` or holds it."""
    regex = re.escape(pattern).replace(r"\[\*\]", r"\[\d+\]")
    return re.match(rf"{regex}($|[.\[])", path) is not None


def _forcing(type_token: str, path: str) -> str | None:
    property_path = re.sub(r"\[\d+\]", "", path)
    return next((p for p in FORCES_REPLACEMENT.get(type_token, ()) if _covers(p, property_path)), None)


def replacements(before, after) -> list[str]:
    """Changed inputs of resources in both runs that the provider would replace them for."""
    old = {r.urn: r for r in before.resources if r.custom and cloud_types.is_cloud_resource(r.type)}
    found = []
    for resource in after.resources:
        previous = old.get(resource.urn)
        if previous is None:
            continue
        for path, (was, now) in changed_paths(previous.inputs, resource.inputs).items():
            if any(_covers(ignored, path) for ignored in resource.ignore_changes):
                continue
            if _forcing(resource.type, path):
                found.append(f"{resource.type} {resource.name}: {path} {was!r} -> {now!r} forces replacement")
    return found


def lost(before, after) -> list[str]:
    """Cloud resources of `before` that `after` deletes (or re-creates under another URN)."""
    kept = {r.urn for r in after.resources}
    return [r.urn for r in before.resources if r.custom and cloud_types.is_cloud_resource(r.type) and r.urn not in kept]


def _assert_in_place(before, after):
    gone, replaced = lost(before, after), replacements(before, after)
    assert gone == [], "deleted or moved:\n" + "\n".join(gone)
    assert replaced == [], "replaced:\n" + "\n".join(replaced)
    invalid = cloud_types.check(after.resources).problems  # the changed inputs are valid SDK inputs too
    assert invalid == [], "\n".join(invalid)


# --- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("stack", STACKS)
def test_adding_the_spot_pool_changes_nothing_else(stack, cloud):
    before, after = simulated(stack, spot_pool_disabled(cloud)), simulated(stack, {"cloud": cloud})
    _assert_in_place(before, after)
    added = {r.name for r in after.resources if r.urn not in {b.urn for b in before.resources}}
    assert "cluster-spot" in added


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("stack", STACKS)
def test_pool_size_version_machine_type_cidrs_and_apps_on_spot_change_everything_in_place(stack, cloud):
    # AKS cannot change a pool's VM size at all: that case has its own (expected-failure) test.
    before = simulated(stack, {"cloud": cloud})
    after = simulated(stack, day2_changes(cloud, machine_type=cloud != "aks"))
    assert changed_paths(before.one("Deployment", "backend").inputs, after.one("Deployment", "backend").inputs)
    _assert_in_place(before, after)


def test_aks_machine_type_change_adds_a_new_pool_before_the_old_one_goes():
    """AKS cannot change a pool's VM size (azure-native: vmSize forces replacement; Microsoft Learn's
    resize procedure is a new pool, then drain and delete the old one). The pool name carries the size,
    so Pulumi's default create-before-delete replacement is that procedure: both names coexist."""
    before = simulated("production", {"cloud": "aks"})
    after = simulated("production", {"cloud": "aks", "aks.nodePools.workload.machineType": MACHINE_TYPES["aks"]})
    assert lost(before, after) == []
    pool = "azure-native:containerservice:AgentPool"
    old, new = before.one(pool, "cluster-workload"), after.one(pool, "cluster-workload")
    assert old.inputs["agentPoolName"] != new.inputs["agentPoolName"]
    assert [p for p in replacements(before, after) if "cluster-workload" not in p] == []
    assert new.delete_before_replace is False  # the new pool exists before the old one is deleted
    assert len(new.inputs["agentPoolName"]) <= 12 and new.inputs["agentPoolName"].isalnum()
    assert new.inputs["nodeLabels"] == old.inputs["nodeLabels"]  # workloads still find the pool by label


def test_the_check_catches_a_pool_change_that_replaces_the_pool():
    """The deliberate mistake: a GKE pool resize that changes initialNodeCount without ignore_changes."""
    before = simulated("production", {"cloud": "gke"})
    after = simulated("production", day2_changes("gke"))
    assert replacements(before, after) == []  # the program ignores initialNodeCount...
    mistaken = copy.deepcopy(after)
    mistaken.one("gcp:container/nodePool:NodePool", "cluster-workload").ignore_changes.remove("initialNodeCount")
    assert replacements(before, mistaken) == [  # ...and without that, the pool would be replaced
        "gcp:container/nodePool:NodePool cluster-workload: initialNodeCount 1 -> 2 forces replacement"
    ]


def test_the_check_catches_a_deleted_or_moved_resource():
    before = simulated("production", {"cloud": "gke"})
    after = simulated("production", spot_pool_disabled("gke"))
    [spot] = [r for r in before.resources if r.name == "cluster-spot"]
    assert lost(before, after) == [spot.urn]


def test_every_listed_property_exists_in_the_installed_sdk():
    missing = []
    for type_token, paths in FORCES_REPLACEMENT.items():
        for path in paths:
            try:
                cloud_types.prop_at(type_token, path)
            except LookupError as error:
                missing.append(error.args[0])
    assert missing == []


def _set_paths(value: Any, path: str = ""):
    """Every property path a resource's inputs set, nested objects included (list items transparent)."""
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            yield child
            yield from _set_paths(item, child)
    elif isinstance(value, list):
        for item in value:
            yield from _set_paths(item, path)


def test_sdk_docstrings_that_say_a_property_is_fixed_are_listed():
    unlisted = set()
    for stack in STACKS:
        for cloud in CLOUDS:
            for resource in simulated(stack, {"cloud": cloud}).resources:
                if not resource.custom or not cloud_types.is_cloud_resource(resource.type):
                    continue
                for path in set(_set_paths(resource.inputs)):
                    try:
                        doc = cloud_types.prop_at(resource.type, path).doc
                    except LookupError:
                        continue  # inside a map (labels, tags): keys are data, not properties
                    if _FIXED_PHRASE.search(doc) and not _forcing(resource.type, path):
                        unlisted.add(f"{resource.type} {path}")
    assert sorted(unlisted) == []


# --- incarnations: destroy, then create again ----------------------------------------------------
# Names a cloud keeps after the resource is deleted (one place; naming.py's unreleased_name gives
# these an incarnation suffix). A re-created stack asking for one would fail to create it.
NEVER_FREED = {
    "gcp:kms/keyRing:KeyRing": "Cloud KMS key rings cannot be deleted; destroy only forgets them",
    "gcp:kms/cryptoKey:CryptoKey": "Cloud KMS crypto keys cannot be deleted either (only their versions)",
    "azure-native:keyvault:Vault": "a purge-protected vault keeps its global name for its retention days",
    "azure-native:keyvault:Key": "lives in such a vault",
}
EXPECTED_NEVER_FREED = {
    "gke": {"gcp:kms/keyRing:KeyRing", "gcp:kms/cryptoKey:CryptoKey"},
    "eks": set(),  # KMS keys and IAM roles have no names a re-created stack would ask for
    "aks": {"azure-native:keyvault:Vault", "azure-native:keyvault:Key"},
}
_NAME_KEY = re.compile(r"^(name|accountId)$|Name(Prefix)?$")


def identity(sim, resource) -> tuple:
    """The names a resource is known by in its cloud: its name inputs, and for a crypto key its
    key ring's (the mocks give each resource the id `<pulumi name>-id`)."""
    names = tuple(sorted((k, v) for k, v in resource.inputs.items() if _NAME_KEY.search(k)))
    if resource.type == "gcp:kms/cryptoKey:CryptoKey":
        [ring] = [r for r in sim.resources if f"{r.name}-id" == resource.inputs["keyRing"]]
        names = identity(sim, ring) + names
    return names


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_new_incarnation_asks_for_no_name_the_cloud_still_holds_and_keeps_the_others(cloud):
    # Production only: the stack files differ in names, not in how names are made (runs cost time).
    first = simulated("production", {"cloud": cloud})
    second = simulated("production", {"cloud": cloud, f"{cloud}.incarnation": 2})
    ones = {r.urn: r for r in first.resources if r.custom and cloud_types.is_cloud_resource(r.type)}
    twos = {r.urn: r for r in second.resources if r.custom and cloud_types.is_cloud_resource(r.type)}
    assert ones.keys() == twos.keys()
    reused, renamed = [], []
    for urn, one in ones.items():
        same = identity(first, one) == identity(second, twos[urn])
        if one.type in NEVER_FREED and same:
            reused.append(f"{one.type} {one.name}: {identity(first, one)} ({NEVER_FREED[one.type]})")
        elif one.type not in NEVER_FREED and not same:
            renamed.append(f"{one.type} {one.name}: {identity(first, one)} -> {identity(second, twos[urn])}")
    assert reused == []
    assert renamed == []
    assert {r.type for r in ones.values() if r.type in NEVER_FREED} == EXPECTED_NEVER_FREED[cloud]
