"""EKS managed add-ons. The VPC CNI comes before the node groups (nodes stay NotReady without it);
CoreDNS, kube-proxy, the EBS CSI driver and the CSI snapshot controller come after them, since EKS
waits for their pods to run. An add-on that calls AWS does it as its own IRSA role, never the
node role.

The EBS CSI driver provisions and snapshots EBS volumes (the in-tree EBS plugin is gone: EKS
routes even the default `gp2` StorageClass to it); the snapshot controller serves the
VolumeSnapshot API that Velero's CSI snapshots (`ebs.csi.aws.com`) go through.
"""
from __future__ import annotations

import json
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.cluster.eks.roles import Role, Roles

VPC_CNI_SERVICE_ACCOUNT = ("kube-system", "aws-node")
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")  # the add-on's controller
EBS_CSI_POLICY = "service-role/AmazonEBSCSIDriverPolicy"
# Add-ons that never call AWS, so run without a role of their own.
_PLAIN_NODE_ADDONS = ("coredns", "kube-proxy", "snapshot-controller")


def network_addon(prefix: str, cluster: aws.eks.Cluster, roles: Roles) -> aws.eks.Addon:
    # The CNI's AWS permissions go to its own ServiceAccount, not to every pod via the node role.
    role = roles.irsa(f"{prefix}-vpc-cni", *VPC_CNI_SERVICE_ACCOUNT, ("AmazonEKS_CNI_Policy",))
    return _addon(prefix, cluster, "vpc-cni", roles, role, {"enableNetworkPolicy": "true"})


def node_addons(prefix: str, cluster: aws.eks.Cluster, roles: Roles, nodes: list[pulumi.Resource]) -> list[aws.eks.Addon]:
    """The add-ons whose pods need nodes: created once the node groups exist."""
    addons = [_addon(prefix, cluster, name, roles, None, depends_on=nodes) for name in _PLAIN_NODE_ADDONS]
    # AmazonEBSCSIDriverPolicy creates, attaches, snapshots and deletes only volumes and snapshots the
    # driver tagged itself. No StorageClass names a customer-managed KMS key (encrypted volumes use
    # the AWS-managed aws/ebs key), so the role needs no KMS grant; one that did would need
    # kms:CreateGrant and kms:GenerateDataKey* on that key.
    ebs_role = roles.irsa(f"{prefix}-ebs-csi", *EBS_CSI_SERVICE_ACCOUNT, (EBS_CSI_POLICY,))
    addons.append(_addon(prefix, cluster, "aws-ebs-csi-driver", roles, ebs_role, depends_on=nodes))
    return addons


def _addon(
    prefix: str,
    cluster: aws.eks.Cluster,
    addon: str,
    roles: Roles,
    role: Optional[Role],
    configuration: Optional[dict] = None,
    depends_on: Optional[list[pulumi.Resource]] = None,
) -> aws.eks.Addon:
    return aws.eks.Addon(
        f"{prefix}-{addon}",
        cluster_name=cluster.name,
        addon_name=addon,
        configuration_values=json.dumps(configuration) if configuration else None,
        service_account_role_arn=role.role.arn if role else None,
        resolve_conflicts_on_create="OVERWRITE",
        resolve_conflicts_on_update="OVERWRITE",
        opts=roles.assuming(role, depends_on),
    )
