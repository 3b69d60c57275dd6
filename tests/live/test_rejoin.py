"""A client's websocket drops mid-session and comes back within the rejoin grace.

The provider is told (`live.away`), the media between the peers keeps flowing (it does
not pass through the websocket), and the client's new connection joins again: both
sides get `live.start` with `resume: true` and freshly minted `ice_servers`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from live.peers import Peer, negotiate
from live.site import Site


async def test_client_drop_then_rejoin_within_grace_resumes(site: Site) -> None:
    booking = await site.booked("video")
    client_ws, provider_ws, client_start, provider_start, _ = await site.joined(booking)
    client = Peer(client_ws, booking.session, client_start)
    provider = Peer(provider_ws, booking.session, provider_start)
    rejoined = None
    try:
        await negotiate(client, provider)
        await client.connected.wait()
        await provider.connected.wait()

        client_ws.ws.transport.abort()  # the network goes away: no close frame, no leave
        away = await provider_ws.next_type("live.away", session=booking.session)
        assert away["user"] == booking.client
        until = datetime.fromisoformat(away["until"])
        grace = timedelta(seconds=site.node.settings.rejoin_grace_s)
        assert until == site.clock() + grace

        seen = provider.frames["video"]
        await provider.wait_frames(("video",), at_least=seen + 10)  # media goes on meanwhile

        rejoined = await site.connect(booking.client, "client")
        joined = await rejoined.request({"t": "live.join", "session": booking.session})
        assert joined["t"] == "live.joined", joined
        again_client = await rejoined.next_type("live.start", session=booking.session)
        again_provider = await provider_ws.next_type("live.start", session=booking.session)
        assert again_client["resume"] is True and again_provider["resume"] is True
        assert again_client["polite"] is True and again_provider["polite"] is False
        assert again_client["ice_servers"] == [] == again_provider["ice_servers"]  # no STUN/TURN
        # Signals flow again, both ways, on the new connection.
        await rejoined.send({"t": "live.signal", "session": booking.session,
                             "data": {"type": "candidate", "candidate": None}})
        relayed = await provider_ws.next_type("live.signal", session=booking.session)
        assert relayed["from"] == booking.client
        assert relayed["data"] == {"type": "candidate", "candidate": None}
    finally:
        await client.close()
        await provider.close()
        await provider_ws.close()
        if rejoined is not None:
            await rejoined.close()
        await client_ws.close()
