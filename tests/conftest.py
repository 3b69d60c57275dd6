"""Fixtures shared by the whole suite: a real node on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.nodes import RunningNode, node_in_process


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with node_in_process(tmp_path / "data") as running:
        yield running
