"""The two ways an ops command stops early, each with the exit code scripts rely on."""
from __future__ import annotations


class OpsError(Exception):
    """A command stopped: the message says why, `exit_code` tells scripts which kind of stop."""

    exit_code = 1


class Refused(OpsError):
    """A safety check failed, the operator declined, or the engine failed: exit 1."""

    exit_code = 1


class BadUsage(OpsError):
    """The arguments name something that does not exist or make no sense: exit 2, nothing changed."""

    exit_code = 2
