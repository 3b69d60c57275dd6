"""The load tester's side of the wire contract: frame codecs, the stamped message body and URLs.

Every frame is a map with ``t``. Both subprotocols of PROTOCOL.md are spoken:
``confide.v1.msgpack`` (binary frames) and ``confide.v1.json`` (text frames).

A message body the load tester sends is a short text that carries what the
receiving side needs to check it without asking anyone::

    lt1 <n> <send_ns> <padding>

``n`` is the sender's counter in its room (1, 2, 3...; the ``cmid`` is ``m<n>``)
and ``send_ns`` is ``time.monotonic_ns()`` at the sender when the frame was
encoded. CLOCK_MONOTONIC is one clock for every process of the machine, so the
receiver subtracts it from its own reading whichever process it runs in.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import msgpack

Frame = dict[str, Any]
Encoding = Literal["msgpack", "json"]

SUBPROTOCOLS: Final[dict[Encoding, str]] = {
    "msgpack": "confide.v1.msgpack",
    "json": "confide.v1.json",
}
BODY_TAG: Final = "lt1"


class Codec:
    """Encodes and decodes frames for one subprotocol."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding: Encoding = encoding
        self.subprotocol = SUBPROTOCOLS[encoding]
        self._packer = msgpack.Packer(use_bin_type=True)

    def encode(self, frame: Frame) -> bytes | str:
        if self.encoding == "msgpack":
            return self._packer.pack(frame)
        return json.dumps(frame, separators=(",", ":"))

    def decode(self, data: bytes | str) -> Frame:
        if isinstance(data, bytes):
            value = msgpack.unpackb(data, raw=False)
        else:
            value = json.loads(data)
        if not isinstance(value, dict) or "t" not in value:
            raise ValueError("frame is not a map with t")
        return value


def decode_any(data: bytes | str) -> Frame:
    """Decode a frame of either subprotocol, by the frame's type (binary or text)."""
    if isinstance(data, bytes):
        value = msgpack.unpackb(data, raw=False)
    else:
        value = json.loads(data)
    if not isinstance(value, dict) or "t" not in value:
        raise ValueError("frame is not a map with t")
    return value


def cmid_for(n: int) -> str:
    return f"m{n}"


def n_from_cmid(cmid: object) -> int | None:
    """The sender counter inside a cmid made by :func:`cmid_for`, or None for a foreign one."""
    if isinstance(cmid, str) and cmid.startswith("m") and cmid[1:].isdigit():
        return int(cmid[1:])
    return None


def stamp_body(n: int, padding: int = 0, send_ns: int = 0) -> str:
    """A message body carrying the sender counter and the send time (monotonic ns; now if 0)."""
    body = f"{BODY_TAG} {n} {send_ns or time.monotonic_ns()}"
    if padding > 0:
        body += " " + "x" * padding
    return body


def read_stamp(body: object) -> tuple[int, int] | None:
    """``(n, send_ns)`` from a stamped body, or None when the body is not one of ours."""
    if not isinstance(body, str) or not body.startswith(BODY_TAG):
        return None
    parts = body.split(" ", 3)
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[1]), int(parts[2])


def ws_url(base: str) -> str:
    """The websocket endpoint ``/ws`` under a node's base URL (http → ws, https → wss)."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def http_url(base: str) -> str:
    """The HTTP base URL of a node given as http(s):// or ws(s)://, without a trailing slash."""
    parts = urlsplit(base)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[: -len("/ws")]
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def is_loopback(base: str) -> bool:
    """Whether a URL targets this machine only (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(http_url(base)).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")
