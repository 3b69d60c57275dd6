"""A lean websocket client for the load generator: the client side of RFC 6455 as one Protocol.

The ``websockets`` library's asyncio client costs a generator process most of
its core at about 30,000 frames a second (its sans-I/O framing in Python, an
assembler, futures and tasks per connection). This module does only what the
load tester needs, with as little as possible between the socket and the
scenario:

- :func:`connect` opens a TCP connection (``TCP_NODELAY``), sends the HTTP/1.1
  upgrade request with a random ``Sec-WebSocket-Key`` and the subprotocols it
  offers, and checks the ``101`` answer, its ``Upgrade``/``Connection`` headers,
  ``Sec-WebSocket-Accept`` and the subprotocol chosen, all within an open
  timeout. The connection *is* the protocol object (:class:`ClientConnection`),
  nothing else per connection: no task, no reader, no keepalive.
- Sending is synchronous: :meth:`ClientConnection.send` masks one frame
  (``websockets.speedups.apply_mask``, a C helper, or a pure-Python fallback)
  and hands it to the transport; :meth:`ClientConnection.send_many` does the
  same for several frames in one write (one system call). Neither waits: the
  transport buffers (no write back-pressure, unlike ``websockets``' ``send``).
- Receiving parses server frames straight from ``data_received``: 7/16/64-bit
  lengths, fragmented messages (continuation frames), text (checked UTF-8) and
  binary, ping (answered with a pong), pong, and the closing handshake (the
  server's close is answered with the same code). A message goes either to the
  handler given to :meth:`ClientConnection.handle_messages` (a plain call, the
  cheap way) or, without one, to a queue read by :meth:`ClientConnection.recv`
  and ``async for``.
- Closing: :meth:`ClientConnection.close` sends a close frame and waits (at most
  ``close_timeout``) for the server's close and for the server to end the TCP
  connection; :meth:`ClientConnection.abort` drops the connection at once. The
  close code and reason are :attr:`ClientConnection.close_code` and
  :attr:`ClientConnection.close_reason` once closed.

The exceptions mirror the ``websockets`` ones the load tester distinguishes:
:class:`InvalidHandshake` and :class:`InvalidStatus` (a refused upgrade, with
its HTTP status) while opening, :class:`ConnectionClosedOK` and
:class:`ConnectionClosedError` (both :class:`ConnectionClosed`) once the
connection is closed; ``OSError`` and ``TimeoutError`` pass through as they are.
Like ``websockets``, a close is "OK" when both close frames carried 1000, 1001
or no code, and data received after the server's close frame is discarded.
No extensions (no compression), no TLS options beyond ``wss://`` with the
default context, no proxies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

Data = bytes | str
Handler = Callable[[Data], object]

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD: Final = 64 * 1024  # the handshake response's status line and headers
NO_STATUS: Final = 1005
ABNORMAL: Final = 1006
OK_CODES: Final = frozenset((1000, 1001, NO_STATUS))

# opcodes
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN_TEXT: Final = 0x80 | TEXT
_FIN_BINARY: Final = 0x80 | BINARY

# states
CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3


def _apply_mask_py(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455, 5.3), in pure Python."""
    n = len(data)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


apply_mask: Callable[[bytes, bytes], bytes]
try:
    from websockets.speedups import apply_mask as _c_apply_mask

    apply_mask = _c_apply_mask
except ImportError:  # pragma: no cover - the C helper is part of the websockets wheel
    apply_mask = _apply_mask_py


class _MaskKeys:
    """Masking keys: four bytes at a time from a block of ``os.urandom`` (one syscall per 1,024)."""

    __slots__ = ("block", "pos")

    def __init__(self) -> None:
        self.block = b""
        self.pos = 0

    def next(self) -> bytes:
        pos = self.pos
        if pos >= len(self.block):
            self.block, pos = os.urandom(4096), 0
        self.pos = pos + 4
        return self.block[pos : pos + 4]


_keys = _MaskKeys()


def encode_frame(opcode_byte: int, payload: bytes, mask: bytes) -> bytes:
    """One masked client frame: ``opcode_byte`` is the first byte (FIN and opcode)."""
    n = len(payload)
    if n < 126:
        head = bytes((opcode_byte, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", opcode_byte, 0xFE, n)
    else:
        head = struct.pack("!BBQ", opcode_byte, 0xFF, n)
    return head + mask + apply_mask(payload, mask)


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def _valid_close_code(code: int) -> bool:
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


# -- exceptions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Close:
    """The code and reason of a close frame (1005 when the frame carried no code)."""

    code: int
    reason: str = ""


class WebSocketError(Exception):
    """Base of this module's exceptions."""


class InvalidURI(WebSocketError, ValueError):
    """The URL is not a ws:// or wss:// URL."""


class InvalidHandshake(WebSocketError):
    """The opening handshake failed (a malformed or refused answer, or a closed connection)."""


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status_code: int, reason: str = "") -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status_code}")
        self.status_code = status_code
        self.reason = reason


class ConnectionClosed(WebSocketError):
    """The connection is closed: ``rcvd`` and ``sent`` are the close frames, when there were any."""

    def __init__(self, rcvd: Close | None, sent: Close | None) -> None:
        self.rcvd = rcvd
        self.sent = sent
        super().__init__(f"connection closed: received {rcvd}, sent {sent}")

    @property
    def code(self) -> int:
        """The close code received, or 1006 when no close frame was received."""
        return self.rcvd.code if self.rcvd is not None else ABNORMAL

    @property
    def reason(self) -> str:
        return self.rcvd.reason if self.rcvd is not None else ""


class ConnectionClosedOK(ConnectionClosed):
    """Closed with 1000, 1001 or no code each way."""


class ConnectionClosedError(ConnectionClosed):
    """Closed any other way: another code, a protocol error, or no closing handshake."""


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- the connection -----------------------------------------------------------------


