"""The lifecycle diagrams for docs/sessions.md, rendered from the transition tables.

`python -m rooms.diagrams` prints the Markdown blocks to paste into the docs; a
test fails when the docs no longer contain the current rendering.
"""

from __future__ import annotations

from rooms.lifecycle import live_diagram
from rooms.messaging import messaging_diagram


def lifecycle_markdown() -> str:
    """Both lifecycles as fenced Mermaid blocks, live session first."""
    return (
        "### Live session\n\n```mermaid\n"
        + live_diagram()
        + "```\n\n### Messaging session\n\n```mermaid\n"
        + messaging_diagram()
        + "```\n"
    )


if __name__ == "__main__":
    print(lifecycle_markdown(), end="")
