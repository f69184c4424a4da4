"""Kubeconfigs that hold no credentials: the client runs the cloud's CLI for a short-lived token.

GKE uses `gke-gcloud-auth-plugin`, EKS `aws eks get-token`, AKS `kubelogin`; each cloud module
only says which command to run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi


@dataclass(frozen=True)
class ExecCredential:
    """The `users[].user.exec` block: a command that prints an ExecCredential with a fresh token."""

    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    install_hint: str = ""

    def to_kubeconfig(self) -> dict:
        block: dict = {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": self.command,
            "args": list(self.args),
            "interactiveMode": "IfAvailable",
            "provideClusterInfo": False,
        }
        if self.env:
            block["env"] = [{"name": k, "value": v} for k, v in sorted(self.env.items())]
        if self.install_hint:
            block["installHint"] = self.install_hint
        return block


def exec_kubeconfig(
    name: pulumi.Input[str],
    server: pulumi.Input[str],
    ca_data: Optional[pulumi.Input[str]],
    credential: ExecCredential,
) -> pulumi.Output[str]:
    """A one-context kubeconfig (JSON, which is valid YAML) for `server`, as a Pulumi secret.

    It holds no token, but it names the cluster and its endpoint: kept secret like any kubeconfig.
    `ca_data` is the base64 PEM the clouds return; None for an endpoint with a publicly trusted
    certificate (GKE's DNS endpoint), where the cluster CA would fail verification.
    """

    def render(args: list) -> str:
        cluster_name, endpoint, ca = args
        cluster = {"server": endpoint, **({"certificate-authority-data": ca} if ca else {})}
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": cluster_name, "cluster": cluster}],
                "users": [{"name": cluster_name, "user": {"exec": credential.to_kubeconfig()}}],
                "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
                "current-context": cluster_name,
            },
            indent=2,
        )

    return pulumi.Output.secret(pulumi.Output.all(name, server, ca_data).apply(render))
