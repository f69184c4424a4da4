"""What `verify` and `rotate` need from a stack's cluster: how to reach it (kubectl with the
stack's kubeconfig), which apps to look at (from the stack's config), and how to read the
objects a rollout leaves behind (Deployments, their ReplicaSets and pods).

kubectl, not a Python client: the kubernetes client is not a dependency of this project, and
kubectl already speaks every kubeconfig the stacks produce, the cloud ones' exec plugins
(gke-gcloud-auth-plugin, `aws eks get-token`, kubelogin) included.

Which kubeconfig, in the order the program itself uses:
- `cloud: existing` in cluster mode: `existing.kubeconfig` (relative to the project directory, as
  the program reads it), else $KUBECONFIG, else ~/.kube/config; `existing.context` if set;
- a cloud stack (gke, eks, aks): its `kubeconfig` output from the last update, in a temporary
  0600 file removed afterwards;
- render mode: no cluster at all, which is bad usage for these commands.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from components.addons.cert_manager import CertManagerSettings
from components.addons.external_secrets import ExternalSecretsSettings
from components.addons.reloader import ReloaderSettings
from components.app import AppSettings
from infra.ops import stacks
from infra.ops.checks import renders_only
from infra.ops.errors import BadUsage, Refused
from infra.ops.stack_config import StackConfig, existing_kubeconfig, project_setting

REQUEST_TIMEOUT_S = 15  # per kubectl call: a dead API server fails a command, it does not hang it
REVISION = "deployment.kubernetes.io/revision"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_DURATION_S = 24 * 3600


def parse_duration(text: str) -> int:
    """`30s`, `5m`, `1h`, `1m30s` (or `0`) -> seconds; ValueError naming the accepted forms."""
    text = text.strip()
    match = _DURATION.match(text)
    if text == "0":
        return 0
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 1m30s)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total > MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than 24h")
    return total


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --- the apps of a stack, as its config declares them ---------------------------------------------


@dataclass(frozen=True)
class AppTarget:
    """One app as the stack declares it: what its objects in the cluster should look like."""

    name: str
    namespace: str
    image: str
    health_path: str  # the readiness path the app serves
    secrets: bool  # an ExternalSecret `<app>-secrets` syncs its Secret
    certificate: bool  # a cert-manager Certificate `<app>` holds its TLS key
    reloads: bool  # Reloader rolls it when its Secret changes

    @property
    def secret_name(self) -> str:
        return f"{self.name}-secrets"


@dataclass(frozen=True)
class StackApps:
    namespace: str
    apps: tuple[AppTarget, ...]
    external_secrets: bool
    cert_manager: bool
    reloader: bool


def stack_apps(config: StackConfig, only: Optional[Sequence[str]] = None) -> StackApps:
    """The apps of a stack's config (all, or `only`, in that order); an unknown name is bad usage."""
    declared = project_setting(config, "apps", {}) or {}
    if only:
        unknown = [name for name in only if name not in declared]
        if unknown:
            raise BadUsage(f"unknown app(s) {', '.join(unknown)} (apps in this stack: {', '.join(sorted(declared)) or 'none'})")
    addons = project_setting(config, "addons", {}) or {}
    external_secrets = ExternalSecretsSettings.model_validate(addons.get("external-secrets") or {}).enabled
    cert_manager = CertManagerSettings.model_validate(addons.get("cert-manager") or {}).enabled
    reloader = ReloaderSettings.model_validate(addons.get("reloader") or {}).enabled
    namespace = str(project_setting(config, "appNamespace", ""))
    apps = []
    for name in only or sorted(declared):
        settings = AppSettings.model_validate(declared[name])
        apps.append(
            AppTarget(
                name=name,
                namespace=namespace,
                image=settings.image,
                health_path=settings.probes.readiness.path,
                secrets=bool(settings.secrets) and external_secrets,
                certificate=bool(settings.host) and cert_manager,
                reloads=bool(settings.secrets) and external_secrets and reloader,
            )
        )
    return StackApps(namespace, tuple(apps), external_secrets, cert_manager, reloader)


