"""Cloud resource names that stay readable yet fit each cloud's length limit."""
from __future__ import annotations

import hashlib


def bounded_name(*parts: str, limit: int, separator: str = "-") -> str:
    """`parts` joined; if too long, truncated with a short hash of the full name so names stay unique."""
    full = separator.join(p for p in parts if p)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[: limit - len(digest) - 1].rstrip(separator)}{separator}{digest}"
