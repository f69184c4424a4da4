"""The official Helm charts in tests: where they are ($CLIPPER_CHARTS_DIR, else the team's shared
copies beside the repository; the program itself never knows this path, it reads the variable
only), which ones a simulated stack installs with which values, and how `helm.v4.Chart` renders
one into objects (with the toolchain's `helm`, built from the provider's own Helm version)."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from infra.simulate import DELETE, Simulation, apply_overrides, stack_config
from tests.manifests import is_builtin_kind, versions_env

ROOT = Path(__file__).resolve().parents[1]
# Taken out of the environment for the whole test session: the program under test then installs
# from the official repositories, as on a user's machine, unless a test hands it the folder.
CONFIGURED = os.environ.pop("CLIPPER_CHARTS_DIR", None)


def charts_dir() -> Path:
    found = Path(CONFIGURED or ROOT.parent / "shared" / "charts")
    if not found.is_dir():
        raise FileNotFoundError(f"no Helm charts at {found}: set CLIPPER_CHARTS_DIR to a folder of <chart>-<version>/ charts")
    return found


# --- which charts a stack installs -------------------------------------------------------------

# The registration carrying a chart and its values: helm.v4.Chart today, helm.v3.Release before.
CHART_TYPES = ("kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Release")
STACKS = sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in ROOT.glob("Pulumi.*.yaml"))
CLOUDS = ("gke", "eks", "aks")
VARIANTS = {
    "as configured": {},
    "every add-on, nginx": {"ingress.controller": "nginx"},
    "every add-on, gateway, dns01": {"ingress.controller": "gateway", "addons.cert-manager.solver": "dns01"},
}


def variant_overrides(config: dict, cloud: str, variant: str) -> dict:
    """Config overrides that run `config` (a stack file's) on `cloud` as `variant`."""
    # Mocks cannot decrypt the stack's secrets; none of them reaches a chart.
    overrides = {key: DELETE for key, value in config.items() if isinstance(value, dict) and "secure" in value}
    overrides |= {"cloud": cloud, **VARIANTS[variant]}
    if variant == "as configured":
        return overrides
    for addon, settings in (config.get("addons") or {}).items():
        if settings.get("enabled") is False:
            # metrics-server unset: installed wherever the cloud runs none of its own.
            overrides[f"addons.{addon}.enabled"] = DELETE if addon == "metrics-server" else True
    if cloud == "existing":
        # A cluster made elsewhere has no DNS zone of ours for DNS-01, and External Secrets needs a provider.
        overrides.pop("addons.cert-manager.solver", None)
        overrides["existing.secretStore"] = (config.get("existing") or {}).get("secretStore") or {"fake": {"data": []}}
    return overrides


def stack_variants(variants: Iterable[str], stacks: Iterable[str] = STACKS) -> Iterator[tuple[str, str, str, dict]]:
    """(stack, cloud, variant, overrides) for every stack file, each cloud it can run on (a stack
    on an `existing` cluster runs there only) and each variant; a variant that gives the same
    config as one already listed for the stack and cloud is left out."""
    seen = set()
    for stack in stacks:
        config = stack_config(stack)
        for cloud in ["existing"] if config.get("cloud") == "existing" else CLOUDS:
            for variant in variants:
                overrides = variant_overrides(config, cloud, variant)
                effective = json.dumps(apply_overrides(config, overrides), sort_keys=True)
                if effective not in seen:
                    seen.add(effective)
                    yield stack, cloud, variant, overrides


@dataclass(frozen=True)
class ChartInstall:
    """One chart the program installs: what helm.v4.Chart is given."""

    chart: str
    version: str
    release: str  # the Helm release name (objects' names and labels derive from it)
    namespace: str
    values: dict
    resource_name: str  # the Chart's Pulumi name: the prefix of its objects' resource names
    urn: str


def chart_installs(sim: Simulation) -> list[ChartInstall]:
    found = []
    for resource in sim.resources:
        if resource.type in CHART_TYPES:
            inputs = resource.inputs
            if inputs.get("version"):
                name, version = inputs["chart"].rstrip("/").rsplit("/", 1)[-1], inputs["version"]
            else:  # a local chart (chartPath or $CLIPPER_CHARTS_DIR): it is the version it holds
                meta = yaml.safe_load((Path(inputs["chart"]) / "Chart.yaml").read_text())
                name, version = meta["name"], str(meta["version"])
            found.append(ChartInstall(name, version, inputs.get("name") or resource.name, inputs.get("namespace") or "default",
                                      inputs.get("values") or {}, resource.name, resource.urn))
    return found


def installed_charts(sim: Simulation) -> dict[str, tuple[str, str, dict]]:
    """Chart name -> (name, version, values) of every chart the program installs."""
    return {c.chart: (c.chart, c.version, c.values) for c in chart_installs(sim)}


# --- rendering a chart as helm.v4.Chart does ---------------------------------------------------

# The version render mode renders charts for (the provider is built with it, toolchain/build.sh).
# On a live cluster the provider asks the API server for its version and API groups instead.
RENDER_KUBE_VERSION = versions_env("KUBERNETES_VERSION")
# Built-in kinds that are not namespaced. The provider knows every built-in kind's scope; for any
# other kind it looks for a CRD among the chart's own objects, and without a cluster gives up.
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "ComponentStatus", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "CertificateSigningRequest", "ClusterTrustBundle", "FlowSchema",
    "PriorityLevelConfiguration", "IngressClass", "IPAddress", "ServiceCIDR", "RuntimeClass", "PriorityClass",
    "CSIDriver", "CSINode", "StorageClass", "VolumeAttachment", "VolumeAttributesClass", "DeviceClass",
    "ResourceSlice", "StorageVersion", "StorageVersionMigration",
})


