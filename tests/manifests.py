"""Independent checkers for the Kubernetes objects we declare: kubernetes-validate (the API
schemas, strict), the CRDs' own schemas for custom resources, and checkov (security checks, in
its own virtualenv). Shared by the unit tests (manifests from mocks) and the engine tests
(manifests from render mode, and charts rendered by helm)."""
from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as _kv_utils

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "1.33.0"
# CRD groups the API schemas do not cover; any other missing schema is a removed or misspelt API.
CRD_GROUPS = (
    "cert-manager.io/",
    "acme.cert-manager.io/",
    "external-secrets.io/",
    "generators.external-secrets.io/",
    "gateway.networking.k8s.io/",
    "gateway.envoyproxy.io/",
    "monitoring.coreos.com/",
    "snapshot.storage.k8s.io/",
)
CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))


def _skips(name: str) -> list[str]:
    lines = (ROOT / "tests" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


CHECKOV_SKIPS = _skips("checkov-skips.txt")
CHART_CHECKOV_SKIPS = _skips("checkov-chart-skips.txt")  # upstream charts' design, with reasons


# kubernetes-validate reads its schema files on every call; thousands of chart objects make that
# the cost of a test. The files never change, so each is read once.
if hasattr(_kv_utils, "schema_contents"):
    _kv_utils.schema_contents = functools.lru_cache(maxsize=None)(_kv_utils.schema_contents)


def _where(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"


def is_builtin_kind(doc: dict) -> bool:
    """Whether the Kubernetes API itself serves the object's apiVersion and kind."""
    return _is_builtin(doc["apiVersion"], doc["kind"])


@functools.lru_cache(maxsize=None)
def _is_builtin(api_version: str, kind: str) -> bool:
    try:
        kubernetes_validate.validate({"apiVersion": api_version, "kind": kind}, KUBERNETES_VERSION)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        pass
    return True


def versions_env(key: str) -> str:
    """A version pinned in toolchain/versions.env."""
    for line in (ROOT / "toolchain" / "versions.env").read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    raise KeyError(f"{key} not in toolchain/versions.env")


@functools.lru_cache(maxsize=None)
def cluster_crds() -> tuple[dict, ...]:
    """CRDs the cloud clusters serve themselves, which no chart of ours installs: the VolumeSnapshot
    API (GKE, EKS's snapshot-controller add-on and AKS run the CSI snapshot controller), as the
    Kubernetes release the toolchain builds ships it (cluster/addons/volumesnapshots/crd, read from
    the toolchain's Go module cache, where toolchain/build.sh put k8s.io/kubernetes)."""
    cache = Path(os.environ.get("CLIPPER_CACHE", Path.home() / ".cache" / "clipper"))
    folder = cache / "go" / "mod" / f"k8s.io/kubernetes@{versions_env('KUBERNETES_VERSION')}" / "cluster/addons/volumesnapshots/crd"
    if not folder.is_dir():
        raise FileNotFoundError(f"no VolumeSnapshot CRDs at {folder}: build the toolchain (toolchain/build.sh)")
    return tuple(doc for path in sorted(folder.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc)


def schema_errors(docs: list[dict], crds: Optional[Iterable[dict]] = None) -> list[str]:
    """Every object against the Kubernetes API schemas, strict (unknown fields are errors).

    A kind the API does not serve is an error, except for the CRD groups above; with `crds`
    (CustomResourceDefinition objects, e.g. the ones the charts render) a custom resource is
    checked against its CRD's schema instead, and one that no CRD in `crds` or `cluster_crds()`
    serves is an error."""
    crd_index = _crd_index([*cluster_crds(), *crds]) if crds is not None else None
    errors = []
    for doc in docs:
        where = _where(doc)
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if crd_index is not None:
                errors += [f"{where}: {problem}" for problem in _custom_resource_errors(doc, crd_index)]
            elif not doc["apiVersion"].startswith(CRD_GROUPS):
                errors.append(f"{where}: no schema for {doc['apiVersion']} in Kubernetes {KUBERNETES_VERSION}")
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
    return errors


# --- custom resources against their CRDs -------------------------------------------------------

def _crd_index(crds: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """(group, kind) -> CRD, for the CustomResourceDefinitions among `crds`."""
    return {(c["spec"]["group"], c["spec"]["names"]["kind"]): c for c in crds if c.get("kind") == "CustomResourceDefinition"}


def _as_json_schema(schema: Any) -> Any:
    """A CRD's structural openAPIV3Schema as JSON Schema, strict as the API server is with strict
    field validation: an object schema with properties refuses fields it does not list (unless it
    preserves unknown fields). CEL rules (x-kubernetes-validations) are not evaluated here."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _as_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _as_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_as_json_schema(sub) for sub in value]
        elif not key.startswith("x-kubernetes-") and key not in ("nullable", "format"):
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _crd_validator(crd_json: str, version: str) -> Optional[jsonschema.protocols.Validator]:
    crd = json.loads(crd_json)
    for served in crd["spec"]["versions"]:
        if served["name"] == version and served.get("served", True):
            schema = _as_json_schema((served.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})
            return jsonschema.Draft7Validator(schema)
    return None


def _custom_resource_errors(doc: dict, crd_index: dict[tuple[str, str], dict]) -> list[str]:
    group, _, version = doc["apiVersion"].rpartition("/")
    crd = crd_index.get((group, doc["kind"]))
    if crd is None:
        return [f"no CRD for {doc['apiVersion']} {doc['kind']} among the rendered CRDs"]
    validator = _crd_validator(json.dumps(crd, sort_keys=True), version)
    if validator is None:
        return [f"CRD {crd['metadata']['name']} does not serve {version}"]
    problems = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in sorted(validator.iter_errors(doc), key=str)[:3]]
    # The CRD schema says only `metadata: object`: the API server checks ObjectMeta itself.
    try:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata") or {}},
                                     KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        problems.append(f"{'.'.join(map(str, error.path))}: {error.message}")
    return problems


@dataclass(frozen=True)
class CheckovFailure:
    check_id: str
    resource: str
    check_name: str
    file: Path

    def __str__(self) -> str:
        return f"{self.check_id} {self.resource}: {self.check_name}"


def checkov_results(directory: Path, skips: Iterable[str] = (), timeout: int = 600) -> list[CheckovFailure]:
    """Failed checkov checks on every YAML file under `directory` (one run: graph checks see them
    all), with the file each failure is in; `skips` are skipped on top of CHECKOV_SKIPS."""
    assert CHECKOV.exists(), f"checkov not installed at {CHECKOV}: run `make test` (it builds .venv-checkov)"
    # Files by name: checkov skips hidden directories such as .state/ when given a directory.
    files = [arg for path in sorted(directory.rglob("*.yaml")) for arg in ("-f", str(path))]
    assert files, f"no manifests in {directory}"
    result = subprocess.run(
        [str(CHECKOV), *files, "--framework", "kubernetes", "-o", "json", "--quiet",
         "--skip-download", "--skip-check", ",".join([*CHECKOV_SKIPS, *skips])],
        capture_output=True, text=True, env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}, timeout=timeout,
    )
    assert result.returncode in (0, 1), f"checkov failed to run: {result.stderr[-2000:]}"
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    failures = []
    for report in reports:
        summary = report.get("summary", {})
        assert summary.get("passed", 0) + summary.get("failed", 0) > 0, "checkov checked nothing"
        for check in report.get("results", {}).get("failed_checks", []):
            failures.append(CheckovFailure(check["check_id"], check["resource"], check["check_name"],
                                           Path(check.get("file_abs_path") or check["file_path"])))
    return failures


def checkov_failures(directory: Path, extra_skips: list[str] = ()) -> list[str]:
    """Failed checkov checks on every YAML file in `directory`, as 'CHECK resource: name'."""
    return [str(failure) for failure in checkov_results(directory, extra_skips)]


def write_manifests(docs: list[dict], directory: Path) -> None:
    """One file per object, as a renderer would write them."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (directory / f"{i:03d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
