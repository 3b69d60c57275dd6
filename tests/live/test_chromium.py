"""Two headless Chromium pages on the node's join page (`/live/{session}`), real media.

Fake camera and microphone; the page does perfect negotiation with the `polite` flag of
`live.start`. Both pages reach `connected` and decode video from the other side.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from live.browser import both_sides, chromium, join_to_connected_ms
from live.site import Site, report
from playwright.async_api import Browser

RUNS = 20
BUDGET_S = 60.0


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def test_r10_two_chromium_pages_connect_and_decode_video(site: Site,
                                                               browser: Browser) -> None:
    booking = await site.booked("video")
    async with both_sides(browser, site, booking) as (client, provider):
        await join_to_connected_ms(client, provider)
        await client.wait("c.framesDecoded > 0 && c.audioPacketsReceived > 0")
        await provider.wait("c.framesDecoded > 0 && c.audioPacketsReceived > 0")
        a, b = await client.state(), await provider.state()
        assert (a["polite"], b["polite"]) == (True, False)
        assert a["errors"] == [] and b["errors"] == [], (a["errors"], b["errors"])
        await provider.page.evaluate("() => window.confide.leave()")
        await client.wait("c.phase === 'ended'")


async def test_chromium_join_to_connected(site: Site, browser: Browser) -> None:
    times: list[float] = []
    began = time.monotonic()
    while len(times) < RUNS and time.monotonic() - began < BUDGET_S:
        booking = await site.booked("video")
        async with both_sides(browser, site, booking) as (client, provider):
            times.append(await join_to_connected_ms(client, provider))
            await provider.page.evaluate("() => window.confide.leave()")
            await client.wait("c.phase === 'ended'")
    report("chromium", times)  # printed (pytest -s); the figures are in docs/live.md
    assert len(times) >= 5
