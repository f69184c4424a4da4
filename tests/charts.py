"""Where tests find the official Helm charts: $CLIPPER_CHARTS_DIR, else the team's shared copies
beside the repository. The program itself never knows this path (it reads the variable only)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Taken out of the environment for the whole test session: the program under test then installs
# from the official repositories, as on a user's machine, unless a test hands it the folder.
CONFIGURED = os.environ.pop("CLIPPER_CHARTS_DIR", None)


def charts_dir() -> Path:
    found = Path(CONFIGURED or ROOT.parent / "shared" / "charts")
    if not found.is_dir():
        raise FileNotFoundError(f"no Helm charts at {found}: set CLIPPER_CHARTS_DIR to a folder of <chart>-<version>/ charts")
    return found
