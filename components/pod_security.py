"""The container securityContext every pod the program declares runs with: Pod Security
Standards "restricted", plus a read-only root filesystem and no privileged mode."""
from __future__ import annotations

from typing import Optional


def restricted_container(run_as: Optional[int] = None) -> dict:
    """`run_as` sets the container's user and group; leave it out where the pod sets them."""
    context = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as is not None:
        context |= {"runAsUser": run_as, "runAsGroup": run_as}
    return context