# --- kubectl --------------------------------------------------------------------------------------


class KubectlError(Exception):
    """kubectl failed: the message is its error line(s)."""


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    context: Optional[str] = None

    def run(self, *args: str, timeout_s: float = REQUEST_TIMEOUT_S) -> str:
        command = ["kubectl", "--kubeconfig", str(self.kubeconfig)]
        if self.context:
            command += ["--context", self.context]
        command += [f"--request-timeout={int(timeout_s)}s", *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + 10, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise KubectlError(f"kubectl {' '.join(args[:3])}: no answer within {int(timeout_s)}s") from None
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            raise KubectlError(" / ".join(lines[-3:]) or f"kubectl exited {done.returncode}")
        return done.stdout

    def get_json(self, *args: str) -> dict:
        return json.loads(self.run("get", *args, "-o", "json") or "{}")

    def items(self, kinds: str, namespace: str) -> list[dict]:
        return list(self.get_json(kinds, "-n", namespace).get("items") or [])

    def get_or_none(self, kind: str, name: str, namespace: str) -> Optional[dict]:
        text = self.run("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "json")
        return json.loads(text) if text.strip() else None


def _kubectl_on_path() -> None:
    if shutil.which("kubectl") is None:
        raise Refused("kubectl is not on PATH: install it (any version within one minor of the cluster's)")


@contextmanager
def cluster_of(stack, config: StackConfig, work_dir: Path, command: str) -> Iterator[Kubectl]:
    """kubectl pointed at the stack's cluster. Render mode is bad usage: `command` has nothing to look at."""
    if renders_only(config):
        raise BadUsage(
            f"{stack.name} is in render mode (clipper:existing.mode: render): it writes manifests and deploys to no "
            f"cluster, so there is nothing to {command}; point it at a cluster with clipper:existing.mode cluster "
            "and clipper:existing.kubeconfig"
        )
    _kubectl_on_path()
    cloud = project_setting(config, "cloud", "existing")
    if cloud == "existing":
        existing = project_setting(config, "existing", {}) or {}
        path, _ = existing_kubeconfig(existing, work_dir)
        if not path.is_file():
            raise Refused(f"{stack.name}: no kubeconfig at {path} (clipper:existing.kubeconfig, else $KUBECONFIG)")
        yield Kubectl(path, existing.get("context"))
        return
    kubeconfig = stacks.outputs(stack).get("kubeconfig")
    if not kubeconfig:
        raise Refused(f"{stack.name} has no kubeconfig output: its cluster was never deployed (run `pulumi up` first)")
    with tempfile.TemporaryDirectory(prefix="clipper-kube-") as directory:
        path = Path(directory) / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig))
        yield Kubectl(path)


# --- reading a rollout ------------------------------------------------------------------------------


def condition(obj: Optional[dict], kind: str) -> Optional[dict]:
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return found
    return None


def owned_by(obj: dict, owner: dict) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def revision(obj: Optional[dict]) -> Optional[str]:
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(REVISION)


def current_replicaset(deployment: dict, replicasets: list[dict]) -> Optional[dict]:
    """The ReplicaSet of the Deployment's current revision (the one its rollout creates pods in)."""
    wanted = revision(deployment)
    mine = [rs for rs in replicasets if owned_by(rs, deployment)]
    return next((rs for rs in mine if wanted is not None and revision(rs) == wanted), None)


def pods_of(owner: Optional[dict], pods: list[dict]) -> list[dict]:
    if owner is None:
        return []
    return sorted((pod for pod in pods if owned_by(pod, owner)), key=lambda pod: pod["metadata"]["name"])


def name_of(obj: dict) -> str:
    return obj["metadata"]["name"]


def by_name(items: list[dict], kind: str) -> dict[str, dict]:
    return {name_of(item): item for item in items if item.get("kind") == kind}


def template_annotations(deployment: dict) -> dict[str, Any]:
    return (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations") or {}
