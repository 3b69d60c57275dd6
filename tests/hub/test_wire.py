"""The websocket wire itself (server/wire.py), spoken byte by byte from a raw socket.

Handshake refusals, fragmented messages, control frames, the closing handshake and every
frame-level error, each with the close code RFC 6455 gives it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import msgpack
import pytest
from support.nodes import RunningNode, spawn, stop

from server.wire import message_cap

KEY = base64.b64encode(b"0123456789abcdef").decode()
ACCEPT = base64.b64encode(hashlib.sha1(
    (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


class Raw:
    """A websocket client with nothing hidden: frames are built and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, node: RunningNode, path: str = "/ws",
                   headers: dict[str, str] | None = None) -> tuple[Raw, bytes]:
        host, port = node.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        fields = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade",
                  "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Protocol": "confide.v1.msgpack", **(headers or {})}
        request = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items() if v) + "\r\n"
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return cls(reader, writer), head

    @classmethod
    async def welcomed(cls, node: RunningNode) -> Raw:
        """Open, say hello, and read the welcome."""
        raw, _ = await cls.open(node)
        raw.hello(node)
        assert (await raw.message())["t"] == "welcome"
        return raw

    def send(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
             rsv: int = 0) -> None:
        first = (0x80 if fin else 0) | rsv | opcode
        length = len(payload)
        if length < 126:
            head = bytes([first, (0x80 if mask else 0) | length])
        elif length < 65536:
            head = bytes([first, (0x80 if mask else 0) | 126]) + length.to_bytes(2, "big")
        else:
            head = bytes([first, (0x80 if mask else 0) | 127]) + length.to_bytes(8, "big")
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.writer.write(head + payload)

    def hello(self, node: RunningNode, user: str = "c") -> None:
        self.send(0x2, msgpack.packb({"t": "hello", "token": node.token(user)}))

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (never masked, never fragmented)."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 5)
        assert b0 & 0x80 and not b1 & 0x80
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0 & 0x0F, await self.reader.readexactly(length)

    async def message(self) -> dict[str, object]:
        """The next message; a ping on the way is answered, as every websocket client does
        (a ping swallowed unanswered, say between `hello` and `welcome`, gets the
        connection dropped one heartbeat later)."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x2:
                frame: dict[str, object] = msgpack.unpackb(payload)
                return frame
            if opcode == 0x9:
                self.send(0xA, payload)

    async def close_code(self) -> tuple[int, str]:
        """Read until the server's close frame; its code and reason."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()

    async def eof(self) -> bool:
        """The server ends the TCP connection (within 5 s)."""
        try:
            return await asyncio.wait_for(self.reader.read(), 5) is not None
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


async def test_handshake_accepts_with_the_key_digest_and_the_subprotocol(
        node: RunningNode) -> None:
    raw, head = await Raw.open(node)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert f"Sec-WebSocket-Accept: {ACCEPT}".encode() in head
    assert b"Sec-WebSocket-Protocol: confide.v1.msgpack" in head
    raw.hello(node)
    assert (await raw.message())["t"] == "welcome"
    raw.close()


@pytest.mark.parametrize(("path", "headers", "status", "says"), [
    ("/other", {}, 404, b"/ws"),
    ("/ws", {"Sec-WebSocket-Version": "8"}, 426, b"version 13"),
    ("/ws", {"Sec-WebSocket-Key": "short"}, 400, b"Sec-WebSocket-Key"),
    ("/ws", {"Sec-WebSocket-Protocol": "chat, superchat"}, 403, b"confide.v1.msgpack"),
    ("/ws", {"Sec-WebSocket-Protocol": ""}, 403, b"subprotocol"),
])
async def test_a_bad_handshake_is_refused_with_a_status_and_a_reason(
        node: RunningNode, path: str, headers: dict[str, str], status: int,
        says: bytes) -> None:
    raw, head = await Raw.open(node, path, headers)
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    if status == 426:
        assert b"Sec-WebSocket-Version: 13" in head
    body = await asyncio.wait_for(raw.reader.read(), 5)
    assert says in body and b'"error"' in body
    raw.close()


async def test_the_client_may_pick_its_preferred_subprotocol(node: RunningNode) -> None:
    raw, head = await Raw.open(node, headers={
        "Sec-WebSocket-Protocol": "chat, confide.v1.json, confide.v1.msgpack"})
    assert b"Sec-WebSocket-Protocol: confide.v1.json" in head
    raw.close()


async def test_a_fragmented_message_is_reassembled(node: RunningNode) -> None:
    raw = await Raw.welcomed(node)
    data = msgpack.packb({"t": "ping", "n": "in three parts", "id": 7})
    raw.send(0x2, data[:3], fin=False)
    raw.send(0x9, b"between the parts")  # a control frame may come between fragments
    raw.send(0x0, data[3:8], fin=False)
    raw.send(0x0, data[8:])
    assert await raw.frame() == (0xA, b"between the parts")
    assert await raw.message() == {"t": "pong", "n": "in three parts", "re": 7}
    raw.close()


async def test_many_frames_in_one_write_and_one_frame_in_many_writes(
        node: RunningNode) -> None:
    raw = await Raw.welcomed(node)
    for i in range(20):
        raw.send(0x2, msgpack.packb({"t": "ping", "n": i}))
    assert [(await raw.message())["n"] for _ in range(20)] == list(range(20))
    # A 70,000-byte frame (64-bit length) trickled in small writes.
    big = msgpack.packb({"t": "ping", "n": "big", "pad": "x" * 70_000})
    key = os.urandom(4)
    wire = bytes([0x82, 0x80 | 127]) + len(big).to_bytes(8, "big") + key + bytes(
        b ^ key[i % 4] for i, b in enumerate(big))
    for i in range(0, len(wire), 4096):
        raw.writer.write(wire[i:i + 4096])
        await raw.writer.drain()
    answer = await raw.message()
    assert answer["t"] == "error" and answer["code"] == "too_large"  # over max_frame_bytes
    raw.send(0x2, msgpack.packb({"t": "ping", "n": "after"}))
    assert (await raw.message())["n"] == "after"
    raw.close()


