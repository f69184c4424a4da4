"""Every stack file x cloud x ingress controller, chart objects included: the objects the program
declares (registered under mocks) plus the objects its charts render pass kubernetes-validate
strict for Kubernetes 1.33 (custom resources against the CRDs the charts render), checkov (with
tests/checkov-chart-skips.txt for chart objects only) and the policy pack, every rule mandatory.

Charts are rendered as helm.v4.Chart renders them in render mode (tests/charts.py: the
toolchain's `helm template` at the provider's Helm version, CRDs in, hooks out, the provider's
normalisation), from the official charts in $CLIPPER_CHARTS_DIR. Values the program takes from
cloud resources (workload-identity annotations and labels: service-account emails, role ARNs,
client ids) are the mocks' fake outputs here; on a first real preview they are unknown and the
provider renders nothing for that chart until `up` knows them. They are annotation and label
strings: no template here branches on them.

Needs the toolchain's helm (`toolchain/build.sh`) and checkov (`make checkov`), hence engine/.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from infra.simulate import simulate
from policies import waivers
from policies.chart_waivers import CHART_WAIVERS
from policies.config import load_stack_config
from policies.pack import ResourceRecord, evaluate
from tests.charts import (ChartInstall, chart_installs, charts_dir, child_urn, normalise, render_chart,
                          resource_name, resource_type, stack_variants)
from tests.manifests import CHART_CHECKOV_SKIPS, checkov_results, is_builtin_kind, schema_errors, write_manifests

# The ingress controllers, as tests/unit/test_chart_values.py runs them: every add-on on.
CONTROLLERS = {"nginx": "every add-on, nginx", "gateway": "every add-on, gateway, dns01"}
# Chart objects are held to the production bar in every stack, and so are the program's own objects
# in the staging and production stack files (as tests/policy/test_program_compliance.py does). The
# local-* stacks are small rehearsals by design (one replica each): their own objects keep their
# stack's policy config, which is advisory.
EVERY_RULE_MANDATORY = {"all": "mandatory", "waivers-in-use": "advisory"}


def _cases() -> list[tuple[str, str, dict]]:
    found = [(f"{stack}-{cloud}-{controller}", stack, overrides)
             for controller, variant in CONTROLLERS.items() for stack, cloud, _, overrides in stack_variants([variant])]
    return sorted(found, key=lambda case: case[0])


CASES = _cases()


def _policy_config(stack: str) -> dict:
    return load_stack_config(next((s for s in ("production", "staging") if s in stack), "local"))


@dataclass
class Rendered:
    """One stack x cloud x controller: what the program declares and what its charts render."""

    case: str
    stack: str
    own: list[dict]
    records: list[ResourceRecord]
    charts: dict[str, list[dict]] = field(default_factory=dict)  # release -> objects
    dir: Path = Path()

    @property
    def docs(self) -> list[dict]:
        return self.own + [doc for docs in self.charts.values() for doc in docs]

    def counts(self) -> dict[str, int]:
        docs = self.docs
        return {
            "objects": len(docs),
            "chart objects": len(docs) - len(self.own),
            "CRDs": sum(d["kind"] == "CustomResourceDefinition" for d in docs),
            "custom resources": sum(not is_builtin_kind(d) for d in docs),
        }


def _render(sim_install: ChartInstall, helm: Path, work: Path, cache: dict) -> list[dict]:
    key = json.dumps([sim_install.chart, sim_install.version, sim_install.release, sim_install.namespace,
                      sim_install.values], sort_keys=True)
    if key not in cache:
        chart_dir = charts_dir() / f"{sim_install.chart}-{sim_install.version}"
        assert chart_dir.is_dir(), f"no chart {chart_dir}: put the official chart in $CLIPPER_CHARTS_DIR"
        cache[key] = render_chart(sim_install, chart_dir, helm, work / f"render-{len(cache)}")
    return copy.deepcopy(cache[key])


def _for_the_pack(doc: dict) -> dict:
    """A CRD without its schemas: no rule reads them, and pulumi_policy deserialises a resource's
    properties once per rule, which for a chart's CRDs is most of a case's time. Everything else
    as the provider registers it."""
    if doc["kind"] != "CustomResourceDefinition":
        return doc
    slim = copy.deepcopy(doc)
    for version in slim["spec"].get("versions", []):
        version.pop("schema", None)
    return slim


def render_case(case: str, stack: str, overrides: dict, helm: Path, work: Path, cache: dict) -> Rendered:
    sim = simulate(stack, overrides)
    rendered = Rendered(case, stack, sim.manifests(),
                        [ResourceRecord(r.type, r.name, r.inputs, r.urn) for r in sim.resources if r.custom])
    installs = chart_installs(sim)
    raw = {install.release: _render(install, helm, work, cache) for install in installs}
    crds = [d for docs in raw.values() for d in docs if d.get("kind") == "CustomResourceDefinition"]
    for install in installs:
        docs = normalise(raw[install.release], install.namespace, crds)
        rendered.charts[install.release] = docs
        rendered.records += [ResourceRecord(resource_type(d), resource_name(install, d), _for_the_pack(d),
                                            child_urn(install, d)) for d in docs]
    return rendered


@pytest.fixture(scope="session")
def stacks(helm, tmp_path_factory) -> dict[str, Rendered]:
    """Every case rendered; the program's objects written as one YAML file per object under
    <case>/program (checkov reads them from there, chart objects are written by checkov_by_case)."""
    root, cache, found = tmp_path_factory.mktemp("rendered-stacks"), {}, {}
    started = time.monotonic()
    for case, stack, overrides in CASES:
        rendered = render_case(case, stack, overrides, helm, root / "helm", cache)
        rendered.dir = root / "cases" / case
        write_manifests(rendered.own, rendered.dir / "program")
        found[case] = rendered
    print(f"\nrendered {len(found)} cases ({len(cache)} distinct chart renders) in {time.monotonic() - started:.1f}s")
    return found


@pytest.fixture(scope="session")
def checkov_by_case(stacks) -> dict[str, list[str]]:
    """checkov once over every case's program objects and every distinct chart object (most are
    the same in every case: each is written once, under charts/, and its failures count for every
    case that renders it). A chart object's failure of a check on the chart skip list is the
    chart's upstream design (each has its reason in tests/checkov-chart-skips.txt)."""
    started = time.monotonic()
    root = next(iter(stacks.values())).dir.parents[1]
    cases_of: dict[str, set[str]] = {}
    for case, rendered in stacks.items():
        for release, docs in rendered.charts.items():
            for doc in docs:
                text = yaml.safe_dump(doc, sort_keys=False)
                key = f"{release}-{doc['kind'].lower()}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
                if key not in cases_of:
                    (root / "charts").mkdir(exist_ok=True)
                    (root / "charts" / f"{key}.yaml").write_text(text)
                cases_of.setdefault(key, set()).add(case)
    failures = checkov_results(root, timeout=1800)
    print(f"\ncheckov over {sum(1 for _ in root.rglob('*.yaml'))} files in {time.monotonic() - started:.1f}s")
    by_case: dict[str, list[str]] = {case: [] for case in stacks}
    for failure in failures:
        where = failure.file.relative_to(root)
        if where.parts[0] == "charts":
            if failure.check_id not in CHART_CHECKOV_SKIPS:
                for case in cases_of[where.stem]:
                    by_case[case].append(f"{where}: {failure}")
        else:
            by_case[where.parts[1]].append(f"{where}: {failure}")
    return by_case


def _violations(rendered: Rendered):
    return evaluate(rendered.records, _policy_config(rendered.stack), EVERY_RULE_MANDATORY)


def _mandatory(rendered: Rendered) -> list[str]:
    local = rendered.stack.startswith("local")
    return [f"{v.rule} {v.urn}: {v.message}" for v in _violations(rendered)
            if v.is_mandatory and not (local and not (v.urn and waivers.chart_release(v.urn)))]


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_every_object_passes_the_api_schemas_strict(stacks, case):
    rendered = stacks[case]
    assert rendered.charts, "no chart rendered"
    docs = rendered.docs
    assert schema_errors(docs, crds=[d for d in docs if d["kind"] == "CustomResourceDefinition"]) == []


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_every_object_passes_checkov(checkov_by_case, case):
    assert checkov_by_case[case] == []


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_every_object_passes_the_policy_pack(stacks, case):
    assert _mandatory(stacks[case]) == []


def test_counts_per_stack_cloud_and_controller(stacks):
    header = ["case", "objects", "chart objects", "CRDs", "custom resources"]
    rows = [[case, *map(str, rendered.counts().values())] for case, rendered in stacks.items()]
    table = "\n".join("| " + " | ".join(row) + " |" for row in [header, ["---"] * len(header), *rows])
    print("\n" + table)
    report = os.environ.get("CLIPPER_RENDERED_COUNTS")
    if report:
        Path(report).write_text(table + "\n")
    assert all(rendered.counts()["CRDs"] > 0 and rendered.counts()["custom resources"] > 0 for rendered in stacks.values())


