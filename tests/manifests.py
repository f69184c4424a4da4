"""Independent checkers for the Kubernetes objects we declare: kubernetes-validate (the API
schemas, strict) and checkov (security checks, in its own virtualenv). Shared by the unit
tests (manifests from mocks) and the engine tests (manifests from render mode)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import yaml

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
)
CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))


def _skips(name: str) -> list[str]:
    lines = (ROOT / "tests" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


CHECKOV_SKIPS = _skips("checkov-skips.txt")
CHART_CHECKOV_SKIPS = _skips("checkov-chart-skips.txt")  # upstream charts' design, with reasons


def schema_errors(docs: list[dict]) -> list[str]:
    errors = []
    for doc in docs:
        where = f"{doc['kind']} {doc.get('metadata', {}).get('namespace', '')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if not doc["apiVersion"].startswith(CRD_GROUPS):
                errors.append(f"{where}: no schema for {doc['apiVersion']} in Kubernetes {KUBERNETES_VERSION}")
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
    return errors


def checkov_failures(directory: Path, extra_skips: list[str] = ()) -> list[str]:
    """Failed checkov checks on every YAML file in `directory`, as 'CHECK resource: name'."""
    assert CHECKOV.exists(), f"checkov not installed at {CHECKOV}: run `make test` (it builds .venv-checkov)"
    # Files by name: checkov skips hidden directories such as .state/ when given a directory.
    files = [arg for path in sorted(directory.rglob("*.yaml")) for arg in ("-f", str(path))]
    assert files, f"no manifests in {directory}"
    result = subprocess.run(
        [str(CHECKOV), *files, "--framework", "kubernetes", "-o", "json", "--quiet",
         "--skip-download", "--skip-check", ",".join([*CHECKOV_SKIPS, *extra_skips])],
        capture_output=True, text=True, env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}, timeout=600,
    )
    assert result.returncode in (0, 1), f"checkov failed to run: {result.stderr[-2000:]}"
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    failures = []
    for report in reports:
        summary = report.get("summary", {})
        assert summary.get("passed", 0) + summary.get("failed", 0) > 0, "checkov checked nothing"
        for check in report.get("results", {}).get("failed_checks", []):
            failures.append(f"{check['check_id']} {check['resource']}: {check['check_name']}")
    return failures


def write_manifests(docs: list[dict], directory: Path) -> None:
    """One file per object, as a renderer would write them."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (directory / f"{i:03d}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
