"""The platform's alerts: what the runbooks check by hand, as Prometheus alerting rules.

One rule group per concern; every alert has a severity, a `for:` (how long the condition must
hold before it fires), a one-line summary and the runbook text: what to look at and what to run.
`monitoring.py` declares the groups as PrometheusRule objects; tests/unit/test_alert_rules.py
writes them to a file and runs the real `promtool check rules` and `promtool test rules`
(tests/rules/*.yaml: a firing and a non-firing case per alert).

The metrics come from kube-state-metrics (pods, Deployments, HPAs, nodes), cert-manager and
External Secrets (their controllers' own metrics), the ingress controller (ingress-nginx or the
Envoy proxies of Envoy Gateway) and Velero (backups).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Severity = Literal["critical", "warning"]
SEVERITIES = ("critical", "warning")
# cert-manager renews a certificate when two thirds of its lifetime have passed (30 days before a
# Let's Encrypt certificate expires): under 21 days left means renewal has failed for 9 days.
CERTIFICATE_MIN_DAYS = 21
INGRESS_5XX_RATIO = 0.05  # 5% of the requests through the ingress over 5 minutes


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: Severity
    summary: str
    runbook: str

    def rule(self) -> dict:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "runbook": self.runbook},
        }


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(duration) < 2 or duration[-1] not in units or not duration[:-1].isdigit():
        raise ValueError(f"{duration!r}: a duration is a number and one of s, m, h, d (e.g. 24h)")
    return int(duration[:-1]) * units[duration[-1]]


def _ingress_5xx(controller: str) -> str:
    if controller == "nginx":
        requests, by = "nginx_ingress_controller_requests", "ingress"
        errors = f'{requests}{{status=~"5.."}}'
        total = requests
    else:  # Envoy Gateway: what the proxies answered clients, per listener
        by = "envoy_http_conn_manager_prefix"
        errors = 'envoy_http_downstream_rq_xx{envoy_response_code_class="5"}'
        total = "envoy_http_downstream_rq_total"
    return (
        f"sum by ({by}) (rate({errors}[5m]))\n  / sum by ({by}) (rate({total}[5m]))\n  > {INGRESS_5XX_RATIO}"
    )


def alert_groups(
    ingress_controller: Literal["nginx", "gateway"] = "gateway", backup_rpo: Optional[str] = "24h"
) -> dict[str, list[Alert]]:
    """The alerts by rule group. `backup_rpo`: the recovery point objective (e.g. 24h); None: no
    backups run, so no backup alerts."""
    verify = "`python -m infra.ops verify --stack <stack>`"
    groups = {
        "clipper-pods": [
            Alert(
                "PodNotReady",
                # A finished Job pod (the migration) is not Ready and is not a problem.
                '(kube_pod_status_ready{condition="false"} == 1)\n'
                '  unless on (namespace, pod) (kube_pod_status_phase{phase="Succeeded"} == 1)',
                "15m",
                "warning",
                "Pod {{ $labels.namespace }}/{{ $labels.pod }} has not been Ready for 15 minutes.",
                f"{verify} lists it; `kubectl describe pod -n {{{{ $labels.namespace }}}} {{{{ $labels.pod }}}}`: "
                "failing readiness probe (app logs), Pending (events: quota, no node fits), image pull error.",
            ),
            Alert(
                "PodCrashLooping",
                'max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}[5m]) >= 1',
                "10m",
                "critical",
                "Container {{ $labels.container }} of {{ $labels.namespace }}/{{ $labels.pod }} is crash-looping.",
                "`kubectl logs --previous -n {{ $labels.namespace }} {{ $labels.pod }} -c {{ $labels.container }}`; "
                "if it started with a deploy, roll back: `python -m infra.ops rollback --stack <stack> --steps 1`.",
            ),
        ],
        "clipper-autoscaling": [
            Alert(
                "HpaAtMaxReplicas",
                "kube_horizontalpodautoscaler_status_current_replicas\n"
                "  >= on (namespace, horizontalpodautoscaler) kube_horizontalpodautoscaler_spec_max_replicas",
                "15m",
                "warning",
                "HPA {{ $labels.namespace }}/{{ $labels.horizontalpodautoscaler }} has run at its maximum replicas for 15 minutes.",
                "The app needs more than its maximum: check its latency and CPU; raise "
                "`apps.<app>.autoscaling.maxReplicas` (and the namespace quota) with `pulumi up`, or find the slow dependency.",
            ),
        ],
        "clipper-rollouts": [
            Alert(
                "DeploymentRolloutStuck",
                # Progressing=False: the Deployment's progress deadline (600 s by default) has passed.
                'kube_deployment_status_condition{condition="Progressing", status="false"} == 1',
                "5m",
                "critical",
                "Rollout of Deployment {{ $labels.namespace }}/{{ $labels.deployment }} is stuck past its progress deadline.",
                f"{verify} shows the rollout; `kubectl rollout status -n {{{{ $labels.namespace }}}} deploy/{{{{ $labels.deployment }}}}` "
                "and the new pods' events; roll back with `python -m infra.ops rollback --stack <stack> --steps 1`.",
            ),
        ],
        "clipper-secrets": [
            Alert(
                "ExternalSecretNotSynced",
                'externalsecret_status_condition{condition="Ready", status="False"} == 1',
                "15m",
                "warning",
                "ExternalSecret {{ $labels.namespace }}/{{ $labels.name }} has not synced for 15 minutes.",
                "`kubectl describe externalsecret -n {{ $labels.namespace }} {{ $labels.name }}`: the secret missing from "
                "the cloud secret manager, or the external-secrets identity lacking access to it; then "
                f"`python -m infra.ops rotate --stack <stack> --app <app>` forces a sync, and {verify}.",
            ),
        ],
        "clipper-certificates": [
            Alert(
                "CertificateExpiringSoon",
                f"certmanager_certificate_expiration_timestamp_seconds - time() < {CERTIFICATE_MIN_DAYS} * 86400",
                "1h",
                "warning",
                f"Certificate {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} expires in less than {CERTIFICATE_MIN_DAYS} days: renewal is failing.",
                "`kubectl describe certificate -n {{ $labels.namespace }} {{ $labels.name }}` and its CertificateRequest "
                "and Order: the ACME challenge (HTTP-01 through the ingress, or DNS-01 in the zone) or the issuer.",
            ),
            Alert(
                "CertificateNotReady",
                'max by (namespace, name) (certmanager_certificate_ready_status{condition=~"False|Unknown"}) == 1',
                "30m",
                "warning",
                "Certificate {{ $labels.namespace }}/{{ $labels.name }} has not been Ready for 30 minutes.",
                f"{verify} lists it; `kubectl describe certificate -n {{{{ $labels.namespace }}}} {{{{ $labels.name }}}}`: "
                "a failed ACME challenge, a rate limit, or a host whose DNS does not point at the ingress.",
            ),
        ],
        "clipper-ingress": [
            Alert(
                "Ingress5xxRateHigh",
                _ingress_5xx(ingress_controller),
                "10m",
                "critical",
                f"More than {INGRESS_5XX_RATIO:.0%} of the requests through the ingress answer 5xx.",
                "Find the app behind it (the ingress or listener label), then its pods: "
                f"{verify} --http, its logs; 502/503 with no Ready pods is an app outage, not the ingress.",
            ),
        ],
        "clipper-nodes": [
            Alert(
                "NodePressure",
                'kube_node_status_condition{condition=~"MemoryPressure|DiskPressure|PIDPressure", status="true"} == 1',
                "10m",
                "warning",
                "Node {{ $labels.node }} reports {{ $labels.condition }}.",
                "`kubectl describe node {{ $labels.node }}`: the kubelet evicts pods under pressure; find the pods using "
                "the most memory or disk on it, or add a node to its pool (`<cloud>.nodePools`).",
            ),
        ],
    }
    if backup_rpo is None:
        return groups
    rpo = _seconds(backup_rpo)
    groups["clipper-backups"] = [
        Alert(
            "BackupFailed",
            'velero_backup_last_status{schedule!=""} == 0',
            "5m",
            "warning",
            "The last backup of schedule {{ $labels.schedule }} failed.",
            "`velero backup describe --details` of the schedule's newest backup and `velero backup logs`: "
            "storage credentials, the bucket, or a volume snapshot; then `velero backup create --from-schedule {{ $labels.schedule }}`.",
        ),
        Alert(
            "BackupOlderThanRpo",
            f'time() - velero_backup_last_successful_timestamp{{schedule!=""}} > {rpo}',
            "15m",
            "critical",
            f"The newest successful backup of schedule {{{{ $labels.schedule }}}} is older than the RPO ({backup_rpo}).",
            "Restoring now would lose more than the RPO: see why backups fail or stopped (BackupFailed, "
            "`velero schedule get`, `velero backup get`) and take one now with `velero backup create --from-schedule {{ $labels.schedule }}`.",
        ),
    ]
    return groups


def rule_groups(ingress_controller: Literal["nginx", "gateway"] = "gateway", backup_rpo: Optional[str] = "24h") -> list[dict]:
    """The groups as a Prometheus rule file's (and a PrometheusRule's spec's) `groups`."""
    return [
        {"name": name, "rules": [alert.rule() for alert in alerts]}
        for name, alerts in alert_groups(ingress_controller, backup_rpo).items()
    ]