def _write_calls(pid: int) -> int:
    """How many write system calls the process has made (sockets and files alike)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw:"))


async def test_the_frames_of_one_pass_leave_in_one_write(tmp_path: Path) -> None:
    """50 requests arriving together are answered in order, and their 50 replies go out
    in a few writes, not one system call each (in a node of its own, whose write calls
    the kernel counts)."""
    node = spawn(tmp_path / "data")
    try:
        assert node.process is not None
        raw = await Raw.welcomed(node)
        before = _write_calls(node.process.pid)
        frames = []
        for i in range(50):
            key = os.urandom(4)
            payload = msgpack.packb({"t": "ping", "n": i})
            frames.append(bytes([0x82, 0x80 | len(payload)]) + key + bytes(
                b ^ key[j % 4] for j, b in enumerate(payload)))
        raw.writer.write(b"".join(frames))  # one segment in, as a busy client sends
        assert [(await raw.message())["n"] for _ in range(50)] == list(range(50))
        writes = _write_calls(node.process.pid) - before
        assert writes <= 5, f"{writes} writes for 50 replies"
        raw.close()
    finally:
        stop(node)


async def test_a_client_close_is_answered_with_its_code_then_the_connection_ends(
        node: RunningNode) -> None:
    raw = await Raw.welcomed(node)
    raw.send(0x8, (1000).to_bytes(2, "big") + b"bye")
    assert await raw.close_code() == (1000, "")
    assert await raw.eof()
    raw.close()


async def test_a_close_code_no_endpoint_may_send_is_answered_1002(node: RunningNode) -> None:
    raw = await Raw.welcomed(node)
    raw.send(0x8, (1005).to_bytes(2, "big"))  # 1005 means "no code": never on the wire
    assert (await raw.close_code())[0] == 1002
    assert await raw.eof()
    raw.close()


@pytest.mark.parametrize(("how", "code"), [
    ("unmasked", 1002),
    ("reserved bit", 1002),
    ("unknown opcode", 1002),
    ("continuation first", 1002),
    ("long ping", 1002),
    ("bad utf-8", 1007),
    ("too big", 1009),
])
async def test_frame_level_errors_close_with_the_rfc_code(
        node: RunningNode, how: str, code: int) -> None:
    raw = await Raw.welcomed(node)
    if how == "unmasked":
        raw.send(0x2, msgpack.packb({"t": "ping"}), mask=False)
    elif how == "reserved bit":
        raw.send(0x2, msgpack.packb({"t": "ping"}), rsv=0x40)
    elif how == "unknown opcode":
        raw.send(0x3, b"")
    elif how == "continuation first":
        raw.send(0x0, b"x")
    elif how == "long ping":
        raw.send(0x9, b"p" * 126)
    elif how == "bad utf-8":
        raw.send(0x1, b"\xff\xfe")
    else:  # the header says more than the cap: refused before the payload is read
        cap = message_cap(node.settings.max_frame_bytes)
        raw.writer.write(bytes([0x82, 0x80 | 127]) + (cap + 1).to_bytes(8, "big")
                         + os.urandom(4) + b"\0" * 1000)
    try:
        got, reason = await raw.close_code()
        assert got == code and reason
        if how != "too big":  # (there, our close frame would count as the huge payload)
            raw.send(0x8, code.to_bytes(2, "big"))
            assert await raw.eof()
    finally:
        raw.close()


async def test_a_client_that_never_answers_the_close_loses_the_connection(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from support.nodes import node_in_process

    async with node_in_process(tmp_path_factory.mktemp("d"), heartbeat_s=0.5) as node:
        raw, _ = await Raw.open(node)
        raw.send(0x2, msgpack.packb({"t": "nothello"}))
        assert (await raw.close_code())[0] == 4401
        started = asyncio.get_running_loop().time()
        assert await raw.eof()  # no close frame from us: the node ends it after its timeout
        assert asyncio.get_running_loop().time() - started < 2
        raw.close()


async def test_heartbeat_pings_are_spread_over_the_interval(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each connection is pinged once an interval, at its own moment: thousands of
    connections never get their pings (and send their pongs) in one burst."""
    from support.nodes import node_in_process

    interval = 1.0
    async with node_in_process(tmp_path_factory.mktemp("d"), heartbeat_s=interval) as node:
        loop = asyncio.get_running_loop()

        async def two_pings(raw: Raw) -> list[float]:
            seen: list[float] = []
            while len(seen) < 2:
                opcode, payload = await asyncio.wait_for(raw.frame(), 3 * interval)
                if opcode == 0x9:
                    seen.append(loop.time())
                    raw.send(0xA, payload)  # the pong keeps the connection alive
            return seen

        raws = []
        listening = []
        for i in range(40):  # (users may hold only a few connections each)
            raw, _ = await Raw.open(node)
            raw.hello(node, f"u{i}")
            assert (await raw.message())["t"] == "welcome"
            raws.append(raw)
            # answered from now on: opening the others may take longer than an interval
            listening.append(asyncio.create_task(two_pings(raw)))
        pings = await asyncio.gather(*listening)
        firsts = sorted(p[0] for p in pings)
        assert firsts[-1] - firsts[0] >= 0.25 * interval  # not one burst
        busiest = max(sum(1 for t in firsts if start <= t < start + 0.05)
                      for start in firsts)
        assert busiest <= 20  # (all 40 in one burst before)
        for first, second in pings:  # and every connection once an interval
            assert abs(second - first - interval) < 0.3 * interval
        for raw in raws:
            raw.close()
