"""The baseline relay: a bare ``websockets`` server with no storage, no auth and no rules.

It speaks just enough of PROTOCOL.md for the chat scenarios and is "the floor
of cost": what relaying a message costs in Python on this machine before any
durability, authorisation or session rule is paid for. The benchmark reports
Confide's throughput as a ratio to it, measured in the same run.

- ``hello {token}`` is accepted whatever the token; the user *is* the token.
- ``sub {room, since?}``: ``subbed {room, head}``; with ``since``, the messages
  after it that are still in the room's short in-memory window (the last
  :data:`WINDOW` messages; enough for a resume within a test run).
- ``send``: ``ack`` with the room's in-memory counter, and ``msg`` to the other
  subscribers of the room. A repeated ``cmid`` within the window answers the
  same seq with ``dup: true`` and forwards nothing.
- ``typing`` and ``read`` are relayed, ``ping`` answered with ``pong``.
- ``GET /healthz`` answers 200.

Run it with ``python -m loadtest.relay --port 0``; it prints
``relay listening on HOST:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus

import uvloop
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from loadtest.wire import SUBPROTOCOLS, Codec, Encoding, Frame

WINDOW = 4096
_ENCODINGS: dict[str, Encoding] = {v: k for k, v in SUBPROTOCOLS.items()}


@dataclass
class Room:
    seq: int = 0
    members: dict[ServerConnection, Codec] = field(default_factory=dict)
    window: deque[Frame] = field(default_factory=lambda: deque(maxlen=WINDOW))
    cmids: dict[tuple[str, str], int] = field(default_factory=dict)


class Relay:
    """The relay's whole state: rooms, in memory."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room()
        return room

    async def handle(self, ws: ServerConnection) -> None:
        encoding = _ENCODINGS.get(ws.subprotocol or "")
        if encoding is None:
            await ws.close(4400, "no subprotocol")
            return
        codec = Codec(encoding)
        user = ""
        joined: list[Room] = []
        try:
            async for data in ws:
                try:
                    frame = codec.decode(data)
                except ValueError:
                    await ws.close(4400, "undecodable")
                    return
                if frame.get("t") == "hello":
                    user = str(frame.get("token", ""))
                reply = self.on_frame(ws, codec, user, frame, joined)
                for out in reply if isinstance(reply, list) else [reply]:
                    await ws.send(codec.encode(out))
        except ConnectionClosed:
            pass
        finally:
            for room in joined:
                room.members.pop(ws, None)

    def on_frame(
        self, ws: ServerConnection, codec: Codec, user: str, frame: Frame, joined: list[Room]
    ) -> Frame | list[Frame]:
        kind = frame.get("t")
        re = frame.get("id")
        if kind == "hello":
            return {"t": "welcome", "user": user, "role": "client", "node": "relay",
                    "heartbeat_s": 30, "rooms": []}
        if kind == "ping":
            return {"t": "pong", "n": frame.get("n")}
        name = frame.get("room")
        if not isinstance(name, str):
            return {"t": "error", "re": re, "code": "bad_request", "message": "room"}
        room = self.room(name)
        if kind == "send":
            cmid = str(frame.get("cmid"))
            seq = room.cmids.get((user, cmid))
            if seq is not None:
                return {"t": "ack", "room": name, "seq": seq, "cmid": cmid, "ts": time.time(),
                        "dup": True, "re": re}
            room.seq += 1
            msg = {"t": "msg", "room": name, "seq": room.seq, "from": user, "kind": "text",
                   "body": frame.get("body"), "ts": time.time(), "cmid": cmid}
            if len(room.window) == WINDOW:
                old = room.window[0]
                room.cmids.pop((old["from"], old["cmid"]), None)
            room.window.append(msg)
            room.cmids[(user, cmid)] = room.seq
            self.forward(ws, room, msg)
            return {"t": "ack", "room": name, "seq": room.seq, "cmid": cmid, "ts": msg["ts"],
                    "dup": False, "re": re}
        if kind == "sub":
            since = frame.get("since")
            backlog: list[Frame] = []
            if isinstance(since, int):
                backlog = [m for m in room.window if m["seq"] > since]
            room.members[ws] = codec
            joined.append(room)
            return [*backlog, {"t": "subbed", "room": name, "head": room.seq, "re": re}]
        if kind == "unsub":
            room.members.pop(ws, None)
            return {"t": "unsubbed", "room": name, "re": re}
        if kind == "typing":
            on = frame.get("on")
            self.forward(ws, room, {"t": "typing", "room": name, "user": user, "on": on})
            return []
        if kind == "read":
            seq = frame.get("seq")
            self.forward(ws, room, {"t": "read", "room": name, "user": user, "seq": seq})
            return []
        return {"t": "error", "re": re, "code": "bad_request", "message": "unknown type"}

    def forward(self, sender: ServerConnection, room: Room, frame: Frame) -> None:
        """Send a frame to the room's other members without waiting on their sockets."""
        by_codec: dict[Encoding, list[ServerConnection]] = {}
        for ws, codec in room.members.items():
            if ws is not sender:
                by_codec.setdefault(codec.encoding, []).append(ws)
        for encoding, conns in by_codec.items():
            broadcast(conns, Codec(encoding).encode(frame))


def _http(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if request.path.split("?")[0] != "/ws":
        return Response(404, "Not Found", Headers(), b"not found\n")
    return None


async def start_relay(host: str = "127.0.0.1", port: int = 0) -> Server:
    """Start a relay in this event loop; the caller closes the returned server."""
    relay = Relay()
    return await serve(
        relay.handle,
        host,
        port,
        subprotocols=list(SUBPROTOCOLS.values()),  # type: ignore[arg-type]
        process_request=_http,
        compression=None,
        ping_interval=None,
        max_queue=1024,
        backlog=4096,
    )


async def _main(host: str, port: int) -> None:
    server = await start_relay(host, port)
    bound = next(iter(server.sockets)).getsockname()
    print(f"relay listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    uvloop.run(_main(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
