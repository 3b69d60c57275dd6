"""The websocket wire of `/ws`: RFC 6455 framing written for this server's hot path.

uvicorn parses every HTTP request; when one asks to upgrade to a websocket, uvicorn hands
the socket to the protocol class it was configured with (`ws=`), and here that class is
a `Wire` bound to the node (`wire_protocol`). From then on the bytes of the connection
go through `Wire.data_received` with no ASGI messages, no queue per direction and no
task per direction in between:

- incoming frames are unmasked (the C helper of the `websockets` package), reassembled
  when fragmented, and appended to a small inbox that the connection's one task reads
  with `receive()`; a full inbox pauses reading from the socket;
- outgoing messages are framed once (a room message once per encoding, however many
  connections it goes to) and written to the transport at the end of the event loop's
  pass, all the frames one connection got in that pass in one `write` (`Wires.flush`):
  under load, a connection often gets an ack, a message and a receipt in one pass, and
  each saved `write` is a system call and a TCP segment saved; while the transport's
  buffer is above its high-water mark they wait in a bounded list of pending frames, and
  a client that lets that list fill up is closed (4408) by its `Connection`;
- pings are sent by one node-wide heartbeat (`Wires.run`), not a timer per connection,
  and spread over the interval: each connection belongs to one of its ticks, so a node
  with thousands of connections never writes thousands of pings (and reads thousands of
  pongs) at one moment. A connection that sent nothing for a whole interval after a
  ping is dropped;
- uvicorn's graceful shutdown calls `shutdown()`: the request being handled finishes,
  then the client is closed with 1012.

Nothing here reads the content of a message; errors name the frame, never its text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from websockets.speedups import apply_mask  # C; ships in the wheels of `websockets`

from server.codec import SUBPROTOCOLS, Encoding
from server.frames import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, frame
from server.frames import close as close_frame

log = logging.getLogger("confide.wire")

PATH: Final = b"/ws"
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_NO_STATUS: Final = 1005
CLOSE_BAD_DATA: Final = 1007
CLOSE_TOO_BIG: Final = 1009

# A connection's states.
_OPENING, _OPEN, _CLOSING, _CLOSED = range(4)

# The inbox: reading pauses above `_INBOX_HIGH` unhandled messages, resumes at `_INBOX_LOW`.
_INBOX_HIGH: Final = 64
_INBOX_LOW: Final = 16


_PING: Final = frame(OP_PING, b"")


# The heartbeat interval is cut into this many ticks (each at least `_MIN_TICK_S` long);
# every connection is pinged at its own tick, once an interval.
_HEARTBEAT_TICKS: Final = 100
_MIN_TICK_S: Final = 0.01


class Wires:
    """The open websockets of one node, and the heartbeat that pings them."""

    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        ticks = max(1, min(_HEARTBEAT_TICKS, int(heartbeat_s / _MIN_TICK_S)))
        self._ticks: list[set[Wire]] = [set() for _ in range(ticks)]
        self._next_tick = 0  # the tick the next connection joins: round robin
        self._corked: list[Wire] = []  # wires with frames to write at the end of this pass

    def cork(self, wire: Wire) -> None:
        """`wire` has its first frame of this pass of the event loop: write its frames, all
        in one `write`, when the callbacks of this pass have run."""
        if not self._corked:
            asyncio.get_running_loop().call_soon(self.flush)
        self._corked.append(wire)

    def flush(self) -> None:
        corked = self._corked
        self._corked = []
        for wire in corked:
            try:
                wire.flush()
            except Exception:  # one broken transport must not hold back the others' frames
                log.exception("a websocket write failed")
                wire._abort()

    def add(self, wire: Wire) -> None:
        tick = self._next_tick
        self._next_tick = (tick + 1) % len(self._ticks)
        wire._tick = tick
        self._ticks[tick].add(wire)

    def discard(self, wire: Wire) -> None:
        self._ticks[wire._tick].discard(wire)

    async def run(self) -> None:
        """Every tick, ping that tick's connections; a connection that sent nothing since
        its last ping, a whole interval ago, is dropped."""
        loop = asyncio.get_running_loop()
        step = self.heartbeat_s / len(self._ticks)
        due = loop.time()
        tick = 0
        while True:
            due = max(due + step, loop.time() - step)  # after a long stall: no catching up
            await asyncio.sleep(max(0.0, due - loop.time()))
            for wire in tuple(self._ticks[tick]):
                wire.heartbeat()
            tick = (tick + 1) % len(self._ticks)


Serve = Callable[["Wire"], Awaitable[None]]


class Wire(asyncio.Protocol):
    """One websocket connection at the byte level (see the module's docstring)."""

    # Set by `wire_protocol` on the node's subclass.
    wires: Wires
    serve: Serve
    max_message: int
    pending_limit: int
    close_timeout_s: float

    __slots__ = ("_alive", "_buf", "_frag_op", "_frag_size", "_fragments", "_inbox",
                 "_need", "_out", "_paused", "_pending", "_reading", "_skip", "_space", "_state",
                 "_task", "_tick", "_timer", "_waiter", "connections", "encoding",
                 "shutting_down", "transport")

    def __init__(self, config: Any = None, server_state: Any = None,
                 app_state: Any = None) -> None:
        # uvicorn's graceful shutdown calls `shutdown()` on everything in this set.
        self.connections: set[Any] | None = (server_state.connections
                                             if server_state is not None else None)
        self.transport: asyncio.Transport | None = None
        self.encoding: Encoding = "msgpack"
        self._state = _OPENING
        self._buf: list[bytes] | None = None  # a partial frame, in pieces
        self._need = 0  # bytes needed before `_buf` is worth parsing again
        self._fragments: list[bytes] | None = None
        self._frag_op = 0
        self._frag_size = 0
        self._inbox: deque[bytes | str] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading = True
        self._paused = False
        self._pending: deque[bytes] | None = None
        # Frames written in this pass of the event loop, not yet given to the transport;
        # only while nothing is pending (the transport is not paused).
        self._out: list[bytes] | None = None
        self._space: asyncio.Event | None = None
        self._alive = True
        self._tick = 0  # set by `Wires.add`
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.shutting_down = False
        self._skip = 0  # bytes of a refused frame still to be thrown away

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._state != _OPEN:
            if self._state == _OPENING:
                self._handshake(data)
            elif self._state == _CLOSING:
                self._parse(data)  # still looking for the peer's close frame
            return
        self._alive = True
        self._parse(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._buf = self._fragments = self._pending = self._out = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        self._signal_space()
        self.wires.discard(self)
        if self.connections is not None:
            self.connections.discard(self)

    def pause_writing(self) -> None:
        self._paused = True
        if self._pending is None:
            self._pending = deque()

    def resume_writing(self) -> None:
        self._paused = False
        pending = self._pending
        transport = self.transport
        if pending is None or transport is None:
            return
        while pending and not self._paused:
            transport.write(pending.popleft())
        if not pending and not self._paused:
            self._pending = None
        self._signal_space()

    # -- what the connection uses ----------------------------------------------------------

    @property
    def open(self) -> bool:
        return self._state == _OPEN

    async def receive(self) -> bytes | str | None:
        """The next message; None once the connection is closing or closed."""
        while True:
            inbox = self._inbox
            if inbox:
                data = inbox.popleft()
                if not self._reading and len(inbox) <= _INBOX_LOW and self._state == _OPEN:
                    self._reading = True
                    assert self.transport is not None
                    self.transport.resume_reading()
                return data
            if self._state != _OPEN or self.shutting_down:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def write(self, data: bytes) -> bool:
        """Send one framed message; False if the pending frames are at their limit."""
        if self._state != _OPEN:
            return True  # closing: nothing more goes out, and that is not the sender's fault
        pending = self._pending
        if pending is None:
            out = self._out
            if out is None:
                self._out = [data]
                self.wires.cork(self)
            else:
                out.append(data)
            return True
        if len(pending) >= self.pending_limit:
            return False
        pending.append(data)
        return True

    def flush(self) -> None:
        """Give the frames of this pass to the transport (before anything written to it
        directly, so the order on the wire is the order of the calls)."""
        out = self._out
        if out is None:
            return
        self._out = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    async def wait_space(self) -> None:
        """Wait until at most half of the pending limit is used (or the wire is closing)."""
        while (self._pending is not None and len(self._pending) > self.pending_limit // 2
               and self._state == _OPEN):
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()

    def close(self, code: int, reason: str = "", drain: bool = True) -> None:
        """Start the closing handshake: after what is pending (`drain`) or at once.

        A peer that does not answer with its own close frame within the close timeout
        (or does not read at all) loses the connection anyway.
        """
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        transport = self.transport
        assert transport is not None
        self.flush()
        data = close_frame(code, reason)
        if drain and self._pending:
            self._pending.append(data)
        else:
            if self._pending is not None:
                self._pending.clear()
            transport.write(data)
        self._timer = asyncio.get_running_loop().call_later(self.close_timeout_s,
                                                            self._abort)
        self._wake()
        self._signal_space()

    def shutdown(self) -> None:
        """uvicorn is stopping: finish the request in hand, then close with 1012."""
        if self._state == _OPENING:
            if self.transport is not None:
                self.transport.close()
            return
        if self._state != _OPEN or self.shutting_down:
            return
        self.shutting_down = True
        if self._inbox:
            self._inbox.clear()  # not handled yet, so not acknowledged: the client resends
        self._wake()

    def heartbeat(self) -> None:
        if self._state != _OPEN:
            return
        if not self._alive:  # nothing at all since the last ping: the peer is gone
            assert self.transport is not None
            self.transport.abort()
            return
        self._alive = False
        self.write(_PING)

    # -- internals --------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _signal_space(self) -> None:
        if self._space is not None:
            self._space.set()

    def _abort(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abort()

    def _handshake(self, data: bytes) -> None:
        assert self.transport is not None
        status, headers, body = _accept(data)
        if status != 101:
            self.transport.write(_http_error(status, headers, body))
            self.transport.close()
            return
        self.encoding = SUBPROTOCOLS[headers["Sec-WebSocket-Protocol"]]
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\n" + b"".join(
                                 f"{k}: {v}\r\n".encode() for k, v in headers.items())
                             + b"\r\n")
        self._state = _OPEN
        self.wires.add(self)
        if self.connections is not None:
            self.connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            await self.serve(self)
        except Exception:
            log.exception("a websocket connection failed")
            self.close(1011, "internal error", drain=False)
        else:
            self.close(CLOSE_NORMAL)  # nobody reads from it any more: end it
        finally:
            self._task = None

    def _parse(self, data: bytes) -> None:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip:]
            self._skip = 0
        if self._buf is not None:
            self._buf.append(data)
            self._need -= len(data)
            if self._need > 0:
                return
            data = b"".join(self._buf)
            self._buf = None
        size = len(data)
        pos = 0
        while self._state != _CLOSED:
            left = size - pos
            if left < 2:
                need = 2 - left
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length >= 126:  # a 16-bit (126) or 64-bit (127) length follows
                head = 4 if length == 126 else 10
                if left < head:
                    need = head - left
                    break
                length = int.from_bytes(data[pos + 2:pos + head], "big")
            if not b1 & 0x80 or length > self.max_message:
                if not b1 & 0x80:
                    self._fail(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
                else:
                    self._fail(CLOSE_TOO_BIG, f"frame over {self.max_message} bytes")
                end = pos + head + (4 if b1 & 0x80 else 0) + length
                if end > size:  # read past the refused frame for the peer's close frame
                    self._skip = end - size
                    return
                pos = end
                continue
            end = pos + head + 4 + length
            if end > size:
                need = end - size
                break
            start = pos + head + 4
            payload = apply_mask(data[start:end], data[start - 4:start])
            pos = end
            self._frame(b0, payload)
        else:
            return
        if pos < size:
            self._buf = [data[pos:]]
            self._need = need

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if b0 & 0x70:
            self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
            return
        if opcode >= 0x8:
            if not b0 & 0x80 or len(payload) > 125:
                self._fail(CLOSE_PROTOCOL_ERROR, "control frames are short and never fragmented")
            elif opcode == OP_PING:
                if self._state == _OPEN:
                    self.write(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self._peer_closed(payload)
            elif opcode != OP_PONG:
                self._fail(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return
        if self._state != _OPEN:
            return  # data after our close frame is dropped
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                self._fail(CLOSE_PROTOCOL_ERROR, "continuation frame without a first frame")
                return
            self._fragments.append(payload)
            self._frag_size += len(payload)
            if self._frag_size > self.max_message:
                self._fail(CLOSE_TOO_BIG, f"message over {self.max_message} bytes")
                return
            if not b0 & 0x80:
                return
            payload = b"".join(self._fragments)
            opcode = self._frag_op
            self._fragments = None
        elif opcode == OP_TEXT or opcode == OP_BINARY:
            if self._fragments is not None:
                self._fail(CLOSE_PROTOCOL_ERROR, "new message before the last one ended")
                return
            if not b0 & 0x80:
                self._fragments = [payload]
                self._frag_op = opcode
                self._frag_size = len(payload)
                return
        else:
            self._fail(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return
        data: bytes | str = payload
        if opcode == OP_TEXT:
            try:
                data = payload.decode()
            except UnicodeDecodeError:
                self._fail(CLOSE_BAD_DATA, "text frame is not valid UTF-8")
                return
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(data)
        if len(inbox) >= _INBOX_HIGH and self._reading:
            self._reading = False
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def _peer_closed(self, payload: bytes) -> None:
        code = CLOSE_NO_STATUS
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
                code = CLOSE_PROTOCOL_ERROR  # a code no endpoint may send (RFC 6455 7.4)
        elif payload:
            code = CLOSE_PROTOCOL_ERROR
        transport = self.transport
        assert transport is not None
        self.flush()
        if self._state == _OPEN:  # answer with the same code, then end the connection
            self._state = _CLOSING
            if self._pending is not None:
                self._pending.clear()
            transport.write(close_frame(CLOSE_NORMAL if code == CLOSE_NO_STATUS else code))
            self._wake()
            self._signal_space()
        transport.close()

    def _fail(self, code: int, reason: str) -> None:
        log.info("websocket closed %d: %s", code, reason)
        self._fragments = None
        if self._state == _OPEN:
            self.close(code, reason, drain=False)


def _accept(request: bytes) -> tuple[int, dict[str, str], str]:
    """Check an upgrade request; the status and the response headers (or error text)."""
    lines = request.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return 400, {}, "malformed request line"
    method, target, _ = parts
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = headers[key] + b", " + value if key in headers else value
    if target.split(b"?", 1)[0] != PATH:
        return 404, {}, "no websocket endpoint here: the websocket is at /ws"
    if method != b"GET":
        return 400, {}, "a websocket handshake is a GET"
    if headers.get(b"sec-websocket-version") != b"13":
        return 426, {"Sec-WebSocket-Version": "13"}, "websocket version 13 is required"
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        return 400, {}, "Sec-WebSocket-Key must be 16 bytes in base64"
    offered = [p.strip().decode(errors="replace")
               for p in headers.get(b"sec-websocket-protocol", b"").split(b",")]
    chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
    if chosen is None:
        return 403, {}, ("offer the subprotocol confide.v1.msgpack or confide.v1.json "
                         "(Sec-WebSocket-Protocol)")
    accept = base64.b64encode(hashlib.sha1(key + _GUID, usedforsecurity=False).digest())
    return 101, {"Sec-WebSocket-Accept": accept.decode(), "Sec-WebSocket-Protocol": chosen}, ""


_REASONS: Final = {400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                   426: "Upgrade Required"}
_CODES: Final = {400: "bad_request", 403: "forbidden", 404: "not_found", 426: "bad_request"}


def _http_error(status: int, headers: dict[str, str], text: str) -> bytes:
    body = json.dumps({"error": {"code": _CODES[status], "message": text}}).encode()
    head = [f"HTTP/1.1 {status} {_REASONS[status]}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def message_cap(max_frame_bytes: int) -> int:
    """The largest websocket message read at all: above it the connection closes (1009).

    Messages between `max_frame_bytes` and this cap are read and answered `too_large`.
    """
    return max(1 << 20, 4 * max_frame_bytes)


def wire_protocol(wires: Wires, serve: Serve, *, max_message: int, pending_limit: int,
                  close_timeout_s: float) -> type[Wire]:
    """The `Wire` class uvicorn instantiates per upgraded connection of this node."""
    return type("NodeWire", (Wire,), {
        "__slots__": (), "wires": wires, "serve": staticmethod(serve),
        "max_message": max_message, "pending_limit": pending_limit,
        "close_timeout_s": close_timeout_s})
