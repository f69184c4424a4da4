"""The pipeline's summary of one job, for reviewers: the GO/NO-GO table, policy findings, the
resource changes, drift and errors picked out of the job's log, with the log's end below them.

    python ci/summary.py render --title "preview staging" --status success --out summary.md pipeline.log
    python ci/summary.py gitlab-note summary.md

`render` writes Markdown (GitHub: job summary and pull-request comment; GitLab: merge-request
note). `gitlab-note` puts that Markdown on the merge request of the running pipeline, editing the
note it wrote before for the same title; it needs a GitLab token with `api` scope in
GITLAB_NOTE_TOKEN, and without one (or outside a merge-request pipeline) says so and does nothing.
Standard library only: it runs with any Python 3.9+.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ENGINE_PREFIX = "  | "  # infra.ops streams engine output with this prefix
# GitHub comments hold 65536 characters; two stacks' summaries share one comment.
DEFAULT_LIMIT = 30000
MARKER = "<!-- clipper-pipeline: {} -->"
MAX_ERRORS = 15


def clean(log: str) -> list[str]:
    """Lines without colour codes, and without the ops CLI's engine prefix."""
    lines = []
    for line in ANSI.sub("", log).replace("\r\n", "\n").split("\n"):
        lines.append(line[len(ENGINE_PREFIX):] if line.startswith(ENGINE_PREFIX) else line.rstrip())
    return lines


def block_after(lines: list[str], starts: Callable[[str], bool]) -> list[list[str]]:
    """Every block that begins with a line `starts` accepts and runs to the next blank line."""
    blocks, i = [], 0
    while i < len(lines):
        if starts(lines[i]):
            j = i + 1
            while j < len(lines) and lines[j].strip():
                j += 1
            blocks.append(lines[i:j])
            i = j
        else:
            i += 1
    return blocks


def verdict_table(lines: list[str]) -> list[str]:
    """The preflight's table: from its `check  result  detail` header to the `<stack>: GO` line."""
    for i, line in enumerate(lines):
        if re.match(r"^check\s+result\s+detail\s*$", line):
            for j in range(i + 1, len(lines)):
                if re.match(r"^\S+: (GO|NO-GO)\s*$", lines[j]):
                    return lines[i:j + 1]
            return lines[i:]
    return []


