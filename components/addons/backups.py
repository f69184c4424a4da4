"""Backups: Velero from its official chart, writing to the stack's cloud object storage as the
stack's workload identity, taking volume snapshots through the cloud's CSI driver, on schedules
from config that meet the runbook's recovery point objective (RPO: at most 1 h of app data lost).

The bucket (GCS / S3) or blob container (Azure) comes from `Cluster.backup_storage()`: private,
encrypted, versioned. Velero's identity comes from `Cluster.identity_for` like External Secrets',
granted read/write on that bucket alone (`IdentityPermissions.buckets`); no key is ever stored.
On a cluster made elsewhere (`cloud: existing`) the storage is made elsewhere too and
`addons.backups.location` names it.

Config is checked before any resource: a schedule whose longest gap between runs exceeds `rpo`,
or a retention that expires backups before the next one exists, is an error naming the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.addons.helm_addon import AddonSettings, AddonTraffic, ClusterNetwork, HelmAddon, HelmAddonArgs
from components.addons.spread import resources
from components.backup_storage import PLUGIN_VERSION, BackupStorage, plugin_image
from components.cluster.base import WorkloadIdentity
from components.meta import platform_labels
from components.settings import DnsLabel, Settings

SERVICE_ACCOUNT = "velero"
# Velero picks the VolumeSnapshotClass of a volume's CSI driver that carries this label.
SNAPSHOT_CLASS_LABEL = "velero.io/csi-volumesnapshot-class"
SNAPSHOT_CLASS = "velero-snapshots"
LOCATION = "default"  # the BackupStorageLocation every schedule and restore uses
_DURATION = r"^\d+[mh]$"
_PLUGINS = {"aws": "aws", "gcp": "gcp", "azure": "microsoft-azure"}


class BackupSchedule(Settings):
    cron: str = Field(description="When the backup runs: five-field cron (UTC), or @hourly, @daily, @weekly, `@every 30m`.")
    retention: str = Field(pattern=_DURATION, description="How long each backup is kept (Velero TTL, e.g. 168h).")
    namespaces: Optional[list[DnsLabel]] = Field(default=None, description="Namespaces backed up (default: the app namespace).")
    snapshot_volumes: bool = Field(default=True, description="Snapshot the namespaces' persistent volumes through CSI.")


class BackupLocation(Settings):
    """Object storage made elsewhere, for `cloud: existing` (an S3-compatible store, a bucket)."""

    provider: Literal["aws", "gcp", "azure"] = Field(description="Velero object store plugin (aws also serves S3-compatible stores).")
    bucket: str = Field(min_length=1)
    prefix: Optional[str] = None
    config: dict[str, str] = Field(default_factory=dict, description="BackupStorageLocation config (region, s3Url...).")
    snapshot_driver: Optional[str] = Field(
        default=None, description="The cluster's CSI driver for a VolumeSnapshotClass; unset: none is declared."
    )
    credential_secret: Optional[DnsLabel] = Field(
        default=None, description="Secret in the Velero namespace (key `cloud`) with the store's credentials, made elsewhere."
    )


DEFAULT_SCHEDULES = {
    # Meets the RPO of 1 h: at most an hour between two backups of the app namespace.
    "hourly": {"cron": "0 * * * *", "retention": "168h"},
    "daily": {"cron": "30 2 * * *", "retention": "720h"},
}


class BackupSettings(AddonSettings):
    enabled: bool = Field(default=False, description="Install Velero and back up the app namespace on `schedules`.")
    chart: str = "velero"
    repository: str = "https://vmware-tanzu.github.io/helm-charts"
    version: str = "12.1.0"
    namespace: str = "velero"
    rpo: str = Field(
        default="1h", pattern=_DURATION, description="Recovery point objective: the most app data a restore may lose (runbook: 1h)."
    )
    schedules: dict[DnsLabel, BackupSchedule] = Field(
        default=DEFAULT_SCHEDULES,
        validate_default=True,
        description="Backup schedules by name; one must back up the app namespace at least every `rpo`.",
    )
    plugin_version: str = Field(default=PLUGIN_VERSION, description="Tag of Velero's cloud provider plugin image.")
    location: Optional[BackupLocation] = Field(default=None, description="cloud: existing only: where backups go.")


# --- schedules against the RPO ---------------------------------------------------------------------

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0"}
WEEK = 7 * 24 * 60


def minutes(duration: str) -> int:
    number, unit = int(duration[:-1]), duration[-1]
    return number * 60 if unit == "h" else number


def describe_minutes(value: int) -> str:
    if value % 1440 == 0:
        return f"{value // 1440}d"
    return f"{value // 60}h" if value % 60 == 0 else f"{value}m"


def _field_values(text: str, name: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not match:
            raise ValueError(f"{name} {part!r} is not a number, range, list or step")
        span, step = match.group(1), int(match.group(2) or 1)
        if span == "*":
            start, end = low, high
        else:
            start, _, end_text = span.partition("-")
            start, end = int(start), int(end_text or (high if match.group(2) else start))
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"{name} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def longest_gap(cron: str) -> int:
    """The longest time between two runs of `cron`, in minutes (ValueError for bad cron).

    Schedules limited by day of month or month run at most monthly: their gap counts as 28 days+."""
    cron = _MACROS.get(cron.strip(), cron.strip())
    every = re.fullmatch(r"@every\s+(\d+)([mh])", cron)
    if every:
        gap = minutes(every.group(1) + every.group(2))
        if gap < 1:
            raise ValueError("@every needs a positive duration")
        return gap
    parts = cron.split()
    if len(parts) != 5:
        raise ValueError(f"{cron!r} is not five cron fields (minute hour day-of-month month day-of-week)")
    minute, hour, dom, month, dow = (_field_values(p, *f) for p, f in zip(parts, _FIELDS))
    if parts[2] != "*" or parts[3] != "*":
        return 28 * 1440 + 1
    days = {d % 7 for d in dow}
    runs = sorted(d * 1440 + h * 60 + m for d in days for h in hour for m in minute)
    return max((b - a) for a, b in zip(runs, runs[1:] + [runs[0] + WEEK]))


def backup_problems(s: BackupSettings, app_namespace: str, cloud: str) -> list[str]:
    """Why these backups cannot meet the RPO for the app namespace, or cannot run on `cloud`."""
    key, problems = "addons.backups", []
    if cloud == "existing" and s.location is None:
        problems.append(f"{key}.location: required on cloud: existing (its object storage is made elsewhere)")
    if cloud != "existing" and s.location is not None:
        problems.append(f"{key}.location: only for cloud: existing; on {cloud} the program creates the bucket")
    rpo = minutes(s.rpo)
    covering: dict[str, int] = {}
    for name, schedule in s.schedules.items():
        try:
            gap = longest_gap(schedule.cron)
        except ValueError as error:
            problems.append(f"{key}.schedules.{name}.cron: {error}")
            continue
        if minutes(schedule.retention) <= gap:
            problems.append(
                f"{key}.schedules.{name}.retention: {schedule.retention} expires each backup before the next one "
                f"(runs up to {describe_minutes(gap)} apart): keep backups longer than that"
            )
        if schedule.namespaces is None or app_namespace in schedule.namespaces:
            covering[name] = gap
    if not covering:
        if not any(p.startswith(f"{key}.schedules.") for p in problems):
            problems.append(f"{key}.schedules: none backs up the app namespace {app_namespace!r}; the RPO is {s.rpo}")
    elif min(covering.values()) > rpo:
        name = min(covering, key=covering.get)
        problems.append(
            f"{key}.schedules.{name}.cron: {s.schedules[name].cron!r} leaves up to {describe_minutes(covering[name])} "
            f"between backups of {app_namespace!r}, more than {key}.rpo ({s.rpo})"
        )
    return problems


# --- the component ----------------------------------------------------------------------------------


def location_storage(location: BackupLocation, version: str) -> BackupStorage:
    config = dict(location.config)
    return BackupStorage(
        provider=location.provider,
        bucket=location.bucket,
        ref=location.bucket,
        plugin_image=plugin_image(_PLUGINS[location.provider], version),
        snapshot_driver=location.snapshot_driver or "",
        config=config,
    )


def _secure_container() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def chart_values(s: BackupSettings, storage: BackupStorage, identity: WorkloadIdentity, app_namespace: str) -> dict:
    image = storage.plugin_image.rsplit(":", 1)[0] + ":" + s.plugin_version
    location = {
        "name": LOCATION,
        "provider": storage.provider,
        "bucket": storage.bucket,
        "default": True,
        "accessMode": "ReadWrite",
        "config": storage.config,
    }
    if s.location and s.location.prefix:
        location["prefix"] = s.location.prefix
    if s.location and s.location.credential_secret:
        location["credential"] = {"name": s.location.credential_secret, "key": "cloud"}
    schedules = {
        name: {
            "schedule": schedule.cron,
            "useOwnerReferencesInBackup": False,
            "template": {
                "ttl": schedule.retention,
                "includedNamespaces": schedule.namespaces or [app_namespace],
                "snapshotVolumes": schedule.snapshot_volumes,
                "storageLocation": LOCATION,
            },
        }
        for name, schedule in s.schedules.items()
    }
    return {
        "upgradeCRDs": False,  # a hook Job running kubectl; the chart's crds/ are applied by the program instead
        "initContainers": [
            {
                "name": f"velero-plugin-for-{storage.provider}",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"mountPath": "/target", "name": "plugins"}],
                "securityContext": _secure_container(),
                "resources": resources(cpu="10m", memory="32Mi", cpu_limit="100m", memory_limit="128Mi"),
            }
        ],
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": _secure_container(),
        "resources": resources(cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi"),
        "podLabels": identity.pod_labels,
        "serviceAccount": {"server": {"name": SERVICE_ACCOUNT, "annotations": identity.service_account_annotations}},
        # The chart's RBAC is a cluster-admin binding plus a Role granting everything in Velero's own
        # namespace, which that binding already covers: the binding is declared by the component instead.
        "rbac": {"create": False},
        # The pod's workload identity, not a key in a Secret.
        "credentials": {"useSecret": False},
        "backupsEnabled": True,
        # Volumes are snapshotted through CSI (the VolumeSnapshotClass below), not a provider's own snapshotter.
        "snapshotsEnabled": False,
        "deployNodeAgent": False,
        "configuration": {
            "backupStorageLocation": [location],
            "features": "EnableCSI",
            # Backups taken by hand (`velero backup create`) are kept as long as the longest schedule's.
            "defaultBackupTTL": max((x.retention for x in s.schedules.values()), key=minutes, default="720h"),
        },
        "schedules": schedules,
    }


@dataclass
class BackupsArgs:
    settings: BackupSettings
    storage: BackupStorage
    identity: WorkloadIdentity  # Velero's ServiceAccount, granted the bucket
    network: ClusterNetwork
    app_namespace: str


class Backups(pulumi.ComponentResource):
    addon: HelmAddon
    snapshot_class: Optional[pulumi.CustomResource] = None

    def __init__(self, name: str, args: BackupsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:addons:Backups", name, None, opts)
        s = args.settings
        self.bucket = pulumi.Output.from_input(args.storage.bucket)
        # Velero talks to the API server and to the cloud's storage API on 443.
        self.addon = HelmAddon(
            name,
            HelmAddonArgs(
                settings=s,
                network=args.network,
                traffic=AddonTraffic(internet_ports=(443,)),
                values=chart_values(s, args.storage, args.identity, args.app_namespace),
            ),
            pulumi.ResourceOptions(parent=self),
        )
        # Velero backs up and restores every kind of object in any namespace (CRDs, RBAC, workloads
        # and their Secrets included): upstream documents cluster-admin as the permission it needs.
        self.cluster_admin = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-cluster-admin",
            metadata={
                "name": f"{name}-server",
                "labels": platform_labels("backups", name),
                "annotations": {
                    "waiver.policy.clipper.dev/rbac-no-cluster-admin-binding": "Velero backs up and restores every "
                    "resource kind in every namespace; upstream's RBAC for it is cluster-admin",
                },
            },
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            subjects=[{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": s.namespace}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.storage.snapshot_driver:
            # A resource of its own type, as k8s.apiextensions.CustomResource would register it: that
            # class only takes `spec`, and a VolumeSnapshotClass keeps its fields at the top level.
            self.snapshot_class = pulumi.CustomResource(
                "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshotClass",
                f"{name}-snapshot-class",
                {
                    "apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshotClass",
                    "metadata": {"name": SNAPSHOT_CLASS, "labels": {**platform_labels("backups", name), SNAPSHOT_CLASS_LABEL: "true"}},
                    "driver": args.storage.snapshot_driver,
                    # Velero deletes a backup's snapshots when the backup expires.
                    "deletionPolicy": "Delete",
                },
                pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"bucket": args.storage.bucket, "namespace": s.namespace})
