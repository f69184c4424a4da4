"""Drive the real Pulumi CLI (and the ops CLI) on a throwaway copy of the project, with its own
file backend, so tests never touch the repo's stack files or the user's state."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from infra.simulate import apply_overrides

ROOT = Path(__file__).resolve().parents[2]
# The local stacks' secrets are encrypted with the documented local-only passphrase.
LOCAL_PASSPHRASE = "clipper-local"


def toolchain_bin() -> Optional[Path]:
    """The bin dir holding the engine (pulumi, its Python host, the Kubernetes provider): ours,
    built by toolchain/, else a user's own `pulumi` install; None when there is neither."""
    found = subprocess.run(["bash", str(ROOT / "toolchain" / "build.sh"), "--print-bin", "--only", "engine"],
                           capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip():
        return Path(found.stdout.strip())
    installed = shutil.which("pulumi")
    return Path(installed).parent if installed else None


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self):
        return json.loads(self.stdout)


@dataclass
class Project:
    dir: Path
    env: dict

    @classmethod
    def copy_of(cls, root: Path, base: Path, bin_dir: Path, with_policies: bool = True) -> "Project":
        work, backend = base / "project", base / "backend"
        work.mkdir(parents=True)
        backend.mkdir()
        for src in [root / "Pulumi.yaml", *root.glob("Pulumi.local*.yaml")]:
            shutil.copy(src, work / src.name)
        for name in ("infra", "components", "policies"):
            shutil.copytree(root / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        if not with_policies:
            (work / "policies" / "PulumiPolicy.yaml").unlink()
        (work / ".venv").symlink_to(root / ".venv")
        return cls(work, cls._env(base, bin_dir))

    @staticmethod
    def _env(base: Path, bin_dir: Path) -> dict:
        return {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": f"file://{base / 'backend'}",
            "PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE,
            "PULUMI_HOME": str(base / "pulumi-home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }

    def clone(self, base: Path) -> "Project":
        """The same project and backend state, somewhere else (the file backend is just files)."""
        for name in ("project", "backend"):
            shutil.copytree(self.dir.parent / name, base / name, symlinks=True)
        return type(self)(base / "project", self._env(base, Path(self.env["PATH"].split(os.pathsep)[0])))

    def _run(self, command: list[str], cwd: Path, timeout: int) -> Result:
        done = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return Result(done.returncode, done.stdout, done.stderr)

    def pulumi(self, *args: str, timeout: int = 600) -> Result:
        return self._run(["pulumi", *args, "--non-interactive"], self.dir, timeout)

    def ok(self, *args: str, timeout: int = 600) -> Result:
        result = self.pulumi(*args, timeout=timeout)
        assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.output[-4000:]}"
        return result

    def ops(self, *args: str, timeout: int = 600) -> Result:
        """`python -m infra.ops` from the repo, pointed at this copy."""
        return self._run([sys.executable, "-m", "infra.ops", "--work-dir", str(self.dir), *args], ROOT, timeout)

    def init(self, stack: str = "local") -> None:
        self.ok("stack", "init", stack)

    def set(self, stack: str, dotted: str, value) -> None:
        """Edit Pulumi.<stack>.yaml as `pulumi config set --path clipper:<dotted>` would."""
        self.write_stack_config(stack, apply_overrides(self.stack_config(stack), {f"clipper:{dotted}": value}))

    def stack_config(self, stack: str) -> dict:
        return yaml.safe_load((self.dir / f"Pulumi.{stack}.yaml").read_text())["config"]

    def write_stack_config(self, stack: str, config: dict) -> None:
        path = self.dir / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text()) if path.exists() else {}
        path.write_text(yaml.safe_dump({**document, "config": config}, sort_keys=False))

    def outputs(self, stack: str) -> dict:
        return self.ok("stack", "output", "--json", "--show-secrets", "--stack", stack).json()


def preview_changes(preview_json: dict) -> dict[str, str]:
    """{urn: op} for every step of a `pulumi preview --json` that is not a no-op."""
    return {s["urn"]: s["op"] for s in preview_json.get("steps", []) if s["op"] not in ("same", "read")}


def kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout
