"""IAM policy documents for EKS: service trust, IRSA trust, and what workload roles may do."""
from __future__ import annotations

import json

from components.cluster.base import IdentityPermissions


def partition(region: str) -> str:
    """The ARN partition of a region (aws, aws-us-gov, aws-cn)."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


def service_trust(service: str) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    )


def irsa_trust(provider_arn: str, issuer_host: str, namespace: str, service_account: str) -> str:
    """Exactly one Kubernetes ServiceAccount may assume the role, through the cluster's OIDC provider."""
    condition = {
        f"{issuer_host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
        f"{issuer_host}:aud": "sts.amazonaws.com",
    }
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": condition},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def workload_policy(
    permissions: IdentityPermissions, p: str, region: str, account: str, zone_ids: list[str], bucket_arns: tuple[str, ...] = ()
) -> str:
    statements = []
    if permissions.secrets:
        statements.append(
            {
                "Sid": "ReadConfiguredSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                # Secrets Manager appends a random 6-character suffix to every secret ARN.
                "Resource": [f"arn:{p}:secretsmanager:{region}:{account}:secret:{key}-??????" for key in permissions.secrets],
            }
        )
    if zone_ids:
        statements += [
            {
                "Sid": "ManageZoneRecords",
                "Effect": "Allow",
                "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
                "Resource": [f"arn:{p}:route53:::hostedzone/{z}" for z in zone_ids],
            },
            {"Sid": "TrackChanges", "Effect": "Allow", "Action": "route53:GetChange", "Resource": f"arn:{p}:route53:::change/*"},
            {"Sid": "FindZones", "Effect": "Allow", "Action": "route53:ListHostedZonesByName", "Resource": "*"},
        ]
    if bucket_arns:
        statements += [
            {"Sid": "ListBuckets", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": list(bucket_arns)},
            {
                "Sid": "ReadWriteBucketObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": [f"{arn}/*" for arn in bucket_arns],
            },
        ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def cluster_autoscaler_policy(cluster_name: str) -> str:
    """Cluster Autoscaler's rights: read every group, resize only this cluster's. EKS tags the
    Auto Scaling group of each managed node group `k8s.io/cluster-autoscaler/<cluster>: owned`."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ResizeThisClustersGroups",
                    "Effect": "Allow",
                    "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}},
                },
                {
                    "Sid": "Discover",
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                        # Labels and taints of empty node groups, so the spot pool can scale up from zero.
                        "eks:DescribeNodegroup",
                    ],
                    "Resource": "*",
                },
            ],
        }
    )
