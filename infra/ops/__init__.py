"""Day-2 operations on the clipper stacks: history, promotion, rollback, preflight, drift.

`python -m infra.ops --help` lists the commands. Everything goes through the Pulumi Automation API
against the real project (Pulumi.yaml and Pulumi.<stack>.yaml in the repo root), so a promotion or a
rollback is an ordinary `pulumi up` recorded in the stack's history, never a state import.
"""
