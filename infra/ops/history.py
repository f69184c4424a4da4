"""A stack's update history: numbering, what each update deployed, and choosing a rollback target.

Pure functions over the JSON of `pulumi stack history --json --show-secrets` (newest first), so
they are tested on recorded history without an engine.

Numbering: Pulumi Cloud gives every entry its `version`; the file backend gives 0 for all. When the
backend gives no versions, entries are numbered by position, oldest = 1, so `history` and
`rollback --to N` agree on what N means.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Optional

from components.settings import image_version
from infra.ops.errors import BadUsage, Refused
from infra.ops.stack_config import StackConfig, parse_config, project_setting

# Added to the message of an update the ops CLI runs when no program file (program_at.PROGRAM_PATHS)
# has uncommitted changes: the update's commit is then exactly the program it ran, whatever git.dirty says.
PROGRAM_AS_COMMITTED = "[program as committed]"

UPDATE = "update"
SUCCEEDED = "succeeded"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class UpdateRecord:
    """One entry of a stack's history, with the config it ran with."""

    number: int
    kind: str
    result: str
    message: str
    start_time: datetime
    end_time: Optional[datetime]
    git_head: Optional[str]
    git_dirty: Optional[bool]
    config: StackConfig = field(repr=False)
    resource_changes: Mapping[str, int] = field(default_factory=dict)

    @property
    def ran_uncommitted_program(self) -> bool:
        """The tree had uncommitted changes (git.dirty) that may have been program changes. Not so
        for an update whose message says the program was as committed: an ops `up` whose only
        uncommitted files were stack files, which promote and rollback write before their `up`."""
        return bool(self.git_dirty) and PROGRAM_AS_COMMITTED not in self.message

    @property
    def is_successful_update(self) -> bool:
        return self.kind == UPDATE and self.result == SUCCEEDED

    @property
    def label(self) -> str:
        """How messages name this entry: `update 3 (2026-11-22 05:23 UTC)`."""
        return f"update {self.number} ({format_time(self.start_time)})"

    @property
    def git_commit(self) -> str:
        if not self.git_head:
            return "-"
        return self.git_head[:12] + ("+dirty" if self.git_dirty else "")

    def app_versions(self) -> dict[str, str]:
        return app_versions(self.config)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "kind": self.kind,
            "result": self.result,
            "message": self.message,
            "startTime": self.start_time.isoformat(),
            "endTime": self.end_time.isoformat() if self.end_time else None,
            "gitHead": self.git_head,
            "gitDirty": self.git_dirty,
            "appVersions": self.app_versions(),
            "resourceChanges": dict(self.resource_changes),
        }


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc)


def _flag(text: Optional[str]) -> Optional[bool]:
    return None if text is None else str(text).lower() == "true"


def parse_history(entries: list[Mapping[str, Any]]) -> list[UpdateRecord]:
    """Records from history JSON (newest first, as the CLI gives it), numbered; newest first."""
    versions = [int(entry.get("version") or 0) for entry in entries]
    backend_numbers = all(v > 0 for v in versions) and len(set(versions)) == len(versions)
    total = len(entries)
    records = []
    for position, entry in enumerate(entries):
        environment = entry.get("environment") or {}
        records.append(
            UpdateRecord(
                number=versions[position] if backend_numbers else total - position,
                kind=entry.get("kind", ""),
                result=entry.get("result", ""),
                message=entry.get("message", ""),
                start_time=_parse_time(entry.get("startTime")),
                end_time=_parse_time(entry.get("endTime")),
                git_head=environment.get("git.head"),
                git_dirty=_flag(environment.get("git.dirty")),
                config=parse_config(entry.get("config") or {}),
                resource_changes=entry.get("resourceChanges") or {},
            )
        )
    return records


def app_versions(config: StackConfig) -> dict[str, str]:
    """Per app, the image tag and/or digest that config deploys (the raw image when unparseable)."""
    apps = project_setting(config, "apps", {})
    versions = {}
    for name, app in sorted(apps.items() if isinstance(apps, dict) else []):
        image = app.get("image") if isinstance(app, dict) else None
        if not isinstance(image, str):
            versions[name] = "?"
            continue
        try:
            version = image_version(image)
        except (AssertionError, TypeError):
            version = ""
        versions[name] = version or image  # not a pinned reference: show it whole
    return versions


def latest_update(records: Iterable[UpdateRecord]) -> Optional[UpdateRecord]:
    """The newest `update` entry, whatever its result (refreshes and previews are skipped)."""
    return next((r for r in records if r.kind == UPDATE), None)


def find_update(records: list[UpdateRecord], number: int) -> UpdateRecord:
    for record in records:
        if record.number == number:
            return record
    numbers = [r.number for r in records]
    span = f"{min(numbers)}..{max(numbers)}" if numbers else "none: the stack has no history"
    raise BadUsage(f"there is no update {number} in this stack's history (numbers: {span})")


def select_rollback_target(
    records: list[UpdateRecord], to: Optional[int] = None, steps: Optional[int] = None
) -> UpdateRecord:
    """The earlier successful update to restore.

    `to=N` names it by number. `steps=K` walks back K successful updates from the newest update
    (which is skipped whatever its result: `--steps 1` undoes the last update, failed or not).
    Unknown numbers and too many steps are bad usage (exit 2); a target that is not a successful
    update is refused (exit 1).
    """
    if (to is None) == (steps is None):
        raise BadUsage("give exactly one of --to N or --steps K")
    if to is not None:
        target = find_update(records, to)
        if target.kind != UPDATE:
            raise Refused(f"{target.label} is a {target.kind}, not an update: only updates carry a config to restore")
        if target.result != SUCCEEDED:
            raise Refused(
                f"{target.label} {target.result}: rolling back to a configuration that did not deploy is refused; "
                "pick a succeeded update from `history`"
            )
        return target
    if steps < 1:
        raise BadUsage(f"--steps must be 1 or more (got {steps})")
    newest = latest_update(records)
    if newest is None:
        raise BadUsage("the stack has no updates to roll back")
    earlier = [r for r in records if r.is_successful_update and r.number < newest.number]
    if steps > len(earlier):
        raise BadUsage(
            f"--steps {steps}: only {len(earlier)} successful update(s) before the newest ({newest.label})"
        )
    return earlier[steps - 1]
