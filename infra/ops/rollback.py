"""`history` and `rollback`: list what a stack deployed, and deploy an earlier update again.

A rollback is an ordinary update: the chosen update's config (every key, secrets included) is
written back to the stack, and `up` runs the program *as of the commit that update ran*
(`git.head` in its environment), from a temporary git worktree of that commit, against the same
stack and backend, so the result equals that update. `--program head` runs today's program with
the old config instead. State is never imported from an old checkpoint (pulumi/pulumi#96), so the
stack's history stays the truth and the next `pulumi up` keeps the rollback.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from infra.ops import console, program_at, stacks
from infra.ops.config_diff import ConfigRestore, config_differences, plan_restore
from infra.ops.errors import BadUsage, Refused
from infra.ops.history import UpdateRecord, app_versions, format_time, latest_update, select_rollback_target

PROGRAM_COMMIT, PROGRAM_HEAD = "commit", "head"


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


class NothingToRollBack(Refused):
    """The stack already runs that update's config with that update's program."""


def rollback_message(stack_name: str, target: UpdateRecord, commit: Optional[str] = None) -> str:
    at = f" at commit {commit[:program_at.SHORT]}" if commit else ""
    return f"rollback {stack_name} to update {target.number} ({format_time(target.start_time)}){at}"


@dataclass(frozen=True)
class ProgramChoice:
    """Which program the rollback runs: `commit` from a worktree of it, or the checkout as it is."""

    commit: Optional[str]
    head: Optional[str]
    notes: tuple[str, ...] = ()


def choose_program(target: UpdateRecord, program: str, allow_dirty: bool, work_dir: Path) -> ProgramChoice:
    """The program for `--program commit|head`, refusing what cannot give that update back."""
    head = stacks.git_head(work_dir)
    ran = target.git_head
    if program == PROGRAM_HEAD:
        notes = ()
        if ran and head and ran != head:
            notes = (
                f"note: update {target.number} ran the program at commit {target.git_commit}; HEAD is {head[:12]}. "
                "--program head: the rollback restores that update's config and runs the program at HEAD.",
            )
        return ProgramChoice(None, head, notes)
    if not ran:
        return ProgramChoice(None, head, (
            f"note: update {target.number} recorded no git commit (its project was not in a git checkout): "
            "the rollback restores its config and runs today's program, as --program head would.",
        ))
    if not program_at.has_commit(work_dir, ran):
        raise Refused(
            f"update {target.number} ran the program at commit {ran[:12]}, which is not in the repository at "
            f"{work_dir}: fetch it, or pass --program head to restore only the config with today's program"
        )
    notes = ()
    if target.ran_uncommitted_program:
        if not allow_dirty:
            raise Refused(
                f"update {target.number} ran at commit {ran[:12]} with uncommitted changes (git.dirty), so that "
                "commit is not exactly the program it ran: --allow-dirty runs the commit as committed, "
                "--program head runs today's program"
            )
        notes = (f"note: update {target.number} ran with uncommitted changes; --allow-dirty: running commit "
                 f"{ran[:12]} as committed.",)
    return ProgramChoice(ran, head, notes)


def refuse_if_deployed(records: list[UpdateRecord], target: UpdateRecord, choice: ProgramChoice, work_dir: Path) -> None:
    """Refuse when the newest update already ran this config with this program (known by commit)."""
    newest = latest_update(records)
    if newest is None or not newest.is_successful_update or newest.config != target.config:
        return
    runs = choice.commit
    if runs is None and choice.head and program_at.in_checkout(work_dir) and not program_at.uncommitted_program_changes(work_dir):
        runs = choice.head
    if runs and newest.git_head == runs and newest.git_dirty is False:
        which = "it is the newest update" if newest.number == target.number else f"the newest update, {newest.number}, ran"
        raise NothingToRollBack(
            f"nothing to roll back: {which} with update {target.number}'s config at commit {runs[:12]}"
        )


def _say_program(target: UpdateRecord, choice: ProgramChoice, work_dir: Path) -> None:
    for note in choice.notes:
        console.warn(note)
    ran = target.git_head
    if not ran or not program_at.has_commit(work_dir, ran):
        if ran:
            console.say(f"program differences: unknown (commit {ran[:12]} is not in this repository)")
        return
    head = choice.head[:12] if choice.head else "?"
    if choice.commit:
        console.say(f"program: commit {ran[:12]} (update {target.number}'s), from a temporary worktree; HEAD is {head}")
        what = f"program changes since {ran[:12]} that the rollback takes out"
    else:
        console.say(f"program: HEAD {head} (today's), not update {target.number}'s commit {ran[:12]} (--program head)")
        what = f"program changes since {ran[:12]} that stay"
    stat = program_at.program_diff_stat(work_dir, ran)
    paths = " ".join(program_at.PROGRAM_PATHS)
    console.say(f"{what} (git diff --stat {ran[:12]} HEAD -- {paths}):")
    console.say(stat if stat else "  none")
    uncommitted = program_at.uncommitted_program_changes(work_dir)
    if uncommitted:
        used = "not used: the worktree has only the commit" if choice.commit else "used: they run too"
        console.say(f"uncommitted program changes in the checkout ({used}):")
        console.say("\n".join(f"  {line}" for line in uncommitted))


@dataclass
class ProgramRun:
    """Where the engine runs the program: the stack opened there, and options for preview and up."""

    stack: object
    work_dir: Path
    config_from_stack_file: bool


@contextmanager
def program_run(stack, choice: ProgramChoice, work_dir: Path) -> Iterator[ProgramRun]:
    if choice.commit is None:
        yield ProgramRun(stack, work_dir, False)
        return
    with program_at.worktree_at(work_dir, choice.commit) as tree:
        yield ProgramRun(stacks.open_stack(stack.name, tree.project_dir, env=tree.env), tree.project_dir, True)


@dataclass(frozen=True)
class RollbackPlan:
    stack: object
    target: UpdateRecord
    restore: ConfigRestore
    choice: ProgramChoice


def plan_rollback(
    stack, to: Optional[int], steps: Optional[int], program: str, allow_dirty: bool, work_dir: Path
) -> RollbackPlan:
    """Choose the update, check it can be given back, and print the config and program differences."""
    records = stacks.history(stack)
    target = select_rollback_target(records, to=to, steps=steps)
    unreadable = sorted(key for key, entry in target.config.items() if not entry.readable)
    if unreadable:
        raise Refused(f"{target.label} has secrets this session cannot decrypt ({', '.join(unreadable)})")
    choice = choose_program(target, program, allow_dirty, work_dir)
    refuse_if_deployed(records, target, choice, work_dir)
    current = stacks.read_config(stack)
    console.say(f"rolling {stack.name} back to {target.label}: {target.message or '(no message)'}")
    console.say(f"apps now: {_versions_text(app_versions(current))}")
    console.say(f"apps then: {_versions_text(target.app_versions())}")
    differences = config_differences(current, target.config)
    if differences:
        console.say(console.table(["config key", "now", f"at update {target.number}"], differences))
    else:
        console.say("the config already equals that update's config")
    _say_program(target, choice, work_dir)
    return RollbackPlan(stack, target, plan_restore(current, target.config), choice)


def preview_plan(plan: RollbackPlan, work_dir: Path):
    """Preview the rollback with its config in a copy of the stack file: nothing is written."""
    with program_run(plan.stack, plan.choice, work_dir) as run:
        policies = stacks.policy_options(plan.stack.name, plan.target.config, run.work_dir)
        with stacks.config_copy(plan.stack, plan.restore.changed_entries(), plan.restore.remove) as config_file:
            console.step(f"preview of {plan.stack.name}" + (" with the policy pack" if policies else "") + " (dry run)")
            return stacks.preview(run.stack, {**policies, "config_file": str(config_file)})


def run_rollback(
    stack_name: str,
    to: Optional[int],
    steps: Optional[int],
    assume_yes: bool,
    work_dir: Path,
    program: str = PROGRAM_COMMIT,
    allow_dirty: bool = False,
    dry_run: bool = False,
) -> int:
    stack = stacks.open_stack(stack_name, work_dir)
    plan = plan_rollback(stack, to, steps, program, allow_dirty, work_dir)
    if dry_run:
        preview_plan(plan, work_dir)
        console.say(f"dry run: nothing was changed (stack file, state and history of {stack.name} as they were)")
        return 0
    target, restore = plan.target, plan.restore
    with program_run(stack, plan.choice, work_dir) as run:
        options = stacks.policy_options(stack.name, target.config, run.work_dir)
        policies = bool(options)
        if run.config_from_stack_file:  # the worktree holds the commit's stack file: use the checkout's
            short_name = stack.name.rsplit("/", 1)[-1]
            options["config_file"] = str(stacks.stack_file(stack) or work_dir / f"Pulumi.{short_name}.yaml")
        with stacks.staged_config(stack, restore.changed_entries(), restore.remove) as staged:
            console.step(f"preview of {stack.name}" + (" with the policy pack" if policies else ""))
            stacks.preview(run.stack, options)
            console.confirm(f"Roll back {stack.name} to update {target.number}", assume_yes)
            staged.keep()
        message = rollback_message(stack.name, target, plan.choice.commit)
        console.step(f"update of {stack.name}")
        stacks.up(run.stack, message, options)
    console.say(f"done: {message}")
    return 0


def drill(stack, work_dir: Path) -> str:
    """`rollback --steps 1 --dry-run`, for preflight: can the previous successful update be given
    back exactly (its commit is here, its tree was clean, the preview passes)? What it found, or
    Refused (the preflight's NO-GO) when it cannot."""
    try:
        plan = plan_rollback(stack, None, 1, PROGRAM_COMMIT, False, work_dir)
    except BadUsage as error:
        return f"skipped: {error}"
    except NothingToRollBack as same:
        return str(same)
    result = preview_plan(plan, work_dir)
    changes = {op: n for op, n in (getattr(result, "change_summary", None) or {}).items() if n and op != "same"}
    summary = ", ".join(f"{n} {op}" for op, n in sorted(changes.items())) or "no changes"
    where = f"commit {plan.choice.commit[:12]}" if plan.choice.commit else "today's program (no commit recorded)"
    return f"to {plan.target.label} at {where}: preview passes ({summary})"
