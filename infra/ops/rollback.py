"""`history` and `rollback`: list what a stack deployed, and deploy an earlier update's config again.

A rollback is an ordinary update: the chosen update's config (every key, secrets included) is
written back to the stack and `up` runs today's program with it. State is never imported from an
old checkpoint (pulumi/pulumi#96), so the stack's history stays the truth and the next
`pulumi up` keeps the rollback.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from infra.ops import console, stacks
from infra.ops.config_diff import config_differences, plan_restore
from infra.ops.errors import Refused
from infra.ops.history import UpdateRecord, app_versions, format_time, select_rollback_target


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{app} {version}" for app, version in versions.items()) or "-"


def history_table(records: list[UpdateRecord]) -> str:
    return console.table(
        ["#", "time", "kind", "result", "message", "git commit", "app versions"],
        [
            (r.number, format_time(r.start_time), r.kind, r.result, r.message or "-", r.git_commit,
             _versions_text(r.app_versions()) if r.kind == "update" else "-")
            for r in records
        ],
    )


def run_history(stack_name: str, as_json: bool, work_dir: Path) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    records = stacks.history(stack)
    if as_json:
        console.say(json.dumps([r.to_json() for r in records], indent=2))
    elif not records:
        console.say(f"{stack.name} has no history yet")
    else:
        console.say(history_table(records))
    return 0


def rollback_message(stack_name: str, target: UpdateRecord) -> str:
    return f"rollback {stack_name} to update {target.number} ({format_time(target.start_time)})"


def run_rollback(stack_name: str, to: Optional[int], steps: Optional[int], assume_yes: bool, work_dir: Path) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    target = select_rollback_target(stacks.history(stack), to=to, steps=steps)
    unreadable = sorted(key for key, entry in target.config.items() if not entry.readable)
    if unreadable:
        raise Refused(f"{target.label} has secrets this session cannot decrypt ({', '.join(unreadable)})")
    current = stacks.read_config(stack)
    restore = plan_restore(current, target.config)
    console.say(f"rolling {stack.name} back to {target.label}: {target.message or '(no message)'}")
    console.say(f"apps now: {_versions_text(app_versions(current))}")
    console.say(f"apps then: {_versions_text(target.app_versions())}")
    differences = config_differences(current, target.config)
    if differences:
        console.say(console.table(["config key", "now", f"at update {target.number}"], differences))
    else:
        console.say("the config already equals that update's config: the update re-applies it")
    head = stacks.git_head(work_dir)
    if target.git_head and head and target.git_head != head:
        console.warn(
            f"note: update {target.number} ran the program at commit {target.git_commit}; HEAD is {head[:12]}. "
            "The rollback restores that update's config and runs the program at HEAD."
        )
    policies = stacks.policy_options(stack.name, target.config, work_dir)
    with stacks.staged_config(stack, restore.changed_entries(), restore.remove) as staged:
        console.step(f"preview of {stack.name}" + (" with the policy pack" if policies else ""))
        stacks.preview(stack, policies)
        console.confirm(f"Roll back {stack.name} to update {target.number}", assume_yes)
        staged.keep()
    message = rollback_message(stack.name, target)
    console.step(f"update of {stack.name}")
    stacks.up(stack, message, policies)
    console.say(f"done: {message}")
    return 0