def test_every_chart_waiver_is_still_needed(stacks, monkeypatch):
    """Each object a chart waiver names is rendered by some case and breaks the rule without it."""
    monkeypatch.setattr(waivers, "CHART_WAIVERS", ())
    broken, distinct = set(), {}
    for rendered in stacks.values():  # cases whose charts render alike need one look
        distinct.setdefault(json.dumps(rendered.charts, sort_keys=True), rendered)
    for rendered in distinct.values():
        by_urn = {r.urn: r for r in rendered.records}
        for violation in _violations(rendered):
            record = by_urn.get(violation.urn)
            if record is not None and waivers.chart_release(record.urn):
                broken.add((violation.rule, waivers.chart_release(record.urn),
                            waivers.chart_object(record.resource_type, record.props)))
    unneeded = [(w.rule, w.release, o) for w in CHART_WAIVERS for o in w.objects if (w.rule, w.release, o) not in broken]
    assert unneeded == []


# --- each check fails on a deliberate mistake in a chart object ---------------------------------


@pytest.fixture(scope="module")
def one_case(stacks) -> Rendered:
    return stacks[next(case for case in stacks if case.endswith("-gateway") and "production" in case)]


def _first(rendered: Rendered, kind: str) -> dict:
    return next(d for docs in rendered.charts.values() for d in docs if d["kind"] == kind)


def test_strict_schemas_catch_a_misspelt_field_in_a_chart_object_and_in_a_custom_resource(one_case):
    bad = copy.deepcopy(one_case)
    deployment, crd = _first(bad, "Deployment"), _first(bad, "CustomResourceDefinition")
    deployment["spec"]["replica"] = 2
    kind = crd["spec"]["names"]["kind"]
    custom = next((d for d in bad.docs if d["kind"] == kind), None)
    if custom is None:  # one of ours, e.g. a ClusterIssuer
        custom = next(d for d in bad.own if not is_builtin_kind(d))
    custom.setdefault("spec", {})["specc"] = True
    errors = schema_errors(bad.docs, crds=[d for d in bad.docs if d["kind"] == "CustomResourceDefinition"])
    assert len(errors) == 2, errors
    assert "replica" in errors[0] or "replica" in errors[1]
    assert any("specc" in e for e in errors)


def test_the_pack_blocks_a_chart_object_that_breaks_a_rule_no_waiver_names(one_case):
    bad = copy.deepcopy(one_case)
    _first(bad, "Deployment")["spec"]["template"]["spec"]["hostNetwork"] = True
    assert any(line.startswith("no-host-namespaces ") for line in _mandatory(bad))


def test_checkov_flags_a_privileged_chart_container_despite_the_chart_skips(one_case, tmp_path):
    deployment = copy.deepcopy(_first(one_case, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0].setdefault("securityContext", {})["privileged"] = True
    write_manifests([deployment], tmp_path / "charts")
    failures = checkov_results(tmp_path, CHART_CHECKOV_SKIPS)
    assert any(f.check_id == "CKV_K8S_16" for f in failures), failures  # privileged container


# --- the same pack in a real preview: the chart waivers match the engine's own URNs ---------------


def test_a_real_preview_of_every_add_on_passes_the_production_policy_config(project):
    """local-platform (every add-on, Envoy Gateway) previewed by the real engine with the pack and
    production's config: every chart object reaches the pack, and nothing mandatory is left."""
    project.env["CLIPPER_CHARTS_DIR"] = str(charts_dir())
    project.init("local-platform")
    project.set("local-platform", "ingress.controller", "gateway")
    result = project.ok("preview", "--stack", "local-platform", "--policy-pack", "policies",
                        "--policy-pack-config", "policies/config/production.json", timeout=1500)
    assert "[mandatory]" not in result.output
    assert "is waived for this envoy-gateway chart object" in result.output
    assert "is waived for this cert-manager chart object" in result.output
