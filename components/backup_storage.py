"""Where Velero keeps backups in each cloud: a bucket (GCS, S3) or blob container (Azure) the
program creates private, encrypted and versioned, and what Velero needs to use it (its provider
plugin, the BackupStorageLocation config, the cloud's CSI driver for volume snapshots).

Each cloud cluster's `backup_storage()` calls one of these with its own provider and names; the
Velero identity then gets read/write on exactly that bucket through `IdentityPermissions.buckets`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi

# Velero's provider plugins (init containers of the Velero pod), the release paired with Velero 1.18.
PLUGIN_VERSION = "v1.14.0"
# Days a replaced or deleted backup object is kept as an older version before the bucket drops it.
NONCURRENT_VERSION_DAYS = 30
AZURE_CONTAINER = "velero"


@dataclass
class BackupStorage:
    """A backup bucket and how Velero reaches it."""

    provider: str  # Velero's name for the object store plugin: gcp, aws, azure
    bucket: pulumi.Input[str]  # the bucket (GCS, S3) or blob container (Azure)
    # What `IdentityPermissions.buckets` holds for it: GCS bucket name, S3 bucket ARN, Azure container id.
    ref: pulumi.Input[str]
    plugin_image: str
    snapshot_driver: str  # the cloud's CSI driver: the VolumeSnapshotClass's `driver`
    config: dict[str, pulumi.Input[str]] = field(default_factory=dict)  # BackupStorageLocation `config`


def plugin_image(plugin: str, version: str = PLUGIN_VERSION) -> str:
    return f"velero/velero-plugin-for-{plugin}:{version}"


def gcs_bucket(name: str, bucket_name: str, project: str, location: str, opts: pulumi.ResourceOptions) -> BackupStorage:
    """A GCS bucket: uniform access (IAM only, no ACLs), public access prevented, versioned;
    Google encrypts every object at rest."""
    import pulumi_gcp as gcp

    bucket = gcp.storage.Bucket(
        name,
        name=bucket_name,
        project=project,
        location=location.upper(),
        storage_class="STANDARD",
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning={"enabled": True},
        lifecycle_rules=[
            {
                "action": {"type": "Delete"},
                "condition": {"days_since_noncurrent_time": NONCURRENT_VERSION_DAYS, "with_state": "ARCHIVED"},
            }
        ],
        force_destroy=False,  # a stack destroy never empties the backups
        opts=opts,
    )
    return BackupStorage(
        provider="gcp", bucket=bucket.name, ref=bucket.name, plugin_image=plugin_image("gcp"), snapshot_driver="pd.csi.storage.gke.io"
    )


def s3_bucket_policy(bucket_arn: str) -> str:
    """Deny every request that is not over TLS."""
    statement = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def s3_bucket(name: str, bucket_name: pulumi.Input[str], region: str, partition: str, opts: pulumi.ResourceOptions) -> BackupStorage:
    """An S3 bucket: SSE-KMS with a bucket key, versioned, every public access blocked, ACLs off,
    TLS only."""
    import pulumi_aws as aws

    bucket = aws.s3.Bucket(name, bucket=bucket_name, force_destroy=False, opts=opts)
    arn = pulumi.Output.from_input(bucket_name).apply(lambda b: f"arn:{partition}:s3:::{b}")
    on_bucket = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(parent=bucket))
    aws.s3.BucketPublicAccessBlock(
        name,
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=on_bucket,
    )
    aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=on_bucket)
    aws.s3.BucketServerSideEncryptionConfiguration(
        name,
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}],
        opts=on_bucket,
    )
    versioning = aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=on_bucket)
    aws.s3.BucketLifecycleConfiguration(
        name,
        bucket=bucket.id,
        rules=[
            {
                "id": "expire-old-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
            }
        ],
        opts=pulumi.ResourceOptions.merge(on_bucket, pulumi.ResourceOptions(depends_on=[versioning])),
    )
    aws.s3.BucketPolicy(name, bucket=bucket.id, policy=arn.apply(s3_bucket_policy), opts=on_bucket)
    return BackupStorage(
        provider="aws",
        bucket=bucket.bucket,
        ref=arn,
        plugin_image=plugin_image("aws"),
        snapshot_driver="ebs.csi.aws.com",
        config={"region": region},
    )


def azure_container(
    name: str,
    account_name: str,
    place: dict[str, Any],
    subscription_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> BackupStorage:
    """A blob container in a storage account of its own: Entra ID only (no shared keys, no public
    blobs), TLS 1.2, infrastructure (double) encryption, zone-redundant, versioning and soft delete."""
    import pulumi_azure_native as azure

    account = azure.storage.StorageAccount(
        name,
        account_name=account_name,
        **place,
        kind="StorageV2",
        sku={"name": "Standard_ZRS"},  # access tier: StorageV2's default (Hot)
        allow_blob_public_access=False,
        allow_shared_key_access=False,
        default_to_o_auth_authentication=True,
        enable_https_traffic_only=True,
        minimum_tls_version="TLS1_2",
        encryption={
            "key_source": "Microsoft.Storage",
            "require_infrastructure_encryption": True,
            "services": {"blob": {"enabled": True, "key_type": "Account"}},
        },
        opts=opts,
    )
    on_account = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(parent=account))
    azure.storage.BlobServiceProperties(
        name,
        account_name=account.name,
        resource_group_name=place["resource_group_name"],
        blob_services_name="default",
        is_versioning_enabled=True,
        delete_retention_policy={"enabled": True, "days": NONCURRENT_VERSION_DAYS},
        container_delete_retention_policy={"enabled": True, "days": NONCURRENT_VERSION_DAYS},
        opts=on_account,
    )
    container = azure.storage.BlobContainer(
        name,
        container_name=AZURE_CONTAINER,
        account_name=account.name,
        resource_group_name=place["resource_group_name"],
        public_access="None",
        opts=on_account,
    )
    return BackupStorage(
        provider="azure",
        bucket=AZURE_CONTAINER,
        ref=container.id,
        plugin_image=plugin_image("microsoft-azure"),
        snapshot_driver="disk.csi.azure.com",
        # Entra ID (the pod's workload identity) instead of the account key, which is switched off.
        config={
            "storageAccount": account_name,
            "resourceGroup": place["resource_group_name"],
            "subscriptionId": subscription_id,
            "useAAD": "true",
        },
    )
