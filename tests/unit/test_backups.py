"""Backups under mocks, per cloud: Velero's bucket is private, encrypted and versioned; Velero's
workload identity may use that bucket and the chart runs as it; the schedules back up the app
namespace within the RPO; the VolumeSnapshotClass names the cloud's CSI driver; every chart value
is a key of the official Velero chart; bad schedules fail before any resource."""
from __future__ import annotations

import json

import pytest

from components.addons.backups import backup_problems, BackupSettings, longest_gap
from components.addons.chart_values import schema_errors, unknown_values
from infra.simulate import ProgramFailed, simulate, stack_config
from tests.cloud_types import check

CLOUDS = ("gke", "eks", "aks")
ON = {"addons.backups.enabled": True}
APP_NAMESPACE = "clipper-production"
CHART = "kubernetes:helm.sh/v4:Chart"
SNAPSHOT_CLASS = "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshotClass"
DRIVERS = {"gke": "pd.csi.storage.gke.io", "eks": "ebs.csi.aws.com", "aks": "disk.csi.azure.com"}
PLUGINS = {"gke": "velero/velero-plugin-for-gcp", "eks": "velero/velero-plugin-for-aws", "aks": "velero/velero-plugin-for-microsoft-azure"}


@pytest.fixture(scope="module")
def runs():
    return {cloud: simulate("production", {"cloud": cloud, **ON}) for cloud in CLOUDS}


def _values(sim) -> dict:
    return sim.one(CHART, "velero").inputs["values"]


def _one(sim, type_) -> dict:
    found = sim.of_type(type_)
    assert len(found) == 1, [r.name for r in found]
    return found[0].inputs


def test_backups_are_off_unless_enabled():
    sim = simulate("production", {"cloud": "gke", "addons.backups.enabled": False})
    assert not [r for r in sim.resources if "velero" in r.name or "backups" in r.name]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_staging_and_production_back_up_the_app_namespace_within_the_runbooks_rpo(stack):
    sim = simulate(stack, {"cloud": "gke"})
    settings = stack_config(stack)["addons"]["backups"]
    assert settings["enabled"] is True and settings.get("rpo", "1h") == "1h"
    app_namespace = stack_config(stack)["appNamespace"]
    hourly = _values(sim)["schedules"]["hourly"]
    assert hourly["schedule"] == "0 * * * *" and hourly["template"]["includedNamespaces"] == [app_namespace]


def test_velero_is_cluster_admin_through_our_binding_with_its_waiver_and_no_wildcard_role(runs):
    values = _values(runs["gke"])
    assert values["rbac"] == {"create": False}  # the chart's cluster-admin binding and its `*` Role in velero
    binding = runs["gke"].one("ClusterRoleBinding", "velero-cluster-admin")
    assert binding.inputs["roleRef"]["name"] == "cluster-admin"
    assert binding.inputs["subjects"] == [{"kind": "ServiceAccount", "name": "velero", "namespace": "velero"}]
    assert binding.inputs["metadata"]["annotations"]["waiver.policy.clipper.dev/rbac-no-cluster-admin-binding"]


def test_gcs_bucket_is_private_versioned_and_kept_on_destroy(runs):
    bucket = _one(runs["gke"], "gcp:storage/bucket:Bucket")
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["forceDestroy"] is False
    assert bucket["location"] == "EUROPE-WEST4"  # the cluster's region: backups stay beside it
    # Old versions go after 30 days; Velero's own TTL removes current backups.
    assert bucket["lifecycleRules"][0]["condition"]["daysSinceNoncurrentTime"] == 30