def drift_lines(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if re.search(r"resource\(s\) of \S+ changed outside Pulumi:", line):
            end = i + 1
            while end < len(lines) and lines[end].strip():
                end += 1
            return lines[i:end]
        if line.startswith("no drift:") or "has no live state" in line:
            return [line]
    return []


def error_lines(lines: list[str]) -> list[str]:
    """`error:` lines of the engine and the ops CLI's `refused:`/`error:` verdicts, once each."""
    found = []
    for line in lines:
        text = line.strip()
        if text.startswith("error:") or re.match(r"^python -m infra\.ops \w+: (refused|error):", text):
            found.append(text)
    return list(dict.fromkeys(found))[:MAX_ERRORS]


def fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def succeeded(status: str) -> bool:
    return status.lower() in {"success", "succeeded", "passed"}


def render(title: str, status: str, log: str, limit: int = DEFAULT_LIMIT) -> str:
    lines = clean(log)
    head = [MARKER.format(title), f"### {title}: {'✅' if succeeded(status) else '❌'} {status or 'unknown'}", ""]
    sections: list[tuple[str, list[str]]] = [("Preflight", verdict_table(lines))]
    policies = block_after(lines, lambda line: line.strip() == "Policies:")
    sections.append(("Policy pack", policies[-1] if policies else []))
    resources = block_after(lines, lambda line: line.strip() == "Resources:")
    sections.append(("Resources", resources[-1] if resources else []))
    sections.append(("Drift", drift_lines(lines)))
    sections.append(("Errors", error_lines(lines)))
    body = list(head)
    for name, section in sections:
        if section:
            body += [f"**{name}**", "", fence("\n".join(section)), ""]
    if not any(section for _, section in sections):
        body += ["Nothing to summarise in the log: see the job's output.", ""]
    summary = "\n".join(body)
    # The log's end, as much as fits in the limit.
    room = limit - len(summary) - 200
    tail = "\n".join(lines).strip()
    if room <= 0:
        tail = ""
    elif len(tail) > room:
        tail = "[… start of the log cut …]\n" + tail[-room:]
    if tail:
        summary += "\n<details><summary>log</summary>\n\n" + fence(tail) + "\n\n</details>\n"
    return summary + "\n"


class GitLab:
    """The few merge-request note calls `gitlab-note` makes (GitLab REST API v4)."""

    def __init__(self, api_url: str, token: str, project: str, merge_request: str) -> None:
        project_id = urllib.parse.quote(project, safe="")
        self.notes_url = f"{api_url.rstrip('/')}/projects/{project_id}/merge_requests/{merge_request}/notes"
        self.token = token

    def _call(self, method: str, url: str, body: Optional[dict] = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("PRIVATE-TOKEN", self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def find(self, marker: str) -> Optional[int]:
        for page in range(1, 6):  # the newest 500 notes
            notes = self._call("GET", f"{self.notes_url}?sort=desc&order_by=updated_at&per_page=100&page={page}")
            for note in notes or []:
                if marker in (note.get("body") or ""):
                    return int(note["id"])
            if not notes or len(notes) < 100:
                return None
        return None

    def upsert(self, body: str) -> str:
        marker = body.split("\n", 1)[0]
        note_id = self.find(marker) if marker.startswith("<!-- clipper-pipeline:") else None
        if note_id is None:
            self._call("POST", self.notes_url, {"body": body})
            return "added"
        self._call("PUT", f"{self.notes_url}/{note_id}", {"body": body})
        return f"updated note {note_id}"


def gitlab_note(path: Path, env: dict) -> int:
    token, merge_request = env.get("GITLAB_NOTE_TOKEN"), env.get("CI_MERGE_REQUEST_IID")
    if not merge_request:
        print("gitlab-note: not a merge-request pipeline: no note")
        return 0
    if not token:
        print("gitlab-note: GITLAB_NOTE_TOKEN is not set: the summary is in the job's artifacts only")
        return 0
    missing = [name for name in ("CI_API_V4_URL", "CI_PROJECT_ID") if not env.get(name)]
    if missing:
        print(f"gitlab-note: {', '.join(missing)} not set", file=sys.stderr)
        return 1
    try:
        done = GitLab(env["CI_API_V4_URL"], token, env["CI_PROJECT_ID"], merge_request).upsert(path.read_text())
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"gitlab-note: could not write the note: {error}", file=sys.stderr)
        return 1
    print(f"gitlab-note: {done} on merge request !{merge_request}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python ci/summary.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("render", help="write the Markdown summary of a job's log")
    make.add_argument("--title", required=True, help="e.g. 'preview staging'")
    make.add_argument("--status", default="", help="the job's status (success, failure, failed, canceled)")
    make.add_argument("--out", required=True, type=Path, help="Markdown file to write")
    make.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="most characters to write")
    make.add_argument("log", type=Path, help="the job's log (missing: the job stopped before writing one)")
    note = commands.add_parser("gitlab-note", help="put a summary on the pipeline's merge request")
    note.add_argument("summary", type=Path)
    return parser


def main(argv: Optional[list[str]] = None, env: Optional[dict] = None) -> int:
    args = build_parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    if args.command == "gitlab-note":
        return gitlab_note(args.summary, env)
    log = args.log.read_text(errors="replace") if args.log.is_file() else ""
    args.out.write_text(render(args.title, args.status, log, args.limit))
    if env.get("GITHUB_ACTIONS") == "true" and not succeeded(args.status):
        # An annotation on the run's page, on top of the failed job.
        errors = error_lines(clean(log))
        print(f"::error title={args.title} {args.status}::{errors[0] if errors else 'see the job summary'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
