"""The load generator's own websocket client (loadtest.fastws) against a real server and a raw one.

The ``websockets`` server checks the client side (masking, handshake, close);
a raw asyncio server sends what a well-behaved server never would (split and
coalesced frames, masked or reserved frames, bad handshakes) and records what
the client wrote back.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from loadtest import fastws
from loadtest.fastws import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    accept_key,
    connect,
)
from loadtest.user import open_error_name

# -- a websockets server ------------------------------------------------------------


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        if message == "frag-text":
            await ws.send(["ab", "cd", "é"])
        elif message == "frag-binary":
            await ws.send([b"\x01", b"\x02", b"\x03"])
        elif message == "sizes":
            for n in (0, 125, 126, 300, 65535, 65536, 200_000):
                await ws.send(b"x" * n)
        elif message == "ping":
            pong = await ws.ping(b"hi")
            await asyncio.wait_for(pong, 5)
            await ws.send("ponged")
        elif message == "close-4408":
            await ws.close(4408, "bye")
            return
        elif message == "burst":
            for i in range(100):
                await ws.send(str(i))
            await ws.close(1000)
            return
        else:
            await ws.send(message)


def _refuse(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/forbidden":
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n")
    return None


@asynccontextmanager
async def echo_server() -> AsyncIterator[tuple[str, list[int | None]]]:
    """A websockets echo server; yields its URL and the close codes it received."""
    received: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            await _echo(ws)
        finally:
            await ws.wait_closed()
            received.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, subprotocols=["p1", "p2"],  # type: ignore[list-item]
                     process_request=_refuse, compression=None, ping_interval=None,
                     max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws", received


async def test_echoes_binary_and_text_and_names_the_subprotocol() -> None:
    async with echo_server() as (url, _):
        ws = await connect(url, subprotocols=["p2"])
        assert ws.subprotocol == "p2"
        ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        ws.send("héllo ✓")
        assert await ws.recv() == "héllo ✓"
        await ws.close()


async def test_reads_fragmented_messages_and_every_length_encoding() -> None:
    async with echo_server() as (url, _):
        ws = await connect(url, subprotocols=["p1"], max_size=1 << 20)
        ws.send("frag-text")
        assert await ws.recv() == "abcdé"
        ws.send("frag-binary")
        assert await ws.recv() == b"\x01\x02\x03"
        ws.send("sizes")
        for n in (0, 125, 126, 300, 65535, 65536, 200_000):
            assert await ws.recv() == b"x" * n
        ws.send(b"y" * 70_000)  # a 64-bit length from the client side too
        assert await ws.recv() == b"y" * 70_000
        await ws.close()


async def test_answers_a_ping_with_a_pong() -> None:
    async with echo_server() as (url, _):
        ws = await connect(url, subprotocols=["p1"])
        ws.send("ping")
        assert await ws.recv() == "ponged"
        await ws.close()


async def test_a_server_close_is_answered_with_its_code_and_exposed() -> None:
    async with echo_server() as (url, received):
        ws = await connect(url, subprotocols=["p1"])
        ws.send("close-4408")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (4408, "bye")
        assert (ws.close_code, ws.close_reason) == (4408, "bye")
        assert ws.close_sent is not None and ws.close_sent.code == 4408
        with pytest.raises(ConnectionClosed):
            ws.send(b"late")
        await asyncio.sleep(0.05)
        assert received == [4408]
        assert open_error_name(info.value) == "close_4408"


async def test_a_client_close_completes_the_handshake() -> None:
    async with echo_server() as (url, received):
        ws = await connect(url, subprotocols=["p1"])
        assert ws.close_code is None
        await ws.close()
        assert ws.closed and ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        with pytest.raises(ConnectionClosedOK):
            ws.send("after")
        await ws.close()  # again: nothing to do
        await asyncio.sleep(0.05)
        assert received == [1000]


async def test_async_for_ends_on_an_ok_close() -> None:
    async with echo_server() as (url, _):
        ws = await connect(url, subprotocols=["p1"])
        ws.send("burst")
        assert [m async for m in ws] == [str(i) for i in range(100)]


async def test_handle_messages_delivers_queued_messages_first_and_in_order() -> None:
    async with echo_server() as (url, _):
        ws = await connect(url, subprotocols=["p1"])
        ws.send("burst")
        await asyncio.sleep(0.1)  # everything is queued before the handler is set
        got: list[fastws.Data] = []
        await ws.handle_messages(got.append)  # returns: the server closed with 1000
        assert got == [str(i) for i in range(100)]


async def test_handle_messages_raises_on_an_error_close_and_a_failing_handler() -> None:
    async with echo_server() as (url, _):
        ws = await connect(url, subprotocols=["p1"])
        ws.send("close-4408")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.handle_messages(lambda m: None)
        assert info.value.code == 4408

        ws = await connect(url, subprotocols=["p1"])

        def fail(message: fastws.Data) -> None:
            raise ValueError(message)

        ws.send("boom")
        with pytest.raises(ValueError, match="boom"):
            await ws.handle_messages(fail)
        assert ws.closed and ws.close_code == 1006


async def test_abort_drops_the_connection_without_a_handshake() -> None:
    async with echo_server() as (url, received):
        ws = await connect(url, subprotocols=["p1"])
        ws.abort()
        with pytest.raises(ConnectionClosed):
            ws.send("x")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1006
        await asyncio.sleep(0.05)
        assert received == [1006]


async def test_a_refused_upgrade_is_invalid_status() -> None:
    async with echo_server() as (url, _):
        with pytest.raises(InvalidStatus) as info:
            await connect(url.replace("/ws", "/forbidden"), subprotocols=["p1"])
        assert info.value.status_code == 403
        assert open_error_name(info.value) == "connect_http_403"


async def test_connection_refused_is_an_oserror() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError) as info:
        await connect(f"ws://127.0.0.1:{port}/ws")
    assert open_error_name(info.value) == "connect_refused"


def test_a_url_that_is_not_a_websocket_url_is_refused() -> None:
    with pytest.raises(fastws.InvalidURI):
        asyncio.run(connect("http://127.0.0.1:1/ws"))


# -- a raw server ---------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[str]:
    """A TCP server that reads the upgrade request and runs ``script(reader, writer, key)``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = ""
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "sec-websocket-key":
                key = value.strip()
        try:
            await script(reader, writer, key)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    finally:
        server.close()
        await server.wait_closed()


def upgrade(key: str, *extra: str, accept: str | None = None) -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept if accept is not None else accept_key(key)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(b0: int, payload: bytes, mask: bytes | None = None) -> bytes:
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, bit | 127, n)
    if mask:
        return head + mask + fastws.apply_mask(payload, mask)
    return head + payload


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One frame from the client: (first byte, unmasked payload); it must be masked."""
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "client frames are masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4)
    return b0, fastws.apply_mask(await reader.readexactly(n), mask)


async def test_frames_split_byte_by_byte_and_coalesced_are_all_read() -> None:
    messages = [b"a" * 10, b"b" * 200, b"c" * 70_000, "✓ text".encode()]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        wire = b"".join(frame(0x82, m) for m in messages[:3]) + frame(0x81, messages[3])
        writer.write(upgrade(key) + wire[:1])  # the first byte of a frame with the 101
        await writer.drain()
        for i in range(1, 300):  # then byte by byte for a while
            writer.write(wire[i : i + 1])
            await writer.drain()
        writer.write(wire[300:] + wire)  # the rest, and everything again in one write
        await writer.drain()
        await reader.read()

    async with raw_server(script) as url:
        ws = await connect(url)
        assert ws.subprotocol is None
        got = [await ws.recv() for _ in range(8)]
        expected: list[fastws.Data] = [*messages[:3], messages[3].decode()]
        assert got == expected * 2
        ws.abort()


@pytest.mark.parametrize(("wire", "code"), [
    (frame(0x82, b"masked", mask=b"abcd"), 1002),
    (frame(0xC2, b"rsv1"), 1002),
    (frame(0x80, b"continuation without a start"), 1002),
    (frame(0x01, b"a") + frame(0x82, b"b"), 1002),
    (frame(0x81, b"\xff\xfe"), 1007),
    (frame(0x09, b"fragmented ping"), 1002),
    (frame(0x83, b"reserved opcode"), 1002),
    (frame(0x88, struct.pack("!H", 1005)), 1002),
    (frame(0x82, b"z" * 2000), 1009),
])
async def test_a_protocol_error_fails_the_connection_with_its_code(wire: bytes, code: int) -> None:
    sent: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade(key) + wire)
        await writer.drain()
        sent.append(await read_client_frame(reader))
        assert await reader.read() == b""  # then the client ends the TCP connection

    async with raw_server(script) as url:
        ws = await connect(url, max_size=1000)
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1006  # no close frame from the server
        assert ws.close_sent is not None and ws.close_sent.code == code
        await asyncio.sleep(0.05)
    assert len(sent) == 1 and sent[0][0] == 0x88
    assert struct.unpack("!H", sent[0][1][:2])[0] == code


async def test_ping_pong_and_close_from_a_raw_server() -> None:
    sent: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade(key, "Sec-WebSocket-Protocol: p1") + frame(0x89, b"pp")
                     + frame(0x8A, b"unsolicited") + frame(0x02, b"he") + frame(0x89, b"mid")
                     + frame(0x80, b"llo") + frame(0x88, struct.pack("!H", 1001) + b"away")
                     + frame(0x82, b"after the close: discarded"))
        await writer.drain()
        sent.extend([await read_client_frame(reader) for _ in range(3)])

    async with raw_server(script) as url:
        ws = await connect(url, subprotocols=["p0", "p1"])
        assert ws.subprotocol == "p1"
        assert await ws.recv() == b"hello"
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (1001, "away")
    assert sent == [(0x8A, b"pp"), (0x8A, b"mid"), (0x88, struct.pack("!H", 1001))]


@pytest.mark.parametrize("response", [
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: d3Jvbmc=",  # a wrong accept
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: not-offered",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate",
    "garbage",
])
async def test_a_bad_handshake_answer_is_invalid_handshake(response: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write((response.format(accept=accept_key(key)) + "\r\n\r\n").encode())
        await writer.drain()
        await reader.read()

    async with raw_server(script) as url:
        with pytest.raises(InvalidHandshake) as info:
            await connect(url, subprotocols=["p1"])
        assert not isinstance(info.value, InvalidStatus)
        assert open_error_name(info.value) == "open_failed"


async def test_a_closed_connection_during_the_handshake_is_invalid_handshake() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(b"HTTP/1.1 101 Switching")

    async with raw_server(script) as url:
        with pytest.raises(InvalidHandshake):
            await connect(url)


async def test_an_unanswered_upgrade_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        await reader.read()

    async with raw_server(script) as url:
        with pytest.raises(TimeoutError) as info:
            await connect(url, open_timeout=0.2)
        assert open_error_name(info.value) == "connect_timeout"


async def test_a_close_the_server_never_answers_is_aborted_after_the_close_timeout() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        writer.write(upgrade(key))
        await writer.drain()
        await reader.read()

    async with raw_server(script) as url:
        ws = await connect(url, close_timeout=0.2)
        t0 = asyncio.get_running_loop().time()
        await ws.close(4000, "done")
        assert 0.15 < asyncio.get_running_loop().time() - t0 < 2
        assert ws.close_code == 1006 and ws.close_sent == fastws.Close(4000, "done")


def test_the_pure_python_mask_matches_the_c_helper() -> None:
    for n in [*range(20), 125, 126, 1000, 65_537]:
        data = bytes((i * 7 + 3) % 256 for i in range(n))
        assert fastws._apply_mask_py(data, b"\x01\x80\xfe\x7f") == \
            fastws.apply_mask(data, b"\x01\x80\xfe\x7f")
    assert fastws._apply_mask_py(fastws._apply_mask_py(b"hello", b"abcd"), b"abcd") == b"hello"