class ClientConnection(asyncio.Protocol):
    """One client websocket: the asyncio protocol and the API of the connection in one object."""

    __slots__ = (
        "_chunks",
        "_close_timer",
        "_closed",
        "_discard",
        "_error",
        "_frag",
        "_frag_op",
        "_frag_size",
        "_handler",
        "_have",
        "_head",
        "_key",
        "_loop",
        "_need",
        "_offered",
        "_opened",
        "_paused",
        "_queue",
        "_request",
        "_waiter",
        "close_rcvd",
        "close_sent",
        "close_timeout",
        "max_queue",
        "max_size",
        "state",
        "subprotocol",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        request: bytes,
        key: str,
        subprotocols: Sequence[str],
        close_timeout: float,
        max_size: int,
        max_queue: int,
    ) -> None:
        self._loop = loop
        self._request = request
        self._key = key
        self._offered = tuple(subprotocols)
        self.close_timeout = close_timeout
        self.max_size = max_size
        self.max_queue = max_queue
        self.transport: asyncio.Transport | None = None
        self.state = CONNECTING
        self.subprotocol: str | None = None
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self._opened: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._head = bytearray()
        self._chunks: list[bytes] = []  # an incomplete frame, in pieces
        self._have = 0  # bytes in _chunks
        self._need = 0  # bytes _chunks must reach before the next frame can be parsed
        self._frag_op = 0  # the opcode of a fragmented message in progress (0: none)
        self._frag: list[bytes] = []
        self._frag_size = 0
        self._handler: Handler | None = None
        self._error: Exception | None = None
        self._queue: deque[Data] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._discard = False  # after the server's close, an abort or a failure: ignore input
        self._close_timer: asyncio.TimerHandle | None = None

    # -- the API --------------------------------------------------------------------

    def send(self, message: Data) -> None:
        """Send one message: ``bytes`` as a binary frame, ``str`` as a text frame.

        Raises :class:`ConnectionClosed` once the closing handshake has started.
        """
        if self.state != OPEN:
            raise self._closed_exc()
        assert self.transport is not None
        if isinstance(message, str):
            frame = encode_frame(_FIN_TEXT, message.encode(), _keys.next())
        else:
            frame = encode_frame(_FIN_BINARY, bytes(message), _keys.next())
        self.transport.write(frame)

    def send_many(self, messages: Sequence[Data]) -> None:
        """Send several messages, in order, in one write (one system call instead of several)."""
        if self.state != OPEN:
            raise self._closed_exc()
        assert self.transport is not None
        frames = []
        for message in messages:
            if isinstance(message, str):
                frames.append(encode_frame(_FIN_TEXT, message.encode(), _keys.next()))
            else:
                frames.append(encode_frame(_FIN_BINARY, bytes(message), _keys.next()))
        self.transport.write(b"".join(frames))

    async def recv(self) -> Data:
        """The next message; :class:`ConnectionClosed` once closed and every message was read."""
        while True:
            if self._queue:
                message = self._queue.popleft()
                if self._paused and len(self._queue) <= self.max_queue // 4:
                    self._resume()
                return message
            if self.state == CLOSED:
                if self._error is not None:
                    raise self._error
                raise self._closed_exc()
            if self._handler is not None:
                raise RuntimeError("recv() while a message handler is set")
            if self._waiter is not None:
                raise RuntimeError("recv() is already waiting for the next message")
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def __aiter__(self) -> AsyncIterator[Data]:
        """The messages until the connection closes: it ends on an OK close, raises otherwise."""
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    async def handle_messages(self, handler: Handler) -> None:
        """Hand every message to ``handler`` (queued ones first) until the connection closes.

        The callback form of ``async for message in ws: handler(message)``: each
        message is a plain call from ``data_received``, no task switch. Returns on
        an OK close and raises :class:`ConnectionClosedError` on any other; an
        exception raised by ``handler`` aborts the connection and is raised here.
        """
        self._handler = handler
        try:
            while self._queue:
                try:
                    handler(self._queue.popleft())
                except Exception:
                    self.abort()
                    raise
            if self._paused:
                self._resume()
            await asyncio.shield(self._closed)
        finally:
            self._handler = None
        if self._error is not None:
            raise self._error
        exc = self._closed_exc()
        if not isinstance(exc, ConnectionClosedOK):
            raise exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and wait for the closing handshake and the TCP close (bounded)."""
        if self.state == OPEN:
            self._send_close(Close(code, reason), struct.pack("!H", code) + reason.encode())
        elif self.state == CONNECTING:
            self.abort()
        if not self._closed.done():
            await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        if not self._closed.done():
            await asyncio.shield(self._closed)

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        self._discard = True
        if self.state != CLOSED:
            self.state = CLOSING
        if self.transport is not None:
            self.transport.abort()

    @property
    def is_open(self) -> bool:
        """Whether messages can be sent (the closing handshake has not started)."""
        return self.state == OPEN

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    @property
    def close_code(self) -> int | None:
        """None while open; then the close code received, or 1006 when none was."""
        if self.state != CLOSED:
            return None
        return self.close_rcvd.code if self.close_rcvd is not None else ABNORMAL

    @property
    def close_reason(self) -> str | None:
        if self.state != CLOSED:
            return None
        return self.close_rcvd.reason if self.close_rcvd is not None else ""

    def _closed_exc(self) -> ConnectionClosed:
        rcvd, sent = self.close_rcvd, self.close_sent
        ok = rcvd is not None and sent is not None and rcvd.code in OK_CODES
        if ok and sent is not None and sent.code in OK_CODES:
            return ConnectionClosedOK(rcvd, sent)
        return ConnectionClosedError(rcvd, sent)

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass  # not TCP (or not a socket we may touch): nothing to tune
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == OPEN or state == CLOSING:
            if not self._discard:
                self._feed(data)
        elif state == CONNECTING:
            self._handshake(data)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if not self._opened.done():
            error = InvalidHandshake("connection closed during the opening handshake")
            if exc is not None:
                error.__cause__ = exc
            self._opened.set_exception(error)
        self._frag = []
        self._chunks = []
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    # -- the opening handshake ------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        head = self._head
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HEAD:
                self._fail_open(InvalidHandshake("handshake response headers too long"))
            return
        rest = bytes(head[end + 4 :])
        try:
            self._check_response(bytes(head[:end]))
        except InvalidHandshake as exc:
            self._fail_open(exc)
            return
        self._head = bytearray()
        self.state = OPEN
        self._opened.set_result(None)
        if rest:
            self._feed(rest)

    def _check_response(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise InvalidHandshake(f"malformed status line {lines[0][:100]!r}")
        status = int(parts[1])
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise InvalidHandshake(f"malformed header line {line[:100]!r}")
            headers.setdefault(name.lower(), []).append(value.strip())
        if status != 101:
            raise InvalidStatus(status, parts[2] if len(parts) > 2 else "")

        def tokens(name: str) -> list[str]:
            return [t.strip().lower() for v in headers.get(name, []) for t in v.split(",")]

        if "websocket" not in tokens("upgrade"):
            raise InvalidHandshake(f"Upgrade header {headers.get('upgrade')}")
        if "upgrade" not in tokens("connection"):
            raise InvalidHandshake(f"Connection header {headers.get('connection')}")
        accept = headers.get("sec-websocket-accept", [])
        if accept != [accept_key(self._key)]:
            raise InvalidHandshake(f"Sec-WebSocket-Accept {accept} does not match the key")
        if headers.get("sec-websocket-extensions"):
            raise InvalidHandshake("the server chose an extension; none was offered")
        chosen = [t.strip() for v in headers.get("sec-websocket-protocol", []) for t in
                  v.split(",")]
        if chosen:
            if len(chosen) > 1 or chosen[0] not in self._offered:
                raise InvalidHandshake(f"the server chose subprotocol {chosen}, not offered")
            self.subprotocol = chosen[0]

    def _fail_open(self, exc: InvalidHandshake) -> None:
        if not self._opened.done():
            self._opened.set_exception(exc)
        self.state = CLOSING
        self._discard = True
        if self.transport is not None:
            self.transport.abort()

    # -- frames in --------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Parse every complete frame in what arrived (after what was left of the last read)."""
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = []
        size = len(data)
        pos = 0
        max_size = self.max_size
        handler = self._handler
        try:
            while size - pos >= 2:
                b0 = data[pos]
                length = data[pos + 1]
                if length < 126:
                    start = pos + 2
                elif length == 126:
                    start = pos + 4
                    if start > size:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                elif length == 127:
                    start = pos + 10
                    if start > size:
                        break
                    length = int.from_bytes(data[pos + 2 : start], "big")
                else:
                    raise _ProtocolError(1002, "masked frame from the server")
                if length > max_size:
                    raise _ProtocolError(1009, f"frame of {length} bytes")
                end = start + length
                if end > size:
                    break
                payload = data[start:end]
                pos = end
                if b0 == _FIN_BINARY and not self._frag_op:
                    if handler is not None:
                        handler(payload)
                    else:
                        self._enqueue(payload)
                elif b0 == _FIN_TEXT and not self._frag_op:
                    try:
                        text = payload.decode()
                    except UnicodeDecodeError:
                        raise _ProtocolError(1007, "invalid UTF-8 in a text frame") from None
                    if handler is not None:
                        handler(text)
                    else:
                        self._enqueue(text)
                else:
                    self._frame(b0, payload)
                if self._discard:
                    return  # what follows a close frame, an abort or a failure is ignored
        except _ProtocolError as exc:
            self._fail(exc.code, exc.reason)
            return
        except Exception as exc:  # raised by the handler: the connection ends, and says why
            self._error = exc
            self.abort()
            return
        if pos < size:
            rest = data[pos:]
            self._chunks = [rest]
            self._have = len(rest)
            self._need = self._frame_size(rest)

    def _frame_size(self, head: bytes) -> int:
        """The length of the frame starting ``head`` (or of its header, while it is incomplete)."""
        if len(head) < 2:
            return 2
        length = head[1] & 0x7F
        if length < 126:
            return 2 + length
        if length == 126:
            return 4 if len(head) < 4 else 4 + ((head[2] << 8) | head[3])
        return 10 if len(head) < 10 else 10 + int.from_bytes(head[2:10], "big")

    def _frame(self, b0: int, payload: bytes) -> None:
        """Every frame but an unfragmented data frame: fragments, control frames, errors."""
        if b0 & 0x70:
            raise _ProtocolError(1002, "reserved bits set (no extension was negotiated)")
        fin = b0 & 0x80
        opcode = b0 & 0x0F
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                raise _ProtocolError(1002, "fragmented or long control frame")
            if opcode == PING:
                self._write_control(PONG, payload)
            elif opcode == PONG:
                pass  # no ping is ever sent: an unsolicited pong needs no answer
            elif opcode == CLOSE:
                self._on_close(payload)
            else:
                raise _ProtocolError(1002, f"reserved opcode {opcode:#x}")
            return
        if opcode == CONT:
            if not self._frag_op:
                raise _ProtocolError(1002, "continuation frame without a message")
        elif opcode == TEXT or opcode == BINARY:
            if self._frag_op:
                raise _ProtocolError(1002, "a new message inside a fragmented one")
            self._frag_op = opcode
        else:
            raise _ProtocolError(1002, f"reserved opcode {opcode:#x}")
        self._frag_size += len(payload)
        if self._frag_size > self.max_size:
            raise _ProtocolError(1009, f"message of more than {self.max_size} bytes")
        self._frag.append(payload)
        if not fin:
            return
        whole = b"".join(self._frag)
        op = self._frag_op
        self._frag, self._frag_op, self._frag_size = [], 0, 0
        if op == TEXT:
            try:
                self._deliver(whole.decode())
            except UnicodeDecodeError:
                raise _ProtocolError(1007, "invalid UTF-8 in a text message") from None
        else:
            self._deliver(whole)

    def _deliver(self, message: Data) -> None:
        """A message to the handler (its exception propagates) or to the queue."""
        if self._handler is not None:
            self._handler(message)
        else:
            self._enqueue(message)

    def _enqueue(self, message: Data) -> None:
        self._queue.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(self._queue) > self.max_queue and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        self._paused = False
        if self.transport is not None and self.state != CLOSED:
            self.transport.resume_reading()

    # -- closing ------------------------------------------------------------------------

    def _on_close(self, payload: bytes) -> None:
        if len(payload) >= 2:
            code = (payload[0] << 8) | payload[1]
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                raise _ProtocolError(1007, "invalid UTF-8 in a close reason") from None
            if not _valid_close_code(code):
                raise _ProtocolError(1002, f"invalid close code {code}")
            rcvd = Close(code, reason)
        elif payload:
            raise _ProtocolError(1002, "close frame of one byte")
        else:
            rcvd = Close(NO_STATUS, "")
        self.close_rcvd = rcvd
        self._discard = True
        self._frag, self._frag_op, self._frag_size = [], 0, 0
        if self.state == OPEN:  # answer with the same code (no reason); the server ends TCP
            self._send_close(Close(rcvd.code, ""), payload[:2])

    def _send_close(self, close: Close, payload: bytes) -> None:
        self._write_control(CLOSE, payload)
        self.close_sent = close
        self.state = CLOSING
        self._close_timer = self._loop.call_later(self.close_timeout, self._abort_late)

    def _abort_late(self) -> None:
        self._close_timer = None
        if self.state != CLOSED and self.transport is not None:
            self.transport.abort()

    def _write_control(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(0x80 | opcode, payload, _keys.next()))

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection on the server's protocol error: a close frame, then the TCP close."""
        if self.state == OPEN:
            self._write_control(CLOSE, struct.pack("!H", code) + reason.encode()[:120])
            self.close_sent = Close(code, reason)
        self.state = CLOSING
        self._discard = True
        self._frag, self._chunks = [], []
        if self.transport is not None:
            self.transport.close()


