"""Fixtures of the session endpoint tests: `site`, a node on a `FakeClock` at `T0`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sessions.site import NODE_SETTINGS, T0, Site
from support.nodes import FakeClock, node_in_process


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def site(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Site]:
    async with node_in_process(tmp_path / "data", clock=clock, **NODE_SETTINGS) as running, \
            httpx.AsyncClient(base_url=running.url) as http:
        yield Site(running, http, clock)
