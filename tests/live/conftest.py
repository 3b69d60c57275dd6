"""Fixtures of the live-media tests: a node with the join page, on a clock set at real time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from live.site import Site, first_start, live_node, now_utc
from support.nodes import FakeClock


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    now = now_utc()
    clock = FakeClock(now)
    async with live_node(tmp_path / "data", clock) as node, \
            httpx.AsyncClient(base_url=node.url) as http:
        yield Site(node, http, clock, first_start(now))
