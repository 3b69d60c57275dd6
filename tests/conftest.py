"""Fixtures shared by the whole suite: a real node on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.nodes import RunningNode, node_in_process


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    """A node on the embedded default, with rate limits raised so tests can send fast."""
    async with node_in_process(tmp_path / "data", rate_limit_per_s=100_000,
                               rate_limit_burst=100_000) as running:
        yield running
