"""Managed Kubernetes control planes (GKE, EKS, AKS): private, identity-federated, encrypted.

Property names are the wire (camelCase) names of pulumi-gcp, pulumi-aws and pulumi-azure-native.
Cloud resources carry no annotations, so these rules cannot be waived per resource: fix the
cluster, or change the rule's level in that stack's policy config.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyResource

from policies import kube
from policies.framework import ResourceRule, StackRule

GKE_CLUSTER = "gcp:container/cluster:Cluster"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
IAM_OIDC_PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
AKS_CLUSTER = "azure-native:containerservice:ManagedCluster"
_OPEN_TO_THE_WORLD = "0.0.0.0/0"


def _gke_private_nodes(resource: Any, config: Mapping) -> Iterator[str]:
    if kube.get_path(resource.props, "privateClusterConfig", "enablePrivateNodes") is not True:
        yield "privateClusterConfig.enablePrivateNodes is not true"


GKE_PRIVATE_NODES = ResourceRule(
    name="gke-private-nodes",
    description="GKE clusters use private nodes.",
    rationale="Nodes with public IPs are reachable from the internet on every NodePort and kubelet port.",
    remediation="Set privateClusterConfig.enablePrivateNodes: true (egress through Cloud NAT).",
    resource_types=(GKE_CLUSTER,),
    check=_gke_private_nodes,
)


def _gke_workload_identity(resource: Any, config: Mapping) -> Iterator[str]:
    if not kube.get_path(resource.props, "workloadIdentityConfig", "workloadPool"):
        yield "workloadIdentityConfig.workloadPool is not set"


GKE_WORKLOAD_IDENTITY = ResourceRule(
    name="gke-workload-identity",
    description="GKE clusters enable Workload Identity (workloadIdentityConfig.workloadPool).",
    rationale="Without it, pods act with the node's service account: every pod gets every node permission.",
    remediation="Set workloadIdentityConfig.workloadPool to '<project>.svc.id.goog'.",
    resource_types=(GKE_CLUSTER,),
    check=_gke_workload_identity,
)


def _gke_deletion_protection(resource: Any, config: Mapping) -> Iterator[str]:
    if resource.props.get("deletionProtection") is not True:
        yield "deletionProtection is not set to true"


GKE_DELETION_PROTECTION = ResourceRule(
    name="gke-deletion-protection",
    description="GKE clusters set deletionProtection: true explicitly.",
    rationale="A replace-triggering change or a stray destroy would delete the cluster and everything on it.",
    remediation="Set deletionProtection: true; turn it off in a reviewed change before a planned teardown.",
    resource_types=(GKE_CLUSTER,),
    check=_gke_deletion_protection,
)


def _gke_release_channel(resource: Any, config: Mapping) -> Iterator[str]:
    channel = kube.get_path(resource.props, "releaseChannel", "channel")
    if not channel or channel == "UNSPECIFIED":
        yield "releaseChannel.channel is not set"


GKE_RELEASE_CHANNEL = ResourceRule(
    name="gke-release-channel",
    description="GKE clusters are enrolled in a release channel.",
    rationale="A release channel keeps the control plane and nodes on supported, patched versions.",
    remediation="Set releaseChannel.channel to REGULAR (or STABLE).",
    resource_types=(GKE_CLUSTER,),
    check=_gke_release_channel,
)


def _gke_node_metadata(resource: Any, config: Mapping) -> Iterator[str]:
    # The cluster's own nodeConfig describes its default pool, which matters unless it is removed.
    if resource.resource_type == GKE_CLUSTER and (
        resource.props.get("removeDefaultNodePool") is True or "nodeConfig" not in resource.props
    ):
        return
    mode = kube.get_path(resource.props, "nodeConfig", "workloadMetadataConfig", "mode")
    if mode != "GKE_METADATA":
        yield f"nodeConfig.workloadMetadataConfig.mode is {mode or 'not set'}, not GKE_METADATA"


GKE_NODE_METADATA = ResourceRule(
    name="gke-node-pool-gke-metadata",
    description="GKE node pools expose the GKE metadata server (workloadMetadataConfig.mode GKE_METADATA).",
    rationale="The GKE metadata server is what gives pods their Workload Identity and hides the "
    "node's own credentials from them.",
    remediation="Set nodeConfig.workloadMetadataConfig.mode: GKE_METADATA on every node pool.",
    resource_types=(GKE_NODE_POOL, GKE_CLUSTER),
    check=_gke_node_metadata,
)


def _eks_encryption(resource: Any, config: Mapping) -> Iterator[str]:
    # pulumi-aws 7 models encryptionConfig as one object; older versions as a list of them.
    value = resource.props.get("encryptionConfig")
    configs = [kube.mapping(value)] if isinstance(value, Mapping) else [kube.mapping(v) for v in kube.sequence(value)]
    if not any(
        "secrets" in kube.sequence(c.get("resources")) and kube.get_path(c, "provider", "keyArn") for c in configs
    ):
        yield "encryptionConfig does not encrypt 'secrets' with a KMS key (provider.keyArn)"


EKS_SECRETS_ENCRYPTION = ResourceRule(
    name="eks-secrets-encryption",
    description="EKS clusters envelope-encrypt Secrets with a KMS key.",
    rationale="Without envelope encryption, Secrets sit in etcd protected only by AWS's disk encryption.",
    remediation="Set encryptionConfig: {resources: [secrets], provider: {keyArn: <KMS key ARN>}}.",
    resource_types=(EKS_CLUSTER,),
    check=_eks_encryption,
)


def _eks_public_endpoint(resource: Any, config: Mapping) -> Iterator[str]:
    vpc = kube.mapping(resource.props.get("vpcConfig"))
    # The API defaults: public endpoint on, reachable from 0.0.0.0/0.
    if vpc.get("endpointPublicAccess", True) is False:
        return
    cidrs = list(kube.sequence(vpc.get("publicAccessCidrs")))
    if not cidrs or _OPEN_TO_THE_WORLD in cidrs:
        yield "the public API endpoint is open to 0.0.0.0/0 (set endpointPublicAccess: false or narrow publicAccessCidrs)"


EKS_PRIVATE_ENDPOINT = ResourceRule(
    name="eks-private-endpoint",
    description="EKS API endpoints are private, or public only to listed CIDRs.",
    rationale="An API server open to the internet is one credential leak or CVE away from compromise.",
    remediation="Set vpcConfig.endpointPublicAccess: false (with endpointPrivateAccess: true), or "
    "publicAccessCidrs to the office/CI ranges.",
    resource_types=(EKS_CLUSTER,),
    check=_eks_public_endpoint,
)


def _eks_without_oidc(resources: Sequence[PolicyResource], config: Mapping) -> Iterator[tuple[PolicyResource, str]]:
    clusters = [r for r in resources if r.resource_type == EKS_CLUSTER]
    if clusters and not any(r.resource_type == IAM_OIDC_PROVIDER for r in resources):
        for cluster in clusters:
            yield cluster, f"EKS cluster {cluster.name} has no aws:iam OpenIdConnectProvider in the stack"


EKS_OIDC_PROVIDER = StackRule(
    name="eks-oidc-provider",
    description="A stack with an EKS cluster also declares an IAM OpenIdConnectProvider (IRSA).",
    rationale="IAM roles for service accounts need the cluster's OIDC issuer registered in IAM; "
    "without it pods fall back to the node role.",
    remediation="Declare aws.iam.OpenIdConnectProvider with url = cluster.identities[0].oidcs[0].issuer "
    "and client id sts.amazonaws.com.",
    check=_eks_without_oidc,
)


def _aks_workload_identity(resource: Any, config: Mapping) -> Iterator[str]:
    if kube.get_path(resource.props, "securityProfile", "workloadIdentity", "enabled") is not True:
        yield "securityProfile.workloadIdentity.enabled is not true"


AKS_WORKLOAD_IDENTITY = ResourceRule(
    name="aks-workload-identity",
    description="AKS clusters enable Workload Identity.",
    rationale="Pods get federated Entra ID identities instead of shared secrets or the kubelet identity.",
    remediation="Set securityProfile.workloadIdentity.enabled: true (needs oidcIssuerProfile.enabled).",
    resource_types=(AKS_CLUSTER,),
    check=_aks_workload_identity,
)


def _aks_oidc_issuer(resource: Any, config: Mapping) -> Iterator[str]:
    if kube.get_path(resource.props, "oidcIssuerProfile", "enabled") is not True:
        yield "oidcIssuerProfile.enabled is not true"


AKS_OIDC_ISSUER = ResourceRule(
    name="aks-oidc-issuer",
    description="AKS clusters enable the OIDC issuer.",
    rationale="The OIDC issuer is what Entra ID federates Workload Identity tokens against.",
    remediation="Set oidcIssuerProfile.enabled: true.",
    resource_types=(AKS_CLUSTER,),
    check=_aks_oidc_issuer,
)


def _aks_network_policy(resource: Any, config: Mapping) -> Iterator[str]:
    engine = kube.get_path(resource.props, "networkProfile", "networkPolicy")
    if not engine or str(engine).lower() == "none":
        yield "networkProfile.networkPolicy is not set, so NetworkPolicies are not enforced"


AKS_NETWORK_POLICY = ResourceRule(
    name="aks-network-policy",
    description="AKS clusters run a NetworkPolicy engine (networkProfile.networkPolicy).",
    rationale="Without an engine, every NetworkPolicy the platform declares (default-deny included) is ignored.",
    remediation="Set networkProfile.networkPolicy to cilium, azure or calico.",
    resource_types=(AKS_CLUSTER,),
    check=_aks_network_policy,
)


def _aks_public_api(resource: Any, config: Mapping) -> Iterator[str]:
    access = kube.mapping(resource.props.get("apiServerAccessProfile"))
    if access.get("enablePrivateCluster") is True:
        return
    ranges = list(kube.sequence(access.get("authorizedIPRanges")))
    if not ranges:
        yield "the API server is public with no apiServerAccessProfile.authorizedIPRanges"
    elif _OPEN_TO_THE_WORLD in ranges:
        yield "apiServerAccessProfile.authorizedIPRanges contains 0.0.0.0/0"


AKS_PRIVATE_API_SERVER = ResourceRule(
    name="aks-private-api-server",
    description="AKS API servers are private, or public only to authorized IP ranges.",
    rationale="An API server open to the internet is one credential leak or CVE away from compromise.",
    remediation="Set apiServerAccessProfile.enablePrivateCluster: true, or authorizedIPRanges to "
    "the office/CI ranges (never 0.0.0.0/0).",
    resource_types=(AKS_CLUSTER,),
    check=_aks_public_api,
)

RULES = [
    GKE_PRIVATE_NODES,
    GKE_WORKLOAD_IDENTITY,
    GKE_DELETION_PROTECTION,
    GKE_RELEASE_CHANNEL,
    GKE_NODE_METADATA,
    EKS_SECRETS_ENCRYPTION,
    EKS_PRIVATE_ENDPOINT,
    EKS_OIDC_PROVIDER,
    AKS_WORKLOAD_IDENTITY,
    AKS_OIDC_ISSUER,
    AKS_NETWORK_POLICY,
    AKS_PRIVATE_API_SERVER,
]
