"""The docs show the current lifecycle tables, and every rule has a test named after it."""

from __future__ import annotations

import re
from pathlib import Path

from rooms.diagrams import lifecycle_markdown
from rooms.lifecycle import LIVE_TRANSITIONS, live_diagram

ROOT = Path(__file__).resolve().parents[2]


def test_r17_docs_contain_the_generated_lifecycle_diagrams() -> None:
    docs = (ROOT / "docs" / "sessions.md").read_text()
    assert lifecycle_markdown() in docs, "run: python -m rooms.diagrams, paste into the docs"


def test_r8_diagram_is_drawn_from_the_table() -> None:
    diagram = live_diagram()
    for row in LIVE_TRANSITIONS:
        assert row.label() in diagram


def test_every_rule_of_this_issue_has_a_named_test() -> None:
    names = " ".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    found = {int(n) for n in re.findall(r"def test_r(\d+)_", names)}
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 17} <= found
