"""The platform's alerting rules in the real `promtool` (built from the Prometheus Go module by
`make lint-tools`): `promtool check rules` on the generated rule file, then `promtool test rules`
with the hand-written cases in tests/rules/ (a firing and a non-firing case per alert)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components.addons.alert_rules import SEVERITIES, alert_groups, rule_groups

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "rules"
# Built by `make lint-tools`, which `make test` runs first; the tests that run it are marked slow
# (make test-fast builds no tools) and fail, never skip, when it is missing.
PROMTOOL = ROOT / ".venv-lint" / "bin" / "promtool"
# The rule files the cases name (`rule_files:`), as the program generates them.
RULE_FILES = {"rules-nginx.yaml": "nginx", "rules-gateway.yaml": "gateway"}
RPO = "24h"  # backups.yaml is written for it


def promtool(*args, cwd: Path) -> subprocess.CompletedProcess:
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run `make lint-tools` (make test does)"
    return subprocess.run([str(PROMTOOL), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def _alerts() -> dict:
    return {a.name: a for controller in ("nginx", "gateway") for alerts in alert_groups(controller, RPO).values() for a in alerts}


def _expand(template: str, labels: dict) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: str(labels.get(m[1], "")), template)


def _case_files() -> list[Path]:
    files = sorted(CASES.glob("*.yaml"))
    assert files, f"no promtool test files in {CASES}"
    return files


def write_cases(workdir: Path, controller_rpo: str = RPO) -> list[Path]:
    """The rule files and the cases in `workdir`; each expected alert gets its rule's runbook text
    (expanded with its labels: the summaries are written out in the cases)."""
    for name, controller in RULE_FILES.items():
        (workdir / name).write_text(yaml.safe_dump({"groups": rule_groups(controller, controller_rpo)}, sort_keys=False))
    alerts, written = _alerts(), []
    for source in _case_files():
        case = yaml.safe_load(source.read_text())
        for test in case["tests"]:
            for check in test.get("alert_rule_test", []):
                for expected in check.get("exp_alerts") or []:
                    expected["exp_annotations"]["runbook"] = _expand(alerts[check["alertname"]].runbook, expected["exp_labels"])
        written.append(workdir / source.name)
        written[-1].write_text(yaml.safe_dump(case, sort_keys=False))
    return written


def test_every_alert_has_a_severity_a_for_a_summary_and_a_runbook():
    for controller in ("nginx", "gateway"):
        groups = rule_groups(controller, RPO)
        assert len({g["name"] for g in groups}) == len(groups) == 8
        for group in groups:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
                assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["for"] != "0m", rule["alert"]
                assert rule["annotations"]["summary"].endswith("."), rule["alert"]
                assert len(rule["annotations"]["runbook"]) > 60, rule["alert"]


def test_the_alerts_cover_what_the_runbooks_check_by_hand():
    assert sorted(_alerts()) == sorted([
        "PodNotReady", "PodCrashLooping", "HpaAtMaxReplicas", "DeploymentRolloutStuck", "ExternalSecretNotSynced",
        "CertificateExpiringSoon", "CertificateNotReady", "Ingress5xxRateHigh", "NodePressure", "BackupFailed",
        "BackupOlderThanRpo",
    ])


def test_every_alert_has_a_firing_and_a_non_firing_case():
    firing, quiet = set(), set()
    for source in _case_files():
        case = yaml.safe_load(source.read_text())
        assert set(case["rule_files"]) <= set(RULE_FILES), source.name
        for test in case["tests"]:
            for check in test.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == quiet == set(_alerts())


def test_the_ingress_alert_reads_the_chosen_controllers_metrics():
    nginx, gateway = (alert_groups(c, RPO)["clipper-ingress"][0].expr for c in ("nginx", "gateway"))
    assert "nginx_ingress_controller_requests" in nginx and "envoy" not in nginx
    assert "envoy_http_downstream_rq_xx" in gateway and "nginx" not in gateway


def test_the_backup_rpo_is_a_duration():
    assert "> 172800" in alert_groups("gateway", "2d")["clipper-backups"][1].expr
    with pytest.raises(ValueError, match="a duration is a number"):
        alert_groups("gateway", "one day")


@pytest.mark.slow
def test_promtool_is_the_pinned_version():
    pinned = re.search(r"cmd/promtool@v(\S+)", (ROOT / "tests" / "requirements-lint.txt").read_text()).group(1)
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run `make lint-tools` (make test does)"
    # promtool built by `go install` prints no version of its own; the binary records its module's.
    done = subprocess.run(["go", "version", "-m", str(PROMTOOL)], capture_output=True, text=True, timeout=60)
    assert re.search(rf"^\s+mod\s+github.com/prometheus/prometheus\s+v{re.escape(pinned)}\s", done.stdout, re.M), done.stdout


@pytest.mark.slow
def test_promtool_checks_the_generated_rules(tmp_path):
    write_cases(tmp_path)
    done = promtool("check", "rules", *RULE_FILES, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS: 11 rules found") == 2, done.stdout


@pytest.mark.slow
def test_promtool_runs_the_firing_and_non_firing_cases(tmp_path):
    cases = write_cases(tmp_path)
    done = promtool("test", "rules", *(c.name for c in cases), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(cases), done.stdout


@pytest.mark.slow
def test_promtool_fails_a_case_the_rules_do_not_meet(tmp_path):
    # Rules written for a 48h RPO: the 26-hour-old backup no longer fires.
    write_cases(tmp_path, controller_rpo="48h")
    done = promtool("test", "rules", "backups.yaml", "nodes.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "BackupOlderThanRpo" in done.stdout + done.stderr and "FAILED" in done.stdout + done.stderr


def test_every_case_file_is_a_promtool_test_file():
    for source in _case_files():
        case = yaml.safe_load(source.read_text())
        assert case["tests"] and case["evaluation_interval"] == "1m", source.name
