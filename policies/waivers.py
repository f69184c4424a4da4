"""Waivers: a resource opts out of one rule with an annotation that says why.

    metadata.annotations["waiver.policy.clipper.dev/<rule-name>"] = "<reason>"

Only Kubernetes objects carry annotations, so only they can be waived. A waiver without a reason
waives nothing (and ``waiver-reason-required`` reports it); ``waivers-in-use`` reports every
honoured waiver so that each one stays visible in preview output.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from policies import kube

WAIVER_ANNOTATION_PREFIX = "waiver.policy.clipper.dev/"


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
    """The waiver that switches ``rule`` off for this resource, if one with a reason exists."""
    for waiver in waivers_of(props):
        if waiver.rule == rule and waiver.has_reason:
            return waiver
    return None
