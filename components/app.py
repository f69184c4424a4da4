"""AppDeployment: one application as the runbook ran it, declared with secure defaults.

Deployment (non-root, read-only root FS, all capabilities dropped, seccomp RuntimeDefault, no
service-account token, spread over zones, zero-downtime rollout), Service, ServiceAccount, HPA,
PodDisruptionBudget, HTTPS route with a cert-manager Certificate, env from ExternalSecrets, and an
optional migration Job that must finish before the Deployment rolls.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Optional, Union

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.addons.external_secrets import SecretSync
from components.addons.ingress import IngressController, Route
from components.addons.reloader import reload_annotations
from components.cluster.base import CLIPPER_SPOT, SpotPlacement
from components.meta import APP_LABEL, app_selector, platform_labels
from components.pod_security import restricted_container
from components.settings import ImageRef, Port, ResourceRequirements, Settings



class ProbeSettings(Settings):
    path: str = Field(default="/healthz", pattern=r"^/")
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=10, ge=1)
    timeout_seconds: int = Field(default=2, ge=1)
    failure_threshold: int = Field(default=3, ge=1)


class ProbesSettings(Settings):
    liveness: ProbeSettings = ProbeSettings(path="/healthz")
    readiness: ProbeSettings = ProbeSettings(path="/readyz")
    # Generous start-up budget (30 x 10 s) so slow starts are not killed by liveness.
    startup: ProbeSettings = ProbeSettings(path="/healthz", failure_threshold=30)


class AutoscalingSettings(Settings):
    enabled: bool = True
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=10, ge=1)
    cpu_utilization: int = Field(default=70, ge=1, le=100, description="Target average CPU, % of requests.")

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})")
        return self


class MigrationSettings(Settings):
    enabled: bool = False
    command: list[str] = Field(default=["/app/api", "migrate", "up"], min_length=1)
    backoff_limit: int = Field(default=2, ge=0)
    active_deadline_seconds: int = Field(default=600, ge=30)


class SecretRef(Settings):
    key: str = Field(min_length=1, description="Name of the secret in the cloud secret manager.")
    property: Optional[str] = Field(default=None, description="JSON property inside that secret.")


class AppSettings(Settings):
    image: ImageRef = Field(description="repository:tag or repository@sha256:digest (no 'latest').")
    port: Port = 8080
    replicas: int = Field(default=2, ge=1, description="Used when autoscaling is off.")
    resources: ResourceRequirements = ResourceRequirements()
    probes: ProbesSettings = ProbesSettings()
    autoscaling: AutoscalingSettings = AutoscalingSettings()
    disruption_budget: bool = Field(default=True, description="PodDisruptionBudget with maxUnavailable 1.")
    host: Optional[str] = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Public HTTPS host.")
    path: str = Field(default="/", pattern=r"^/")
    env: dict[str, str] = Field(default_factory=dict, description="Plain environment variables.")
    secrets: dict[str, Union[str, SecretRef]] = Field(
        default_factory=dict, description="Env var -> secret-manager key, synced by External Secrets."
    )
    migration: MigrationSettings = MigrationSettings()
    command: Optional[list[str]] = None
    args: Optional[list[str]] = None
    run_as_user: int = Field(default=10001, ge=1, description="Non-root UID (above 10000, clear of host users).")
    image_pull_policy: Literal["IfNotPresent", "Always"] = "IfNotPresent"
    writable_paths: list[str] = Field(default=["/tmp"], description="emptyDir mounts; the root FS is read-only.")
    service_account_token: bool = Field(default=False, description="Mount a ServiceAccount token in pods.")
    zone_spread: Literal["ScheduleAnyway", "DoNotSchedule"] = "ScheduleAnyway"
    spot: bool = Field(
        default=False,
        description="Prefer the spot pool (60-90% cheaper, evictable): pods tolerate its taint and prefer its nodes, "
        "and fall back to on-demand nodes when there is no spot capacity. Migration Jobs never run on spot.",
    )

    def secret_refs(self) -> dict[str, SecretRef]:
        return {var: SecretRef(key=ref) if isinstance(ref, str) else ref for var, ref in self.secrets.items()}


@dataclass
class AppDeploymentArgs:
    name: str
    namespace: str
    settings: AppSettings
    ingress: Optional[IngressController] = None
    certificate_issuer: Optional[str] = None  # cert-manager ClusterIssuer; None: the TLS Secret is provided
    secrets: Optional[SecretSync] = None  # None: no External Secrets in the stack
    spot: SpotPlacement = CLIPPER_SPOT  # the cluster's spot taint (`cluster.spot`); used when settings.spot
    reload_on_secret_change: bool = False  # Reloader runs: roll the Deployment when its synced Secret changes


class AppDeployment(pulumi.ComponentResource):
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    image: str
    url: Optional[str]

    def __init__(self, name: str, args: AppDeploymentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:apps:AppDeployment", name, None, opts)
        self._args = args
        s = args.settings
        self.image = s.image
        self._labels = platform_labels("server", args.name)
        child = pulumi.ResourceOptions(parent=self)

        self.service_account = k8s.core.v1.ServiceAccount(
            f"{self._id}-sa",
            metadata=self._meta(args.name),
            automount_service_account_token=s.service_account_token,
            opts=child,
        )
        secrets_ready = [self._external_secret()] if s.secrets else []
        migration = [self._migration_job(secrets_ready)] if s.migration.enabled else []
        reload = reload_annotations(f"{args.name}-secrets") if s.secrets and args.reload_on_secret_change else {}
        self.deployment = k8s.apps.v1.Deployment(
            f"{self._id}-deployment",
            metadata={**self._meta(args.name), **({"annotations": reload} if reload else {})},
            spec=self._deployment_spec(),
            # Migrations must succeed before new code rolls out; the provider waits for Job completion.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *secrets_ready, *migration]),
        )
        self.service = k8s.core.v1.Service(
            f"{self._id}-service",
            # Readiness is awaited on the Deployment, and the selector is built from the pods' own
            # labels; the provider's endpoint wait on a ClusterIP Service (a fixed ~10 s settle)
            # would only add time to every deploy.
            metadata={**self._meta(args.name), "annotations": {"pulumi.com/skipAwait": "true"}},
            spec={
                "type": "ClusterIP",
                "selector": app_selector(args.name),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=child,
        )
        if s.autoscaling.enabled:
            self._autoscaler()
        if s.disruption_budget:
            k8s.policy.v1.PodDisruptionBudget(
                f"{self._id}-pdb",
                metadata=self._meta(args.name),
                spec={"maxUnavailable": 1, "selector": {"matchLabels": app_selector(args.name)}},
                opts=child,
            )
        self.url = f"https://{s.host}{s.path}" if s.host else None
        if s.host:
            self._public_route()
        self.register_outputs({"image": s.image, "url": self.url})

    @property
    def _id(self) -> str:
        return f"{self._args.namespace}-{self._args.name}"

    def _meta(self, name: str, labels: Optional[dict] = None) -> dict:
        return {"name": name, "namespace": self._args.namespace, "labels": labels or self._labels}

    # --- pods -------------------------------------------------------------------------------

    def _container_security(self) -> dict:
        return restricted_container(run_as=self._args.settings.run_as_user)

    def _env(self) -> list[dict]:
        s = self._args.settings
        env = [{"name": k, "value": v} for k, v in sorted(s.env.items())]
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": f"{self._args.name}-secrets", "key": var}}}
            for var in sorted(s.secrets)
        ]
        return env

    def _container(self, name: str, command: Optional[list[str]], args: Optional[list[str]]) -> dict:
        s = self._args.settings
        container = {
            "name": name,
            "image": s.image,
            "imagePullPolicy": s.image_pull_policy,
            "resources": s.resources.to_kubernetes(),
            "securityContext": self._container_security(),
            "env": self._env(),
            "volumeMounts": [{"name": f"writable-{i}", "mountPath": p} for i, p in enumerate(s.writable_paths)],
        }
        if command:
            container["command"] = command
        if args:
            container["args"] = args
        return container

    def _pod_spec(self, containers: list[dict]) -> dict:
        s = self._args.settings
        return {
            "serviceAccountName": self._args.name,
            "automountServiceAccountToken": s.service_account_token,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": s.run_as_user,
                "runAsGroup": s.run_as_user,
                "fsGroup": s.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": containers,
            "volumes": [{"name": f"writable-{i}", "emptyDir": {"sizeLimit": "256Mi"}} for i in range(len(s.writable_paths))],
        }

    def _spot(self) -> dict:
        if not self._args.settings.spot:
            return {}
        return {"tolerations": [self._args.spot.toleration()], "affinity": self._args.spot.preferred_affinity()}

    def _probe(self, probe: ProbeSettings) -> dict:
        return {
            "httpGet": {"path": probe.path, "port": "http"},
            "initialDelaySeconds": probe.initial_delay_seconds,
            "periodSeconds": probe.period_seconds,
            "timeoutSeconds": probe.timeout_seconds,
            "failureThreshold": probe.failure_threshold,
        }

    def _deployment_spec(self) -> dict:
        s, name = self._args.settings, self._args.name
        container = self._container(name, s.command, s.args)
        container["ports"] = [{"name": "http", "containerPort": s.port, "protocol": "TCP"}]
        container["livenessProbe"] = self._probe(s.probes.liveness)
        container["readinessProbe"] = self._probe(s.probes.readiness)
        container["startupProbe"] = self._probe(s.probes.startup)
        selector = app_selector(name)
        spread = [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": selector}}
            for key, when in (("topology.kubernetes.io/zone", s.zone_spread), ("kubernetes.io/hostname", "ScheduleAnyway"))
        ]
        spec = {
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {**self._labels, **selector, APP_LABEL: name}},
                "spec": {**self._pod_spec([container]), "topologySpreadConstraints": spread, **self._spot()},
            },
        }
        # With an HPA the autoscaler owns the replica count; declaring it would fight every scale-up.
        if not s.autoscaling.enabled:
            spec["replicas"] = s.replicas
        return spec

    # --- companions -------------------------------------------------------------------------

    def _external_secret(self) -> k8s.apiextensions.CustomResource:
        a = self._args
        if a.secrets is None:
            raise ValueError(f"app {a.name} declares secrets but no External Secrets store is enabled")
        return k8s.apiextensions.CustomResource(
            f"{self._id}-secrets",
            api_version="external-secrets.io/v1",
            kind="ExternalSecret",
            metadata={
                **self._meta(f"{a.name}-secrets"),
                # The provider then waits until the operator has synced the Secret: the migration Job
                # and the pods that read it start only then, not on a missing Secret.
                "annotations": {"pulumi.com/waitFor": "condition=Ready"} if a.secrets.wait else {"pulumi.com/skipAwait": "true"},
            },
            spec={
                "refreshInterval": a.secrets.refresh_interval,
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": a.secrets.store},
                "target": {"name": f"{a.name}-secrets", "creationPolicy": "Owner"},
                "data": [
                    {"secretKey": var, "remoteRef": {"key": ref.key, **({"property": ref.property} if ref.property else {})}}
                    for var, ref in sorted(a.settings.secret_refs().items())
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _migration_job(self, depends_on: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        a, m = self._args, self._args.settings.migration
        # One Job per image: a new release gets a fresh Job (Jobs are immutable), a no-op update none.
        digest = hashlib.sha256(a.settings.image.encode()).hexdigest()[:8]
        labels = {**platform_labels("migration", f"{a.name}-migrate"), APP_LABEL: a.name}
        pod = self._pod_spec([self._container("migrate", m.command, None)])
        return k8s.batch.v1.Job(
            f"{self._id}-migrate",
            metadata=self._meta(f"{a.name}-migrate-{digest}", labels),
            spec={
                "backoffLimit": m.backoff_limit,
                "activeDeadlineSeconds": m.active_deadline_seconds,
                "template": {"metadata": {"labels": labels}, "spec": {**pod, "restartPolicy": "Never"}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account, *depends_on]),
        )

    def _autoscaler(self) -> None:
        a = self._args.settings.autoscaling
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._id}-hpa",
            metadata=self._meta(self._args.name),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self._args.name},
                "minReplicas": a.min_replicas,
                "maxReplicas": a.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.cpu_utilization}},
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment]),
        )

    def _public_route(self) -> None:
        a, s = self._args, self._args.settings
        if a.ingress is None:
            raise ValueError(f"app {a.name} has a host but the stack has no ingress controller")
        tls_secret = f"{a.name}-tls"
        if a.certificate_issuer:
            k8s.apiextensions.CustomResource(
                f"{self._id}-certificate",
                api_version="cert-manager.io/v1",
                kind="Certificate",
                metadata=self._meta(a.name),
                spec={
                    "secretName": tls_secret,
                    "dnsNames": [s.host],
                    "issuerRef": {"kind": "ClusterIssuer", "name": a.certificate_issuer},
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
        a.ingress.route(
            Route(app=a.name, namespace=a.namespace, host=s.host, path=s.path, service=a.name, port=80, tls_secret=tls_secret),
            pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )
