"""Relay only, through a real coturn started here, with the credentials Confide issued.

coturn runs with `use-auth-secret` on a free UDP port of 127.0.0.1; the node has
`turn_urls` and `turn_secret`. Both peers refuse every candidate but relayed ones, so
connecting at all proves the `ice_servers` of `live.start` (username
`<expiry>:<user>`, HMAC credential) were accepted by coturn; its log shows the
allocations, and Chromium's stats show a relay candidate pair.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from live.browser import both_sides, chromium, join_to_connected_ms
from live.peers import Peer, negotiate
from live.site import Coturn, Site, coturn, first_start, live_node, now_utc
from support.nodes import FakeClock

ALLOCATED = re.compile(r"ALLOCATE processed, success")


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Coturn]:
    with coturn(tmp_path / "coturn") as running:
        yield running


@pytest.fixture
async def turn_site(tmp_path: Path, turn: Coturn) -> AsyncIterator[Site]:
    now = now_utc()
    clock = FakeClock(now)
    async with live_node(tmp_path / "data", clock, turn_urls=turn.url,
                         turn_secret=turn.secret) as node, \
            httpx.AsyncClient(base_url=node.url) as http:
        yield Site(node, http, clock, first_start(now))


def allocations(turn: Coturn) -> list[str]:
    return [line for line in turn.log_text().splitlines() if ALLOCATED.search(line)]


async def test_aiortc_relay_only_through_coturn(turn_site: Site, turn: Coturn) -> None:
    booking = await turn_site.booked("video")
    client_ws, provider_ws, client_start, provider_start, _ = await turn_site.joined(booking)
    for start, user in ((client_start, booking.client), (provider_start, booking.provider)):
        [server] = start["ice_servers"]
        assert server["urls"] == [turn.url]
        assert server["username"].endswith(":" + user) and server["credential"]
    client = Peer(client_ws, booking.session, client_start, relay=True)
    provider = Peer(provider_ws, booking.session, provider_start, relay=True)
    try:
        await negotiate(client, provider)
        for peer in (client, provider):
            sdp = peer.pc.localDescription.sdp
            candidates = [x for x in sdp.splitlines() if x.startswith("a=candidate:")]
            assert candidates and all(" typ relay" in x for x in candidates), candidates
        await client.connected.wait()
        await provider.connected.wait()
        await client.wait_frames(("audio", "video"), at_least=10)
        await provider.wait_frames(("audio", "video"), at_least=10)
    finally:
        await client.close()
        await provider.close()
        await client_ws.close()
        await provider_ws.close()
    assert len(allocations(turn)) >= 2, turn.log_text()[-3000:]


async def test_chromium_relay_only_through_coturn(turn_site: Site, turn: Coturn) -> None:
    booking = await turn_site.booked("video")
    async with chromium() as browser, \
            both_sides(browser, turn_site, booking, relay=True) as (client, provider):
        elapsed = await join_to_connected_ms(client, provider)
        for side in (client, provider):
            await side.wait("c.framesDecoded > 0 && c.localCandidateType !== null")
            state = await side.state()
            assert state["relayOnly"] is True
            assert (state["localCandidateType"], state["remoteCandidateType"]) == (
                "relay", "relay"), state
        print(f"chromium relay: join-to-connected {elapsed:.0f} ms")
    assert len(allocations(turn)) >= 2, turn.log_text()[-3000:]
