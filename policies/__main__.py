"""Entry point the Pulumi CLI runs (as `python <this directory>`): it only builds the PolicyPack.

PolicyPack() starts the analyzer server and never returns, so rules live in other modules where
tests can import them.
"""

import os
import sys

# `python policies` puts this directory, not the repository root, on sys.path; the rules import
# each other as `policies.*`, the same way tests and the program's test suite import them.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pulumi_policy import PolicyPack  # noqa: E402

from policies.pack import ALL_RULES, PACK_DESCRIPTION, PACK_NAME  # noqa: E402

PolicyPack(name=PACK_NAME, policies=ALL_RULES, description=PACK_DESCRIPTION)
