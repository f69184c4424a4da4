"""Named waivers for objects the add-on charts render (they cannot carry our waiver annotations).

Each entry waives one rule for the listed objects (``Kind/name``) of one release (the add-on's
Helm release, which is also its Chart's Pulumi name), with the upstream design reason in one line.
Keep them narrow: name objects, never a whole chart; fix what chart values can fix instead
(components/addons). ``tests/policy/test_waivers.py`` checks every entry names a waivable rule and
gives a reason, and ``tests/engine/test_rendered_stacks.py`` that every listed object is rendered
by some stack and still needs the waiver.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartWaiver:
    rule: str
    release: str
    objects: tuple[str, ...]
    reason: str


CHART_WAIVERS: tuple[ChartWaiver, ...] = ()
