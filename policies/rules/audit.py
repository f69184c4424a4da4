"""Waiver audit: waivers must say why, name a real rule, and always show up in preview output
(chart waivers, named in ``policies.chart_waivers``, too).

These rules need the names of every other rule, so the pack builds them with ``build_rules``.
They are not waivable themselves.
"""

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from pulumi_policy import EnforcementLevel

from policies.framework import ResourceRule, Rule
from policies.waivers import WAIVER_ANNOTATION_PREFIX, chart_waivers_of, waivers_of

WAIVER_REASON_REQUIRED = "waiver-reason-required"
WAIVERS_IN_USE = "waivers-in-use"


def build_rules(waivable_rule_names: Collection[str]) -> list[Rule]:
    known = frozenset(waivable_rule_names)

    def invalid_waivers(resource: Any, config: Mapping) -> Iterator[str]:
        for waiver in waivers_of(resource.props):
            if waiver.rule not in known:
                yield f"annotation {waiver.annotation} names no waivable rule of this pack"
            elif not waiver.has_reason:
                yield f"annotation {waiver.annotation} has no reason, so it waives nothing"

    def honoured_waivers(resource: Any, config: Mapping) -> Iterator[str]:
        for waiver in waivers_of(resource.props):
            if waiver.rule in known and waiver.has_reason:
                yield f"rule {waiver.rule} is waived: {waiver.reason}"
        for chart_waiver in chart_waivers_of(resource):
            if chart_waiver.rule in known and chart_waiver.reason.strip():
                yield f"rule {chart_waiver.rule} is waived for this {chart_waiver.release} chart object: {chart_waiver.reason}"

    return [
        ResourceRule(
            name=WAIVER_REASON_REQUIRED,
            description="Waiver annotations name a waivable rule and give a non-empty reason.",
            rationale="A waiver is a reviewed exception; one without a reason cannot be reviewed, and "
            "one naming a misspelt rule silently waives nothing.",
            remediation=f"Write the annotation as {WAIVER_ANNOTATION_PREFIX}<rule-name>: \"<why this "
            "resource needs the exception>\" with a rule name from policies/README.md.",
            check=invalid_waivers,
            waivable=False,
        ),
        ResourceRule(
            name=WAIVERS_IN_USE,
            description="Reports every honoured waiver with its reason (advisory, for visibility).",
            rationale="A waived rule stays visible: every preview lists the exceptions in force so "
            "that reviewers see them.",
            remediation="Nothing to fix; remove the waiver annotation once the exception is no longer needed.",
            check=honoured_waivers,
            enforcement_level=EnforcementLevel.ADVISORY,
            waivable=False,
        ),
    ]
