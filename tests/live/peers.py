"""aiortc peers driven through Confide's signaling, with synthetic audio and video.

aiortc gathers every candidate inside `setLocalDescription` and does not trickle, so
a peer sends its complete offer or answer SDP (candidates included) as one
`live.signal {data: {type, sdp}}`. The impolite side (the provider, see
docs/live.md) makes the offer: it is the offer perfect negotiation keeps when both
sides offer at once, and aiortc cannot roll back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from array import array
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import (
    AudioStreamTrack,
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)
from av import AudioFrame, VideoFrame
from support.client import Client

SAMPLE_RATE = 8000
PTIME = 0.02


class Tone(AudioStreamTrack):
    """A 440 Hz sine, 20 ms frames of 16-bit mono at 8 kHz, in real time."""

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._t0: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(SAMPLE_RATE * PTIME)
        if self._t0 is None:
            self._t0 = time.time()
        else:
            await asyncio.sleep(self._t0 + self._samples / SAMPLE_RATE - time.time())
        pcm = array("h", (int(8000 * math.sin(2 * math.pi * 440 * (self._samples + i)
                                               / SAMPLE_RATE)) for i in range(n)))
        frame = AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm.tobytes())
        frame.pts = self._samples
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._samples += n
        return frame


class Pattern(VideoStreamTrack):
    """Small 160x120 frames whose brightness moves with time, 30 frames a second."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        luma = 16 + (self._count * 7) % 220
        for plane, value in zip(frame.planes, (luma, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        self._count += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


def configuration(ice_servers: list[dict[str, Any]], relay: bool = False) -> RTCConfiguration:
    """The `ice_servers` of a `live.start` as aiortc takes them (never aiortc's default)."""
    servers = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                            credential=s.get("credential")) for s in ice_servers]
    policy = RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


class Peer:
    """One side's peer connection, its websocket, and the frames it has received."""

    def __init__(self, ws: Client, session: str, start: dict[str, Any], modality: str = "video",
                 relay: bool = False) -> None:
        self.ws = ws
        self.session = session
        self.polite: bool = start["polite"]
        self.pc = RTCPeerConnection(configuration(start["ice_servers"], relay))
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.connected = asyncio.Event()
        self.connected_at: float | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Event()
        self._tracks: list[MediaStreamTrack] = []

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected" and not self.connected.is_set():
                self.connected_at = time.perf_counter()
                self.connected.set()

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            task = asyncio.get_running_loop().create_task(self._read(track))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

        if modality in ("audio", "video"):
            self.add(Tone())
        if modality == "video":
            self.add(Pattern())
        if modality == "chat":
            self.pc.createDataChannel("chat")

    def add(self, track: MediaStreamTrack) -> None:
        self._tracks.append(track)
        self.pc.addTrack(track)

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[track.kind] += 1
                self._arrived.set()

    async def signal(self, data: dict[str, Any]) -> None:
        await self.ws.send({"t": "live.signal", "session": self.session, "data": data})

    async def offer(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        local = self.pc.localDescription
        await self.signal({"type": local.type, "sdp": local.sdp})

    async def next_signal(self, kind: str) -> dict[str, Any]:
        frame = await self.ws.next(lambda f: f.get("t") == "live.signal"
                                   and f["data"].get("type") == kind)
        assert frame["session"] == self.session
        return frame["data"]  # type: ignore[no-any-return]

    async def answer(self) -> None:
        """Take the peer's offer and answer it."""
        offer = await self.next_signal("offer")
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        await self.signal({"type": local.type, "sdp": local.sdp})

    async def take_answer(self) -> None:
        answer = await self.next_signal("answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def wait_frames(self, kinds: tuple[str, ...], at_least: int = 1,
                          timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while any(self.frames[k] < at_least for k in kinds):
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        for track in self._tracks:
            track.stop()
        await self.pc.close()
        for task in list(self._readers):
            task.cancel()
        for task in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def negotiate(client: Peer, provider: Peer) -> None:
    """Offer from the impolite side, answer from the polite one, through the node."""
    assert client.polite and not provider.polite
    await asyncio.gather(provider.offer(), client.answer())
    await provider.take_answer()
