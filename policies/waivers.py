"""Waivers: a resource opts out of one rule, and says why.

Objects the program declares carry an annotation:

    metadata.annotations["waiver.policy.clipper.dev/<rule-name>"] = "<reason>"

Objects a Helm chart renders cannot carry our annotations, so their waivers are named in
``policies.chart_waivers``: one rule, one release, the listed objects, one reason.

Only Kubernetes objects can be waived. A waiver without a reason waives nothing (and
``waiver-reason-required`` reports it); ``waivers-in-use`` reports every honoured waiver so that
each one stays visible in preview output.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from policies import kube
from policies.chart_waivers import CHART_WAIVERS, ChartWaiver

WAIVER_ANNOTATION_PREFIX = "waiver.policy.clipper.dev/"
_HELM_CHART_TYPE_PREFIX = "kubernetes:helm.sh/"


@dataclass(frozen=True)
class Waiver:
    rule: str
    reason: str

    @property
    def annotation(self) -> str:
        return WAIVER_ANNOTATION_PREFIX + self.rule

    @property
    def has_reason(self) -> bool:
        return bool(self.reason)


def waivers_of(props: Mapping) -> list[Waiver]:
    waivers = []
    for key, value in kube.annotations(props).items():
        if isinstance(key, str) and key.startswith(WAIVER_ANNOTATION_PREFIX):
            reason = value.strip() if isinstance(value, str) else ""
            waivers.append(Waiver(key[len(WAIVER_ANNOTATION_PREFIX):], reason))
    return waivers


def honoured_waiver(props: Mapping, rule: str) -> Optional[Waiver]:
    """The annotation that switches ``rule`` off for this object, if one with a reason exists."""
    for waiver in waivers_of(props):
        if waiver.rule == rule and waiver.has_reason:
            return waiver
    return None


def chart_release(urn: str) -> Optional[str]:
    """The chart (its Pulumi name, which is the Helm release name) that rendered the object, or
    None for anything the program declares itself.

    A chart object's URN has a Helm chart in its parent-type chain, and the provider names it
    ``<chart name>:<namespace>/<name>``: ``urn:pulumi:S::P::...$kubernetes:helm.sh/v4:Chart$
    kubernetes:apps/v1:Deployment::cert-manager:cert-manager/cert-manager``.
    """
    parts = urn.split("::", 3)
    if len(parts) < 4 or not any(t.startswith(_HELM_CHART_TYPE_PREFIX) for t in parts[2].split("$")[:-1]):
        return None
    return parts[3].split(":", 1)[0]


def chart_object(resource_type: str, props: Mapping) -> str:
    """How chart waivers name an object: ``Kind/name``."""
    return f"{resource_type.rsplit(':', 1)[-1]}/{kube.get_path(props, 'metadata', 'name')}"


def chart_waivers_of(resource: Any) -> list[ChartWaiver]:
    """The chart waivers naming this object (``resource``: anything with resource_type, urn, props)."""
    release = chart_release(resource.urn)
    if release is None:
        return []
    named = chart_object(resource.resource_type, resource.props)
    return [w for w in CHART_WAIVERS if w.release == release and named in w.objects]


def waiver_for(resource: Any, rule: str) -> Optional[Waiver]:
    """The waiver that switches ``rule`` off for ``resource``: its annotation, or a chart waiver."""
    found = honoured_waiver(resource.props, rule)
    if found:
        return found
    for waiver in chart_waivers_of(resource):
        if waiver.rule == rule and waiver.reason.strip():
            return Waiver(rule, waiver.reason.strip())
    return None
