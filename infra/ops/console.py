"""What an operator sees: tables, engine progress lines, and the confirmation prompt."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence, TextIO

from infra.ops.errors import Refused

ENGINE_PREFIX = "  | "


def _cell(value: object) -> str:
    """One line per cell: multi-line text (engine errors) is joined with ' / '."""
    if value is None:
        return ""
    return " / ".join(part.strip() for part in str(value).strip().splitlines() if part.strip())


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def say(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def step(text: str) -> None:
    """A phase of the command starting: `==> preview local-production`."""
    print(f"==> {text}", flush=True)


def engine_output(line: str) -> None:
    """Stream one line of engine output as it arrives (the Automation API's `on_output`)."""
    for part in line.rstrip("\n").split("\n"):
        print(f"{ENGINE_PREFIX}{part}", flush=True)


def confirm(
    question: str,
    assume_yes: bool,
    stdin: Optional[TextIO] = None,
    ask: Optional[Callable[[str], str]] = None,
) -> None:
    """Go on only with `--yes` or a `yes` typed at a terminal; raise Refused otherwise."""
    if assume_yes:
        return
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise Refused(f"{question}: not confirmed (no terminal to ask on); pass --yes to confirm non-interactively")
    try:
        answer = (ask or input)(f"{question}? Type 'yes' to continue: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() != "yes":
        raise Refused("not confirmed: nothing was deployed")
