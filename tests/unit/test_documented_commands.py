"""Every `python -m infra.ops` and `make` command the README and docs/ give, as written, is one
the ops CLI's parser and the Makefile accept: a documented command that needs extra arguments, or
names a flag, choice, stack file or target that does not exist, fails here. Square brackets are
the docs' notation for optional parts: each is checked without them and with all of them.
Placeholders (`S`, `<stack>`, `...`) are written where the reader picks; such commands are checked
for their flags only. Engine tests run the commands themselves (test_ops*, test_dr_drill,
test_secrets_provider_change, test_recover_killed_up, test_pipeline_commands, test_bench_make)."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from infra.ops.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPS = re.compile(r"^(?:\$ )?(?:\.venv/bin/)?python -m infra\.ops\b(.*)$")
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|^[A-Z]$|^[A-Z]+$")
STACKS = {p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml")}


def _commands() -> list[tuple[str, str]]:
    """(where, command) for each command in an inline code span or a fenced block line."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
        lines = [line.strip() for block in fenced for line in block.splitlines()]
        spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
        for command in lines + spans:
            command = command.split("  #")[0].strip()
            if OPS.match(command) or command.startswith("make "):
                found.append((f"{doc.relative_to(ROOT)}: {command}", command))
    return sorted(set(found))


def _variants(command: str) -> list[str]:
    """The command without its [optional] parts, and with all of them."""
    if "[" not in command:
        return [command]
    return [re.sub(r"\s*\[[^\]]*\]", "", command), re.sub(r"\[([^\]]*)\]", r"\1", command)]


COMMANDS = _commands()
OPS_COMMANDS = [(where, c) for where, c in COMMANDS if OPS.match(c)]
MAKE_COMMANDS = [(where, c) for where, c in COMMANDS if c.startswith("make ")]


def test_the_docs_give_commands():
    assert len(OPS_COMMANDS) > 20 and len(MAKE_COMMANDS) > 10


@pytest.mark.parametrize("command", [c for _, c in OPS_COMMANDS], ids=[w for w, _ in OPS_COMMANDS])
def test_ops_command_parses_as_written(command):
    words = shlex.split(OPS.match(command).group(1))
    if not words or PLACEHOLDER.search(words[0]):
        pytest.skip("names the CLI itself, or a command the reader picks")
    for variant in _variants(command):
        argv = shlex.split(OPS.match(variant).group(1))
        parsed = _parse(argv, variant)
        for attribute in ("stack", "source", "target"):
            stack = getattr(parsed, attribute, None)
            if isinstance(stack, str) and not PLACEHOLDER.search(stack):
                assert stack in STACKS, f"{variant}: no Pulumi.{stack}.yaml"


def _parse(argv: list[str], command: str):
    if "--help" in argv:
        argv = [a for a in argv if a != "--help"]
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"`{command}` as written: the ops parser exits {exit_.code}")


@pytest.mark.parametrize("command", [c for _, c in MAKE_COMMANDS], ids=[w for w, _ in MAKE_COMMANDS])
def test_make_command_names_a_target(command):
    words = [w for w in shlex.split(command)[1:] if "=" not in w and not w.startswith("-")]
    if any(PLACEHOLDER.search(w) for w in words):
        pytest.skip("placeholder")
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    assert set(words) <= targets, f"{command}: no Makefile target {sorted(set(words) - targets)}"
    ops_args = re.search(r'ARGS="([^"]*)"', command)
    if ops_args and "..." not in ops_args.group(1):
        _parse(shlex.split(ops_args.group(1)), command)
    dry = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, f"{command}: make -n says {dry.stderr.strip()}"
