"""ExistingCluster: a cluster made elsewhere, reached through a kubeconfig, or no cluster at all
(render mode: every manifest is written to a folder instead of applied)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from components.cluster.base import CLIPPER_SPOT, IdentityPermissions, WorkloadIdentity
from components.dns import DnsSettings
from components.settings import Settings


class ExistingClusterSettings(Settings):
    mode: Literal["cluster", "render"] = Field(
        default="cluster", description="cluster: apply to the kubeconfig's cluster; render: write YAML only."
    )
    kubeconfig: Optional[str] = Field(
        default=None, description="Path to a kubeconfig (default: $KUBECONFIG, then ~/.kube/config)."
    )
    context: Optional[str] = Field(default=None, description="kubeconfig context (default: current).")
    render_dir: str = Field(default=".state/render", description="Render mode: where manifests are written.")
    name: str = Field(default="existing", description="Cluster name, for outputs.")
    region: str = Field(default="local")
    secret_store: Optional[dict[str, Any]] = Field(
        default=None, description="External Secrets provider block (e.g. {vault: ...}) for this cluster."
    )

    def kubeconfig_path(self) -> Path:
        if self.kubeconfig:
            return Path(os.path.expanduser(self.kubeconfig))
        first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        return Path(first) if first else Path.home() / ".kube" / "config"


class ExistingCluster(pulumi.ComponentResource):
    def __init__(self, name: str, settings: ExistingClusterSettings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("clipper:cluster:ExistingCluster", name, None, opts)
        self._settings = settings
        self.region = settings.region
        self.name = pulumi.Output.from_input(settings.name)
        self.oidc_issuer = pulumi.Output.from_input("")
        self.spot = CLIPPER_SPOT
        self.control_plane_cidrs = ()  # unknown: network.controlPlaneCidrs says
        if settings.mode == "render":
            self.kubeconfig = pulumi.Output.secret("")
            self.endpoint = pulumi.Output.from_input("")
            # The provider runs in its own working directory: hand it an absolute path.
            # An empty kubeconfig stops the SDK from filling it in from $KUBECONFIG, which the
            # provider refuses alongside a render directory.
            provider_args: dict[str, Any] = {
                "render_yaml_to_directory": str(Path(settings.render_dir).resolve()),
                "kubeconfig": "",
            }
        else:
            self.kubeconfig = pulumi.Output.secret(settings.kubeconfig_path().read_text())
            self.endpoint = pulumi.Output.from_input(settings.context or "current-context")
            provider_args = {"kubeconfig": self.kubeconfig, "context": settings.context}
        self.provider = k8s.Provider(
            f"{name}-provider",
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
            **provider_args,
        )
        self.register_outputs({"name": self.name})

    def node_autoscaler(self) -> None:
        return None  # a cluster made elsewhere scales its own nodes

    def identity_for(self, namespace: str, service_account: str, permissions: IdentityPermissions) -> WorkloadIdentity:
        # A cluster made elsewhere brings its own identity story: nothing to create here.
        return WorkloadIdentity(namespace=namespace, service_account=service_account)

    def secret_store_provider(self, identity: WorkloadIdentity) -> pulumi.Input[dict]:
        return self._settings.secret_store  # required by the stack config when External Secrets is on

    def dns_zone(self, settings: DnsSettings) -> None:
        # A cluster made elsewhere has its DNS managed elsewhere too; `dns` is ignored for it.
        return None

    def backup_storage(self) -> None:
        # Its object storage is made elsewhere too: `addons.backups.location` names it.
        return None