def helm_binary() -> Optional[Path]:
    """The toolchain's helm (`toolchain/build.sh`, cluster group), or None when it is not built."""
    found = subprocess.run(["bash", str(ROOT / "toolchain" / "build.sh"), "--print-bin", "--only", "cluster"],
                           capture_output=True, text=True)
    helm = Path(found.stdout.strip()) / "helm" if found.stdout.strip() else None
    return helm if helm is not None and os.access(helm, os.X_OK) else None


def crd_scopes(docs: list[dict]) -> dict[tuple[str, str], str]:
    """(group, kind) -> scope of every CRD among `docs`."""
    return {(d["spec"]["group"], d["spec"]["names"]["kind"]): d["spec"]["scope"]
            for d in docs if d.get("kind") == "CustomResourceDefinition"}


def normalise(docs: list[dict], namespace: str, known_crds: Iterable[dict] = ()) -> list[dict]:
    """What the provider does to a chart's rendered YAML before registering objects (yaml/v2
    Normalize): lists expanded, the core group canonical, the release namespace set on namespaced
    objects. A custom resource's scope comes from a CRD among the chart's objects, else from the
    CRDs the provider already knows (`known_crds`: those of the stack's other charts)."""
    flat: list[dict] = []
    pending = list(docs)
    while pending:
        doc = pending.pop(0)
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            pending[:0] = doc["items"]
            continue
        flat.append(doc)
    scopes = {**crd_scopes(list(known_crds)), **crd_scopes(flat)}
    for doc in flat:
        if not doc.get("kind") or not doc.get("apiVersion") or not (doc.get("metadata") or {}).get("name"):
            raise ValueError(f"the provider refuses an object without kind, apiVersion or name: {str(doc)[:200]}")
        if doc["apiVersion"].startswith("core/"):
            doc["apiVersion"] = doc["apiVersion"].removeprefix("core/")
        group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
        scope = scopes.get((group, doc["kind"]))
        if scope is None and not is_builtin_kind(doc):
            raise ValueError(f"{doc['apiVersion']} {doc['kind']}: no CRD for it in the chart, so the provider "
                             "cannot tell whether it is namespaced without a cluster")
        namespaced = scope == "Namespaced" if scope else doc["kind"] not in CLUSTER_SCOPED_KINDS
        if namespaced and not doc["metadata"].get("namespace"):
            doc["metadata"]["namespace"] = namespace
    return flat


class ChartYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when PyYAML has it: CRDs make charts' YAML long
    """Reads chart YAML as the provider's Go YAML does: a bare `=` (kube-prometheus-stack's CRDs list
    it among matcher types) is YAML 1.1's `value` type to PyYAML, which cannot construct it; a string."""


ChartYamlLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def render_chart(install: ChartInstall, chart_dir: Path, helm: Path, workdir: Path) -> list[dict]:
    """What helm.v4.Chart renders for `install`: `helm template` with the chart's CRDs and without
    its hooks (the provider renders with IncludeCRDs and DisableHooks), for the render-mode
    Kubernetes version. `normalise` then gives the objects the provider registers."""
    workdir.mkdir(parents=True, exist_ok=True)
    values = workdir / f"{install.release}.values.json"
    values.write_text(json.dumps(install.values))
    env = {**os.environ, **{f"HELM_{d}_HOME": str(workdir / f"helm-{d.lower()}") for d in ("CACHE", "CONFIG", "DATA")}}
    done = subprocess.run(
        [str(helm), "template", install.release, str(chart_dir), "--namespace", install.namespace,
         "--kube-version", RENDER_KUBE_VERSION, "--include-crds", "--no-hooks", "-f", str(values)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"helm template {install.chart} {install.version} failed: {done.stderr[-3000:]}")
    return [d for d in yaml.load_all(done.stdout, Loader=ChartYamlLoader) if d]


def resource_type(doc: dict) -> str:
    """The Pulumi type token of a Kubernetes object, e.g. kubernetes:core/v1:Service."""
    api_version = doc["apiVersion"] if "/" in doc["apiVersion"] else f"core/{doc['apiVersion']}"
    return f"kubernetes:{api_version}:{doc['kind']}"


def resource_name(install: ChartInstall, doc: dict) -> str:
    """The Pulumi name the provider gives a chart object: `<chart resource>:<namespace>/<name>`."""
    meta = doc["metadata"]
    name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    return f"{install.resource_name}:{name}"


def child_urn(install: ChartInstall, doc: dict) -> str:
    """The URN a chart object gets: its type under the Chart's type chain, and its resource name."""
    head, chain, _ = install.urn.rsplit("::", 2)
    return f"{head}::{chain}${resource_type(doc)}::{resource_name(install, doc)}"
