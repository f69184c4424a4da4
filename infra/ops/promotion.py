"""`diff` and `promote`: move what runs in one stack (app images, promotable charts) to the next.

The source side is what the source stack *deployed*: the config of its newest update, not its
stack file, so an edit nobody has deployed yet is never promoted. Promotion refuses when that
update did not succeed, when the stack file has undeployed changes to promotable settings, or when
the source's live state drifted from its recorded state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pulumi import automation as auto

from infra.ops import console, stacks
from infra.ops.checks import detect_drift, drift_table, renders_only
from infra.ops.config_diff import PromotionPlan, plan_promotion
from infra.ops.errors import BadUsage, Refused
from infra.ops.history import UpdateRecord, latest_update
from infra.ops.stack_config import StackConfig


def parse_app_list(text: Optional[str]) -> Optional[list[str]]:
    """`backend, frontend` -> ['backend', 'frontend']; None when not given; empty is bad usage."""
    if text is None:
        return None
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise BadUsage("--apps: give one or more app names, comma-separated (e.g. --apps backend,frontend)")
    return names


def _open_pair(source_name: str, target_name: str, work_dir: Path) -> tuple[auto.Stack, auto.Stack]:
    if source_name == target_name:
        raise BadUsage(f"--from and --to are both {source_name!r}: promotion needs two different stacks")
    return stacks.open_stack(source_name, work_dir), stacks.open_stack(target_name, work_dir)


def _deployed_source(source: auto.Stack) -> tuple[Optional[UpdateRecord], StackConfig]:
    """The source's newest update and the config to promote from (its current config if never deployed)."""
    newest = latest_update(stacks.history(source))
    return newest, (newest.config if newest else stacks.read_config(source))


def plan_table(plan: PromotionPlan) -> str:
    rows = [
        (f"app {a.app}", a.target_version, a.source_version, "yes" if a.changes else "-",
         f"{a.target_replicas} (stays)")
        for a in plan.apps
    ]
    rows += [
        (f"add-on {a.addon}", a.target_version or "-", a.source_version, "yes" if a.changes else "-", "")
        for a in plan.addons
    ]
    return console.table(
        ["setting", f"{plan.target} now", f"from {plan.source}", "changes", f"replicas in {plan.target}"], rows
    )


def _print_plan(plan: PromotionPlan) -> None:
    console.say(plan_table(plan))
    for note in plan.notes:
        console.say(f"note: {note}")
    console.say(f"promotion would: {plan.change_summary()}")


def run_diff(source_name: str, target_name: str, apps: Optional[str], work_dir: Path) -> int:
    only_apps = parse_app_list(apps)
    source, target = _open_pair(source_name, target_name, work_dir)
    newest, source_config = _deployed_source(source)
    plan = plan_promotion(source.name, source_config, target.name, stacks.read_config(target), only_apps)
    if newest is None:
        console.warn(f"note: {source.name} was never deployed; showing its stack config")
    elif not newest.is_successful_update:
        console.warn(f"note: the newest update of {source.name} ({newest.label}) {newest.result}: promote will refuse")
    _print_plan(plan)
    return 0


def _check_source(source: auto.Stack, newest: Optional[UpdateRecord], deployed: PromotionPlan, current: PromotionPlan) -> None:
    """Refuse unless the source's newest update succeeded, its promotable settings are all
    deployed, and its live state matches its recorded state."""
    if newest is None:
        raise Refused(f"{source.name} has never been deployed: nothing proven to promote")
    if not newest.is_successful_update:
        raise Refused(
            f"the newest update of {source.name} ({newest.label}) {newest.result}: fix or roll back "
            f"{source.name} before promoting from it"
        )
    deployed_values, current_values = deployed.promoted_values(), current.promoted_values()
    undeployed = [
        f"{name}: {deployed_values.get(name, '(absent)')} deployed, {current_values.get(name, '(absent)')} in config"
        for name in sorted(set(deployed_values) | set(current_values))
        if deployed_values.get(name) != current_values.get(name)
    ]
    if undeployed:
        raise Refused(
            f"{source.name} has undeployed changes to promotable settings ({'; '.join(undeployed)}): "
            "deploy or revert them first"
        )
    if renders_only(newest.config):
        console.say(f"note: {source.name} is in render mode (no live state): drift check skipped")
        return
    console.step(f"drift check of {source.name} (refresh preview)")
    drifted = detect_drift(source)
    if drifted:
        console.say(drift_table(drifted))
        raise Refused(
            f"{source.name} drifted from its recorded state ({len(drifted)} resource(s)): what runs there is not "
            "what its config says, so it proves nothing; run `pulumi up` or `pulumi refresh` on it first"
        )


def run_promote(source_name: str, target_name: str, apps: Optional[str], assume_yes: bool, work_dir: Path) -> int:
    only_apps = parse_app_list(apps)
    source, target = _open_pair(source_name, target_name, work_dir)
    newest, source_config = _deployed_source(source)
    target_config = stacks.read_config(target)
    plan = plan_promotion(source.name, source_config, target.name, target_config, only_apps)
    current = plan_promotion(source.name, stacks.read_config(source), target.name, target_config, only_apps)
    _check_source(source, newest, plan, current)
    _print_plan(plan)
    if not plan.has_changes:
        console.say(f"{target.name} already runs what {source.name} runs: nothing to do")
        return 0
    policies = stacks.policy_options(target.name, target_config, work_dir)
    with stacks.staged_config(target, plan.updated_target_config(target_config)) as staged:
        console.step(f"preview of {target.name}" + (" with the policy pack" if policies else ""))
        stacks.preview(target, policies)
        console.confirm(f"Promote to {target.name}: {plan.change_summary()}", assume_yes)
        staged.keep()
    console.step(f"update of {target.name}")
    stacks.up(target, plan.message(), policies)
    console.say(f"done: {plan.message()}")
    return 0
