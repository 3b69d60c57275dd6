"""Websocket frames as the server sends them (RFC 6455: final, unmasked)."""

from __future__ import annotations

import struct
from typing import Final

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame carrying `payload`."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def text(data: str) -> bytes:
    return frame(OP_TEXT, data.encode())


def binary(data: bytes) -> bytes:
    return frame(OP_BINARY, data)


def close(code: int, reason: str = "") -> bytes:
    raw = reason.encode()
    if len(raw) > 123:  # a control frame carries at most 125 bytes
        raw = raw[:123].decode(errors="ignore").encode()
    return frame(OP_CLOSE, code.to_bytes(2, "big") + raw)