def test_s3_bucket_is_encrypted_versioned_private_and_tls_only(runs):
    sim = runs["eks"]
    assert _one(sim, "aws:s3/bucket:Bucket")["forceDestroy"] is False
    block = _one(sim, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = _one(sim, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms"} and sse["bucketKeyEnabled"] is True
    assert _one(sim, "aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"] == {"status": "Enabled"}
    assert _one(sim, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    [statement] = json.loads(_one(sim, "aws:s3/bucketPolicy:BucketPolicy")["policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_azure_container_is_entra_only_encrypted_versioned_and_private(runs):
    sim = runs["aks"]
    account = _one(sim, "azure-native:storage:StorageAccount")
    assert account["allowBlobPublicAccess"] is False and account["allowSharedKeyAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2" and account["enableHttpsTrafficOnly"] is True
    assert account["encryption"]["requireInfrastructureEncryption"] is True
    assert len(account["accountName"]) <= 24 and account["accountName"].isalnum()
    service = _one(sim, "azure-native:storage:BlobServiceProperties")
    assert service["isVersioningEnabled"] is True and service["deleteRetentionPolicy"]["enabled"] is True
    assert _one(sim, "azure-native:storage:BlobContainer")["publicAccess"] == "None"


def test_gke_velero_identity_may_use_the_bucket_and_the_chart_runs_as_it(runs):
    sim = runs["gke"]
    bucket = _one(sim, "gcp:storage/bucket:Bucket")["name"]
    grant = _one(sim, "gcp:storage/bucketIAMMember:BucketIAMMember")
    account = sim.one("gcp:serviceaccount/account:Account", "cluster-velero-velero")
    email = f"{account.inputs['accountId']}@mock-project.iam.gserviceaccount.com"
    assert grant == {**grant, "bucket": bucket, "role": "roles/storage.objectAdmin", "member": f"serviceAccount:{email}"}
    wi = sim.one("gcp:serviceaccount/iAMMember:IAMMember", "cluster-velero-velero-wi").inputs
    assert wi["member"].endswith("[velero/velero]")
    values = _values(sim)
    assert values["serviceAccount"]["server"] == {"name": "velero", "annotations": {"iam.gke.io/gcp-service-account": email}}
    assert values["credentials"] == {"useSecret": False}
    assert values["configuration"]["backupStorageLocation"][0] | {"config": {}} == {
        "name": "default", "provider": "gcp", "bucket": bucket, "default": True, "accessMode": "ReadWrite", "config": {}
    }


def test_eks_velero_role_may_use_only_its_bucket(runs):
    sim = runs["eks"]
    bucket = _one(sim, "aws:s3/bucket:Bucket")["bucket"]
    assert bucket.startswith("clipper-production") and bucket.endswith("123456789012")
    policy = json.loads(sim.one("aws:iam/rolePolicy:RolePolicy", "cluster-velero-velero").inputs["policy"])
    arn = f"arn:aws:s3:::{bucket}"
    assert {s["Sid"]: s["Resource"] for s in policy["Statement"]} == {"ListBuckets": [arn], "ReadWriteBucketObjects": [f"{arn}/*"]}
    trust = json.loads(sim.one("aws:iam/role:Role", "cluster-velero-velero").inputs["assumeRolePolicy"])
    assert "system:serviceaccount:velero:velero" in json.dumps(trust)
    values = _values(sim)
    assert values["serviceAccount"]["server"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:role::123456789012:cluster-velero-velero"}
    location = values["configuration"]["backupStorageLocation"][0]
    assert (location["provider"], location["bucket"], location["config"]) == ("aws", bucket, {"region": "eu-west-1"})


def test_aks_velero_identity_is_blob_contributor_on_its_container_only(runs):
    sim = runs["aks"]
    identity = sim.one("azure-native:managedidentity:UserAssignedIdentity", "cluster-velero-velero")
    grant = sim.one("azure-native:authorization:RoleAssignment", "cluster-velero-velero-bucket-0").inputs
    assert grant["principalId"] == "cluster-velero-velero-principal-id"
    assert grant["scope"] == "cluster-backups-id"  # the container's id
    assert grant["roleDefinitionId"].endswith("/ba92f5b4-2d11-453d-a403-e96b0029c9fe")  # Storage Blob Data Contributor
    assert identity.inputs["location"]
    values = _values(sim)
    assert values["podLabels"] == {"azure.workload.identity/use": "true"}
    assert values["serviceAccount"]["server"]["annotations"] == {"azure.workload.identity/client-id": "cluster-velero-velero-client-id"}
    config = values["configuration"]["backupStorageLocation"][0]["config"]
    assert config["useAAD"] == "true" and config["storageAccount"] == _one(sim, "azure-native:storage:StorageAccount")["accountName"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_snapshot_class_uses_the_clouds_csi_driver_and_velero_finds_it(runs, cloud):
    snapshot_class = _one(runs[cloud], SNAPSHOT_CLASS)
    assert snapshot_class["driver"] == DRIVERS[cloud]
    assert snapshot_class["metadata"]["labels"]["velero.io/csi-volumesnapshot-class"] == "true"
    assert snapshot_class["deletionPolicy"] == "Delete"
    values = _values(runs[cloud])
    assert values["configuration"]["features"] == "EnableCSI" and values["snapshotsEnabled"] is False
    [plugin] = values["initContainers"]
    assert plugin["image"].startswith(PLUGINS[cloud] + ":v")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_default_schedules_back_up_the_app_namespace_every_hour(runs, cloud):
    schedules = _values(runs[cloud])["schedules"]
    assert schedules["hourly"]["schedule"] == "0 * * * *"
    assert schedules["hourly"]["template"] | {"snapshotVolumes": True} == {
        "ttl": "168h", "includedNamespaces": [APP_NAMESPACE], "snapshotVolumes": True, "storageLocation": "default"
    }
    assert schedules["daily"]["template"]["ttl"] == "720h"
    assert longest_gap(schedules["hourly"]["schedule"]) <= 60


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_value_passed_to_velero_is_a_key_of_the_official_chart(charts_dir, runs, cloud):
    chart = charts_dir / "velero-12.1.0"
    values = _values(runs[cloud])
    assert unknown_values(chart, values) == []
    assert schema_errors(chart, values) == []


@pytest.mark.parametrize("cloud", CLOUDS)
def test_backup_cloud_resources_match_the_sdk_input_types(runs, cloud):
    report = check(runs[cloud].resources)
    assert report.problems == [], "\n".join(report.problems)


def test_velero_namespace_is_default_deny_with_api_server_and_https_egress(runs):
    policies = {
        r.inputs["metadata"]["name"]: r.inputs["spec"] for r in runs["gke"].of_type("NetworkPolicy") if r.inputs["metadata"]["namespace"] == "velero"
    }
    # allow-scrape-velero: Prometheus (addons.monitoring) reads Velero's backup metrics.
    assert set(policies) == {"default-deny", "allow-dns", "allow-api-server", "allow-internet-egress", "allow-scrape-velero"}
    assert policies["allow-internet-egress"]["egress"][0]["ports"] == [{"port": 443, "protocol": "TCP"}]
    namespace = runs["gke"].one("Namespace", "velero").inputs["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_existing_cluster_uses_the_configured_location_and_its_credentials():
    location = {"provider": "aws", "bucket": "drill", "config": {"region": "minio", "s3Url": "http://minio.local:9000"}, "credentialSecret": "store"}
    sim = simulate(
        "production",
        {"cloud": "existing", "existing": {"mode": "render", "secretStore": {"fake": {"data": []}}}, **ON, "addons.backups.location": location},
    )
    values = _values(sim)
    bsl = values["configuration"]["backupStorageLocation"][0]
    assert (bsl["bucket"], bsl["config"], bsl["credential"]) == ("drill", location["config"], {"name": "store", "key": "cloud"})
    assert not sim.of_type(SNAPSHOT_CLASS)  # no snapshotDriver configured
    assert not [r for r in sim.resources if r.type.startswith(("gcp:", "aws:", "azure-native:"))]


# --- config that cannot meet the RPO fails before any resource -------------------------------------

BAD = {
    "every two hours": (
        {"addons.backups.schedules": {"hourly": {"cron": "0 */2 * * *", "retention": "168h"}}},
        "addons.backups.schedules.hourly.cron: '0 */2 * * *' leaves up to 2h between backups of 'clipper-production', "
        "more than addons.backups.rpo (1h)",
    ),
    "working hours only": (
        {"addons.backups.schedules": {"hourly": {"cron": "0 9-17 * * 1-5", "retention": "168h"}}},
        "addons.backups.schedules.hourly.cron: '0 9-17 * * 1-5' leaves up to 64h between backups",
    ),
    "a tighter RPO than the defaults meet": ({"addons.backups.rpo": "30m"}, "more than addons.backups.rpo (30m)"),
    "retention shorter than the interval": (
        {"addons.backups.schedules": {"hourly": {"cron": "0 * * * *", "retention": "45m"}}},
        "addons.backups.schedules.hourly.retention: 45m expires each backup before the next one (runs up to 1h apart)",
    ),
    "no schedule for the app namespace": (
        {"addons.backups.schedules": {"other": {"cron": "@hourly", "retention": "24h", "namespaces": ["monitoring"]}}},
        "addons.backups.schedules: none backs up the app namespace 'clipper-production'",
    ),
    "not cron": (
        {"addons.backups.schedules": {"hourly": {"cron": "every hour", "retention": "24h"}}},
        "addons.backups.schedules.hourly.cron: 'every hour' is not five cron fields",
    ),
    "minute out of range": (
        {"addons.backups.schedules": {"hourly": {"cron": "75 * * * *", "retention": "24h"}}},
        "addons.backups.schedules.hourly.cron: minute '75' is outside 0-59",
    ),
    "retention not a duration": (
        {"addons.backups.schedules": {"hourly": {"cron": "@hourly", "retention": "7 days"}}},
        "clipper:addons.backups.schedules.hourly.retention",
    ),
    "location on a cloud cluster": (
        {"addons.backups.location": {"provider": "aws", "bucket": "b"}},
        "addons.backups.location: only for cloud: existing; on gke the program creates the bucket",
    ),
}


@pytest.mark.parametrize("overrides,expected", BAD.values(), ids=BAD.keys())
def test_backups_that_cannot_meet_the_rpo_fail_naming_the_key_and_register_nothing(overrides, expected):
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", {"cloud": "gke", **ON, **overrides})
    assert expected in str(failure.value)
    assert failure.value.registered == []


def test_an_existing_cluster_needs_a_location():
    with pytest.raises(ProgramFailed) as failure:
        simulate("production", {"cloud": "existing", "existing": {"mode": "render", "secretStore": {"fake": {"data": []}}}, **ON})
    assert "addons.backups.location: required on cloud: existing" in str(failure.value)
    assert failure.value.registered == []


@pytest.mark.parametrize(
    "cron,gap",
    [
        ("0 * * * *", 60),
        ("*/15 * * * *", 15),
        ("5,35 * * * *", 30),
        ("0 0-22 * * *", 120),  # 22:00 to 00:00
        ("30 2 * * *", 1440),
        ("0 0 * * 0", 7 * 1440),
        ("0 0 * * 7", 7 * 1440),  # Sunday spelt 7
        ("@hourly", 60),
        ("@every 20m", 20),
        ("0 0 1 * *", 28 * 1440 + 1),
    ],
)
def test_longest_gap_between_runs(cron, gap):
    assert longest_gap(cron) == gap


def test_two_schedules_together_are_not_counted_as_one():
    # The RPO is met by one schedule alone; the daily one does not fill the hourly one's gaps.
    settings = BackupSettings(
        schedules={"a": {"cron": "0 */2 * * *", "retention": "24h"}, "b": {"cron": "0 1-23/2 * * *", "retention": "24h"}}
    )
    assert backup_problems(settings, "apps", "gke") == [
        "addons.backups.schedules.a.cron: '0 */2 * * *' leaves up to 2h between backups of 'apps', more than addons.backups.rpo (1h)"
    ]


# --- the ops side: which backup a restore uses, the RPO line, the Restore object, the RTO verdict ----


def _backup(name, phase, completed, namespaces=("clipper-production",)):
    return {"metadata": {"name": name}, "spec": {"includedNamespaces": list(namespaces)},
            "status": {"phase": phase, "completionTimestamp": completed}}


def test_restore_uses_the_newest_completed_backup_that_holds_the_namespace():
    from infra.ops.backups import newest_completed

    backups = [
        _backup("old", "Completed", "2026-12-01T00:00:00Z"),
        _backup("failed", "Failed", "2026-12-01T02:00:00Z"),
        _backup("other-namespace", "Completed", "2026-12-01T03:00:00Z", ["monitoring"]),
        _backup("newest", "Completed", "2026-12-01T01:00:00Z"),
    ]
    assert newest_completed(backups, "clipper-production")["metadata"]["name"] == "newest"
    assert newest_completed(backups, "nowhere") is None


def test_rpo_line_says_met_or_not_with_the_age():
    from datetime import datetime, timezone

    from infra.ops.backups import rpo_line

    backups = [_backup("velero-hourly-1", "Completed", "2026-12-01T01:00:00Z")]
    now = datetime(2026, 12, 1, 1, 40, tzinfo=timezone.utc)
    assert rpo_line(backups, "clipper-production", "1h", now) == (
        True, "RPO 1h: met: newest completed backup of clipper-production is velero-hourly-1, 40m old")
    assert rpo_line(backups, "clipper-production", "30m", now)[0] is False
    assert rpo_line([], "clipper-production", "1h", now) == (False, "RPO 1h: NOT MET: no completed backup of clipper-production")


def test_restore_object_in_place_and_into_a_new_namespace():
    from infra.ops.backups import restore_object

    in_place = restore_object("r1", "velero", "b1", "apps", None)
    assert in_place["spec"] == {"backupName": "b1", "includedNamespaces": ["apps"], "restorePVs": True, "existingResourcePolicy": "none"}
    assert in_place["metadata"]["namespace"] == "velero"
    assert restore_object("r2", "velero", "b1", "apps", "apps-restored")["spec"]["namespaceMapping"] == {"apps": "apps-restored"}


def test_rto_verdict_against_the_runbooks_one_to_two_hours():
    from infra.ops.dr_drill import rto_verdict

    assert rto_verdict(95) == "RTO measured: 1m35s (within the runbook's 1-2 h)"
    assert rto_verdict(90 * 60) == "RTO measured: 1h30m (within the runbook's 2 h limit)"
    assert rto_verdict(3 * 3600) == "RTO measured: 3h00m (OVER the runbook's 2 h)"
