"""Summarise a folder of rendered manifests: what `make up` wrote in render mode."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import yaml


def rendered_objects(directory: Path) -> list[dict]:
    docs = []
    for path in sorted(directory.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.rendered", description=__doc__)
    parser.add_argument("directory", type=Path, help="the stack's existing.renderDir")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"nothing rendered at {args.directory}", file=sys.stderr)
        return 1
    docs = rendered_objects(args.directory)
    kinds = Counter(d.get("kind", "?") for d in docs)
    print(f"{len(docs)} objects rendered to {args.directory}:")
    for kind, count in sorted(kinds.items()):
        print(f"  {count:4d}  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
