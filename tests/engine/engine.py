"""Drive the real Pulumi CLI on a throwaway copy of the project."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from infra.simulate import apply_overrides

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["Pulumi.yaml", "Pulumi.local.yaml", "infra", "components", "policies"]


def toolchain_bin() -> Optional[Path]:
    """The bin dir holding the engine (pulumi, its Python host, the Kubernetes provider), else None."""
    found = subprocess.run(["bash", str(ROOT / "toolchain" / "build.sh"), "--print-bin", "--only", "engine"],
                           capture_output=True, text=True)
    path = Path(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip() else None
    return path if path and (path / "pulumi").exists() else None


@dataclass
class Result:
    returncode: int
    output: str

    def json(self):
        return json.loads(self.output)


@dataclass
class Project:
    dir: Path
    env: dict

    @classmethod
    def copy_of(cls, root: Path, tmp: Path, bin_dir: Path) -> "Project":
        work = tmp / "project"
        work.mkdir()
        for name in PROJECT_FILES:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src, work / name)
        (work / ".venv").symlink_to(root / ".venv")
        backend = tmp / "backend"
        backend.mkdir()
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": f"file://{backend}",
            "PULUMI_CONFIG_PASSPHRASE": "engine-tests",
            "PULUMI_HOME": str(tmp / "pulumi-home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }
        return cls(work, env)

    def pulumi(self, *args: str, timeout: int = 600) -> Result:
        done = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        return Result(done.returncode, done.stdout + done.stderr)

    def ok(self, *args: str, timeout: int = 600) -> Result:
        result = self.pulumi(*args, timeout=timeout)
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.output[-4000:]}"
        return result

    def init(self, stack: str = "local") -> None:
        self.ok("stack", "init", stack)

    def set(self, stack: str, dotted: str, value) -> None:
        """Edit Pulumi.<stack>.yaml as `pulumi config set --path clipper:<dotted>` would."""
        self.write_stack_config(stack, apply_overrides(self.stack_config(stack), {f"clipper:{dotted}": value}))

    def stack_config(self, stack: str) -> dict:
        return yaml.safe_load((self.dir / f"Pulumi.{stack}.yaml").read_text())["config"]

    def write_stack_config(self, stack: str, config: dict) -> None:
        (self.dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))

    def kubectl(self, kubeconfig: Path, *args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout
