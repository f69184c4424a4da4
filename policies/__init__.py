"""The clipper policy pack: rules, their configuration per stack, and an in-process evaluator.

Importing this package never starts the policy server; only ``python policies`` (the CLI's way of
running the pack, see ``__main__.py``) does.
"""
