"""`python -m infra.ops <command>`: argument parsing, dispatch, and exit codes."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import NoReturn, Optional

from infra.ops import backups, checks, dr_drill, promotion, recover, rollback, rotate, secrets_provider, verify
from infra.ops.errors import BadUsage, OpsError
from infra.ops.kube import parse_duration
from infra.ops.stacks import REPO_ROOT

PROG = "python -m infra.ops"

EXIT_CODES = """\
exit codes:
  0  done (or nothing to do; for drift: no drift; for preflight: GO)
  1  refused or failed: a safety check failed, the operator did not confirm, the
     engine failed, drift was found, or preflight says NO-GO
  2  bad usage: unknown stack, update number out of range, same stack twice,
     unknown app, malformed arguments; nothing was changed
"""

ENVIRONMENT = """\
environment:
  The backend comes from the environment: PULUMI_BACKEND_URL=file://<dir> for the file
  backend (with PULUMI_CONFIG_PASSPHRASE for its secrets), or a `pulumi login` to Pulumi
  Cloud. `make` targets export the local settings; see docs/operations.md.
"""


class OpsArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line on stderr and exits 2, and takes flags
    only as spelt in full (a prefix like `--step` would otherwise pass for `--steps`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _no_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-verify", action="store_true", help="do not run `verify` on the stack after the update")


def _command(subparsers, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, 92),
        epilog=f"examples:\n{examples}\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _promotion_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """--from/--to/--apps, shared by `diff` and `promote` so both read the same stacks and apps."""
    parser.add_argument("--from", dest="source", required=True, metavar="STACK", help="stack to promote from")
    parser.add_argument("--to", dest="target", required=True, metavar="STACK", help="stack to promote to")
    parser.add_argument("--apps", help=f"comma-separated apps to {verb} (default: every app in both stacks)")


def build_parser() -> argparse.ArgumentParser:
    parser = OpsArgumentParser(
        prog=PROG,
        description="Day-2 operations on the clipper stacks through the Pulumi Automation API: "
        "history, promotion between stacks, rollback to an earlier update, pre-deployment checks, drift.",
        epilog=f"Run `{PROG} <command> --help` for each command's options and examples.\n\n{EXIT_CODES}\n{ENVIRONMENT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO_ROOT,
        help="project directory holding Pulumi.yaml and the stack files (default: the repo root)",
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", parser_class=OpsArgumentParser)
    commands.required = True

    history = _command(
        commands,
        "history",
        "list a stack's updates, newest first, with the app versions each deployed",
        "List a stack's updates, newest first: number, start time, kind, result, message, the git commit "
        "the program was at (+dirty when the tree had changes) and the image tag/digest of each app in "
        "that update's config. Numbers are the backend's versions on Pulumi Cloud; on the file backend "
        "(which has none) entries are numbered oldest = 1. `rollback --to N` uses the same numbers.",
        f"  {PROG} history --stack production\n  {PROG} history --stack staging --json | jq '.[0]'\n",
    )
    history.add_argument("--stack", required=True, help="stack name (org/stack on Pulumi Cloud)")
    history.add_argument("--json", action="store_true", help="print JSON instead of a table (no secrets)")

    diff = _command(
        commands,
        "diff",
        "show what promoting one stack to another would change",
        "Compare the promotable settings of two stacks: each app's image (tag/digest) and the chart "
        "version of each add-on the source marks `promotable: true`. The source side is what the source "
        "last deployed (its newest update's config). Replicas are shown for context; they stay per stack.",
        f"  {PROG} diff --from staging --to production\n  {PROG} diff --from staging --to production --apps backend\n",
    )
    _promotion_arguments(diff, "compare")

    promote = _command(
        commands,
        "promote",
        "copy app images and promotable chart versions from one stack to another, then deploy",
        "Copy what the source stack deployed (app images; chart versions of add-ons marked promotable) into "
        "the target stack's config, preview the target (with the policy pack when policies/PulumiPolicy.yaml "
        "exists), ask for confirmation, then `up` with the message `promote A -> B: backend 1.4.2 -> 1.5.0, "
        "...`. Refuses when the source's newest update did not succeed, when the source's config has "
        "undeployed changes to those settings, or when the source's live state drifted. When the preview "
        "fails or the confirmation is declined, the target's config is put back as it was.",
        f"  {PROG} promote --from staging --to production\n"
        f"  {PROG} promote --from staging --to production --apps backend --yes   # CI\n",
    )
    _promotion_arguments(promote, "promote")
    promote.add_argument("--yes", action="store_true", help="do not ask; required when stdin is not a terminal")
    _no_verify(promote)

    roll = _command(
        commands,
        "rollback",
        "deploy an earlier successful update again: its config, and its program as of its git commit",
        "Restore exactly the config of an earlier successful `update` (every key, secrets included and "
        "re-encrypted with the stack's secrets provider; keys added since are removed) and run the program "
        "as of the git commit that update ran (a temporary git worktree of it), so the result equals that "
        "update: preview, confirm, then `up` with the message `rollback S to update N (<time>) at commit C`. "
        "Refused when the commit is not in the repository, or when that update ran with uncommitted changes "
        "(unless --allow-dirty). --program head runs today's program with the old config instead. --dry-run "
        "prints the config and program differences and the preview, and changes nothing. --steps K walks back "
        "K successful updates from the newest update (--steps 1 undoes the last update, failed or not).",
        f"  {PROG} rollback --stack production --steps 1 --dry-run\n"
        f"  {PROG} rollback --stack production --steps 1\n"
        f"  {PROG} rollback --stack production --to 12 --program head --yes\n",
    )
    roll.add_argument("--stack", required=True, help="stack to roll back")
    which = roll.add_mutually_exclusive_group(required=True)
    which.add_argument("--to", type=_positive, metavar="N", help="update number, as `history` shows it")
    which.add_argument("--steps", type=_positive, metavar="K", help="go back K successful updates")
    roll.add_argument("--program", choices=[rollback.PROGRAM_COMMIT, rollback.PROGRAM_HEAD], default=rollback.PROGRAM_COMMIT,
                      help="commit (default): the program as of that update's git commit; head: today's program")
    roll.add_argument("--allow-dirty", action="store_true",
                      help="roll back to an update that ran with uncommitted changes (runs its commit as committed)")
    roll.add_argument("--dry-run", action="store_true", help="print the differences and the preview; change nothing")
    roll.add_argument("--yes", action="store_true", help="do not ask; required when stdin is not a terminal")
    _no_verify(roll)

    preflight = _command(
        commands,
        "preflight",
        "run the pre-deployment checklist and print go/no-go",
        "The runbook's pre-deployment checklist: the stack config validates (the program runs under mocks), "
        "the pulumi CLI and its plugins are found, a preview succeeds, the policy pack passes, and the "
        "state has no pending operations. Prints a go/no-go table.",
        f"  {PROG} preflight --stack production\n",
    )
    preflight.add_argument("--stack", required=True, help="stack to check")
    preflight.add_argument("--rollback-drill", action="store_true",
                           help="also dry-run a rollback to the previous successful update (rollback --steps 1 --dry-run)")

    drift = _command(
        commands,
        "drift",
        "list resources changed outside Pulumi (refresh preview; changes nothing)",
        "Compare the live state of every resource with the stack's recorded state (a refresh preview, "
        "which writes nothing) and list the resources changed outside Pulumi.",
        f"  {PROG} drift --stack production || echo 'drift found'\n",
    )
    drift.add_argument("--stack", required=True, help="stack to check")
    _verify_and_rotate(commands)
    _backups_and_drill(commands)
    _secrets_provider(commands)
    _recover(commands)
    return parser


def _recover(commands) -> None:
    fix = _command(
        commands,
        "recover",
        "bring a stack back after an update that died half-way: stale lock, pending operations",
        "After an update was killed (CI runner cancelled, laptop closed): repair a half-written file-backend "
        "state (an empty .attrs file), remove the stack's lock when the "
        "process that took it is gone (`pulumi cancel`; a lock from another host needs --break-lock, a "
        "process still running on this host is refused), then look up every pending create on the cluster: "
        "one whose object exists is adopted into the state with its live id, one whose object does not is "
        "cleared; then "
        "`pulumi refresh` reconciles the state with the live objects (pending updates and deletes included). "
        "Prints what it found and what it did; `pulumi up` afterwards finishes the interrupted work. "
        "`preflight` says NO-GO and names this command while a stack needs it.",
        f"  {PROG} recover --stack production --dry-run\n"
        f"  {PROG} recover --stack production --yes\n",
    )
    fix.add_argument("--stack", required=True, help="stack whose interrupted update to clean up")
    fix.add_argument("--dry-run", action="store_true", help="print the lock and the pending operations and the plan; change nothing")
    fix.add_argument("--yes", action="store_true", help="do not ask; required when stdin is not a terminal")
    fix.add_argument("--break-lock", action="store_true",
                     help="also remove a lock taken on another host (make sure nothing runs there first)")


def _secrets_provider(commands) -> None:
    change = _command(
        commands,
        "secrets-provider",
        "re-encrypt a stack's secrets with another secrets provider, and prove nothing was lost",
        "Change the provider that encrypts a stack's secrets (the stack file's secret config and the state) "
        "with `pulumi stack change-secrets-provider`, safely: refused unless the current provider decrypts "
        "every secret of the stack file and of the latest state, and the state has no pending operations; "
        "the state is backed up (encrypted as it is) to .state/secrets-provider/ first; when the CLI fails, "
        "the stack file and state are put back. Afterwards every config value and state secret is read "
        "again under the new provider and compared with the old, and a preview must show what it showed "
        "before. History is not re-encrypted: the command lists the earlier updates that keep the old "
        f"provider's ciphertext (a rollback to them needs the old key). For --to passphrase the new "
        f"passphrase is read from ${secrets_provider.NEW_PASSPHRASE_ENV}, the current one from "
        "$PULUMI_CONFIG_PASSPHRASE. Commit the stack file afterwards.",
        f"  {PROG} secrets-provider --stack production --to 'awskms://alias/clipper-production?region=eu-west-1' --dry-run\n"
        f"  {PROG} secrets-provider --stack production --to 'gcpkms://projects/clpr-ops/locations/global/keyRings/pulumi/cryptoKeys/production'\n"
        f"  {PROG} secrets-provider --stack production --to 'azurekeyvault://clpr-ops.vault.azure.net/keys/pulumi-production' --yes\n"
        f"  {secrets_provider.NEW_PASSPHRASE_ENV}=... {PROG} secrets-provider --stack local-staging --to passphrase --yes\n",
    )
    change.add_argument("--stack", required=True, help="stack whose secrets to re-encrypt")
    change.add_argument("--to", required=True, metavar="PROVIDER",
                        help=f"the new provider: {secrets_provider.SUPPORTED}")
    change.add_argument("--dry-run", action="store_true",
                        help="check that every secret decrypts now and print the plan; change nothing")
    change.add_argument("--yes", action="store_true", help="do not ask; required when stdin is not a terminal")


def _verify_and_rotate(commands) -> None:
    check = _command(
        commands,
        "verify",
        "check that what the stack deployed runs: rollouts, pods, restarts, secrets, certificates",
        "Watch the stack's apps on its cluster for a window: each Deployment runs the configured image and "
        "finished its rollout, every pod of the current revision is Ready, no container restarted since the "
        "update, ExternalSecrets are synced and Certificates Ready (where those add-ons are on); with --http, "
        "each app's readiness path answers through the API server's service proxy. A failure ends the watch at "
        "once; anything still pending when the window ends fails. promote and rollback run it at their end "
        f"(--no-verify to skip), watching {verify.DEFAULT_WATCH_S}s.",
        f"  {PROG} verify --stack production\n"
        f"  {PROG} verify --stack production --apps backend --watch 30m   # soak a release\n",
    )
    check.add_argument("--stack", required=True, help="stack to verify (render-mode stacks run nowhere)")
    check.add_argument("--apps", help="comma-separated apps to verify (default: every app of the stack)")
    check.add_argument("--watch", type=_duration, default=verify.DEFAULT_WATCH_S, metavar="DURATION",
                       help=f"how long to watch, e.g. 30s, 5m, 1h; 0 looks once (default: {verify.DEFAULT_WATCH_S}s)")
    check.add_argument("--http", action="store_true",
                       help="also probe each app's readiness path through the API server's service proxy "
                       "(the API server must be able to reach the pods: see docs/operations.md)")

    turn = _command(
        commands,
        "rotate",
        "make an app pick up its rotated secret now: force a sync, wait for the new pods",
        "Once the new value is in the cloud secret manager: ask External Secrets to sync the app's "
        "ExternalSecret now (its force-sync annotation), wait until the app's Secret has changed, then wait for "
        "Reloader to roll the app's Deployment and for the new pods to be Ready. Fails when the Secret did not "
        "change (the secret manager still holds the old value) or nothing rolls the app.",
        f"  {PROG} rotate --stack production --app backend\n",
    )
    turn.add_argument("--stack", required=True, help="stack the app runs in")
    turn.add_argument("--app", required=True, help="the app whose secrets were rotated")
    turn.add_argument("--timeout", type=_duration, default=rotate.DEFAULT_TIMEOUT_S, metavar="DURATION",
                      help=f"give up after this long (default: {rotate.DEFAULT_TIMEOUT_S // 60}m)")


def _backups_and_drill(commands) -> None:
    listing = _command(
        commands,
        "backups",
        "list a stack's Velero backups and whether the newest meets the RPO",
        "`backups list`: the stack's Velero Backups, newest first (schedule, namespaces, phase, times, "
        "expiry, errors/warnings), then whether the newest completed backup of the app namespace is within "
        "addons.backups.rpo (exit 1 when it is not).",
        f"  {PROG} backups list --stack production\n  {PROG} backups list --stack production --json\n",
    )
    listing.add_argument("action", choices=["list"], help="what to do (list)")
    listing.add_argument("--stack", required=True, help="stack whose cluster runs Velero")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    restore = _command(
        commands,
        "restore",
        "restore a namespace from a Velero backup, in place or into a new namespace",
        "Create a Velero Restore on the stack's cluster: the app namespace (or --namespace) from --backup "
        "(default: its newest completed backup), in place (objects that exist are kept) or into "
        "--to-namespace; then wait for Velero to finish it. After losing the cluster, `pulumi up` the stack "
        "first: Velero re-reads the backups from the stack's bucket within a minute.",
        f"  {PROG} restore --stack production\n"
        f"  {PROG} restore --stack production --backup velero-hourly-20261201000000 --to-namespace clipper-restored\n",
    )
    restore.add_argument("--stack", required=True, help="stack whose cluster to restore into")
    restore.add_argument("--backup", help="Backup name, as `backups list` shows it (default: newest completed)")
    restore.add_argument("--namespace", help="namespace to restore (default: the app namespace)")
    restore.add_argument("--to-namespace", help="restore into this namespace instead (a new one)")
    restore.add_argument("--wait", type=_duration, default=backups.DEFAULT_WAIT_S, metavar="DURATION",
                         help=f"wait this long for Velero to finish; 0 does not wait (default: {backups.DEFAULT_WAIT_S // 60}m)")

    drill = _command(
        commands,
        "dr-drill",
        "disaster recovery drill: delete the app namespace, re-up, restore, verify, print the RTO",
        "On a disposable stack (production is refused): delete the app namespace, `pulumi up --refresh` to "
        "re-create what the program declares, restore the namespace from its newest completed backup, verify "
        "the apps, and print the measured recovery time against the runbook's 1-2 h. What cannot run where "
        "the drill runs (object storage, Velero's controller on a local API server) is reported, not faked.",
        f"  {PROG} dr-drill --stack local-staging --yes\n",
    )
    drill.add_argument("--stack", required=True, help="a disposable stack (never production)")
    drill.add_argument("--yes", action="store_true", help="do not ask; required when stdin is not a terminal")
    drill.add_argument("--restore-wait", type=_duration, default=dr_drill.DEFAULT_RESTORE_WAIT_S, metavar="DURATION",
                       help=f"how long to wait for Velero to finish the restore (default: {dr_drill.DEFAULT_RESTORE_WAIT_S}s)")
    drill.add_argument("--watch", type=_duration, default=dr_drill.DEFAULT_VERIFY_S, metavar="DURATION",
                       help=f"verify window after the restore (default: {dr_drill.DEFAULT_VERIFY_S}s)")


def dispatch(args: argparse.Namespace) -> int:
    work_dir = args.work_dir.resolve()
    if not (work_dir / "Pulumi.yaml").is_file():
        raise BadUsage(f"--work-dir {work_dir}: no Pulumi.yaml there")
    if args.command == "history":
        return rollback.run_history(args.stack, args.json, work_dir)
    if args.command == "diff":
        return promotion.run_diff(args.source, args.target, args.apps, work_dir)
    if args.command == "promote":
        return promotion.run_promote(args.source, args.target, args.apps, args.yes, work_dir)
    if args.command == "rollback":
        return rollback.run_rollback(
            args.stack, args.to, args.steps, args.yes, work_dir, args.program, args.allow_dirty, args.dry_run
        )
    if args.command == "preflight":
        return checks.run_preflight(args.stack, work_dir, args.rollback_drill)
    if args.command == "verify":
        return verify.run_verify(args.stack, args.apps, args.watch, args.http, work_dir)
    if args.command == "rotate":
        return rotate.run_rotate(args.stack, args.app, args.timeout, work_dir)
    if args.command == "backups":
        return backups.run_list(args.stack, args.json, work_dir)
    if args.command == "restore":
        return backups.run_restore(args.stack, args.backup, args.namespace, args.to_namespace, args.wait, work_dir)
    if args.command == "recover":
        return recover.run_recover(args.stack, args.dry_run, args.yes, args.break_lock, work_dir)
    if args.command == "secrets-provider":
        return secrets_provider.run_secrets_provider(args.stack, args.to, args.dry_run, args.yes, work_dir)
    if args.command == "dr-drill":
        return dr_drill.run_dr_drill(args.stack, args.yes, args.restore_wait, args.watch, work_dir)
    return checks.run_drift(args.stack, work_dir)


def verify_after(args: argparse.Namespace) -> int:
    """promote and rollback end with `verify` of the stack they updated (not after a dry run)."""
    if args.command not in ("promote", "rollback") or getattr(args, "dry_run", False):
        return 0
    stack = args.target if args.command == "promote" else args.stack
    return verify.verify_after_update(stack, args.work_dir.resolve(), args.no_verify)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args) or verify_after(args)
    except OpsError as error:
        kind = "error" if isinstance(error, BadUsage) else "refused"
        print(f"{PROG} {args.command}: {kind}: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr, flush=True)
        return 1