def _request(host: str, path: str, key: str, subprotocols: Sequence[str]) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    lines.append("User-Agent: confide-loadtest")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    open_timeout: float | None = 10.0,
    close_timeout: float = 2.0,
    max_size: int = 2**20,
    max_queue: int = 1024,
) -> ClientConnection:
    """Open a websocket to ``url`` (ws:// or wss://) and complete the opening handshake.

    Raises ``OSError`` when the TCP connection fails, ``TimeoutError`` when the
    whole open takes more than ``open_timeout`` seconds, :class:`InvalidStatus`
    when the server answers with another HTTP status than 101 and
    :class:`InvalidHandshake` for any other bad answer.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidURI(f"not a websocket URL: {url}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    netloc = parts.netloc.rpartition("@")[2]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    conn = ClientConnection(loop, _request(netloc, path, key, subprotocols), key, subprotocols,
                            close_timeout, max_size, max_queue)
    ssl_context = ssl.create_default_context() if secure else None
    try:
        async with asyncio.timeout(open_timeout):
            await loop.create_connection(lambda: conn, parts.hostname, port, ssl=ssl_context)
            await conn._opened
    except BaseException:
        conn.abort()
        if not conn._opened.done():
            conn._opened.cancel()  # nobody waits for it any more
        raise
    return conn
