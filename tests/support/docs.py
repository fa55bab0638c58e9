"""What the docs promise, read by tests that hold the code to it."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def documented_audit_actions() -> set[str]:
    """The actions of docs/production.md's table "What each audit entry means" (a row may name
    several: `run.approve`, `run.reject`, `run.signal`)."""
    text = (DOCS / "production.md").read_text()
    section = text.split("### What each audit entry means", 1)[1].split("\n#", 1)[0]
    actions: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and cells[1].strip() not in ("action", "---"):
            actions.update(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", cells[1]))
    return actions
