"""Two aiortc peers (client and provider) through Confide's join gate and signaling (R10).

Real node, real websockets, real WebRTC: booking, confirmation, `live.join` on both
sides, the offer/answer through `live.signal`, audio and video frames received on
both sides, and the join-to-connected time over 20 sessions on one node.
"""

from __future__ import annotations

from live.peers import Peer, negotiate
from live.site import Site, report

RUNS = 20


async def run_session(site: Site, check_media: bool) -> float:
    """One video session from booking to `live.ended`; its join-to-connected in ms."""
    booking = await site.booked("video")
    client_ws, provider_ws, client_start, provider_start, t0 = await site.joined(booking)
    assert client_start["polite"] is True and provider_start["polite"] is False
    assert client_start["resume"] is False and provider_start["resume"] is False
    client = Peer(client_ws, booking.session, client_start)
    provider = Peer(provider_ws, booking.session, provider_start)
    try:
        await negotiate(client, provider)
        await client.connected.wait()
        await provider.connected.wait()
        assert client.connected_at is not None and provider.connected_at is not None
        elapsed = (max(client.connected_at, provider.connected_at) - t0) * 1000
        if check_media:
            await client.wait_frames(("audio", "video"), at_least=10)
            await provider.wait_frames(("audio", "video"), at_least=10)
        ended = await provider_ws.request({"t": "live.leave", "session": booking.session})
        assert ended["t"] == "live.left", ended
        assert (await client_ws.next_type("live.ended"))["reason"] == "provider_left"
    finally:
        await client.close()
        await provider.close()
        await client_ws.close()
        await provider_ws.close()
    return elapsed


async def test_r10_aiortc_peers_exchange_audio_and_video(site: Site) -> None:
    await run_session(site, check_media=True)


async def test_aiortc_join_to_connected_over_20_sessions(site: Site) -> None:
    times = [await run_session(site, check_media=(i == 0)) for i in range(RUNS)]
    report("aiortc", times)  # printed (pytest -s); the figures are in docs/live.md
    assert len(times) == RUNS
    assert max(times) < 10_000  # generous: loopback takes tens of ms
