"""Frames on the wire: the two encodings of protocol v1 and the checks on client fields.

A frame is a map with `t`. `confide.v1.msgpack` carries one msgpack map per binary
frame, `confide.v1.json` one JSON object per text frame. `decode` raises
`ProtocolViolation` (close 4400) for anything that is not such a map; the field readers
raise `BadRequest` naming the field (an `error` reply, the connection lives on).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgpack

from server import frames
from server.errors import BadRequest, ProtocolViolation, TooLarge

Encoding = Literal["msgpack", "json"]
SUBPROTOCOLS: Final[dict[str, Encoding]] = {
    "confide.v1.msgpack": "msgpack",
    "confide.v1.json": "json",
}
MAX_ID_CHARS = 64
# JSON nested deeper than this is undecodable (a fixed limit, not Python's recursion limit).
MAX_JSON_DEPTH = 64
Frame = dict[str, Any]

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# A packer per thread, reused: `msgpack.packb` makes a new one (with its buffer) per call,
# which cost more than the packing of a small frame. `pack` returns the bytes and starts
# the packer over, also after an error.
_packers = threading.local()


def framed(frame: Frame, encoding: Encoding) -> bytes:
    """`frame` encoded and framed as one websocket message of the subprotocol's type."""
    if encoding == "msgpack":
        try:
            packer = _packers.packer
        except AttributeError:
            packer = _packers.packer = msgpack.Packer(use_bin_type=True)
        return frames.binary(packer.pack(frame))
    return frames.text(_json_encoder.encode(frame))


def decode(data: bytes | str, encoding: Encoding) -> Frame:
    """The frame in `data`; `ProtocolViolation` if it is not a map with a string `t`."""
    try:
        if encoding == "msgpack":
            if not isinstance(data, bytes):
                raise ProtocolViolation("text frame on a msgpack connection")
            frame = msgpack.unpackb(data, raw=False, strict_map_key=False,
                                    max_bin_len=len(data), max_str_len=len(data))
        else:
            if not isinstance(data, str):
                raise ProtocolViolation("binary frame on a JSON connection")
            if too_deep(data):
                raise ProtocolViolation(f"frame nested deeper than {MAX_JSON_DEPTH} levels")
            frame = json.loads(data)
    except ProtocolViolation:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, RecursionError):
        raise ProtocolViolation(f"undecodable {encoding} frame") from None
    if not isinstance(frame, dict):
        raise ProtocolViolation("a frame must be a map")
    if encoding == "json" and ("\\ud" in data or "\\uD" in data) and _has_surrogate(frame):
        # Valid JSON can escape half of a UTF-16 pair; such a string is not Unicode text.
        raise BadRequest("strings must be valid Unicode (a lone surrogate escape was sent)")
    if not isinstance(frame.get("t"), str):
        raise ProtocolViolation("a frame must have a string `t`")
    return frame


def too_deep(text: str) -> bool:
    """Whether JSON text nests arrays and objects deeper than MAX_JSON_DEPTH (counted
    before parsing, which would recurse that deep); cheap for shallow text."""
    return (text.count("[") + text.count("{") > MAX_JSON_DEPTH
            and json_depth(text) > MAX_JSON_DEPTH)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


class Outgoing:
    """A frame sent to many connections, encoded and framed at most once per encoding.

    The frame is shared (with its publisher, and in one process with every hub the event
    reached): it is framed when first asked for and must not change before that."""

    __slots__ = ("_json", "_msgpack", "frame")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self._msgpack: bytes | None = None
        self._json: bytes | None = None

    def framed(self, encoding: Encoding) -> bytes:
        """As one websocket message of the subprotocol's type."""
        if encoding == "msgpack":
            if self._msgpack is None:
                self._msgpack = framed(self.frame, encoding)
            return self._msgpack
        if self._json is None:
            self._json = framed(self.frame, encoding)
        return self._json


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")  # the last second `iso` formatted


def iso(ms: int) -> str:
    """A wire time: ISO 8601 in UTC with milliseconds and an explicit offset.

    Every stored message carries one; messages of the same second share the formatting
    of the date and time (a quarter of the cost)."""
    global _second
    second, milli = divmod(ms, 1000)
    cached = _second  # read once: reader threads format times too
    if cached[0] != second:
        text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
        cached = _second = (second, text.removesuffix("+00:00"))
    return f"{cached[1]}.{milli:03d}+00:00"


# -- reading client fields --------------------------------------------------------------


def request_id(frame: Frame) -> str | int | None:
    """The request `id`, checked: a string or integer of at most 64 characters."""
    rid = frame.get("id")
    if rid is None:
        return None
    if isinstance(rid, bool) or not isinstance(rid, str | int) or len(str(rid)) > MAX_ID_CHARS:
        raise BadRequest(f"`id` must be a string or integer of at most {MAX_ID_CHARS} characters")
    return rid


def text_field(frame: Frame, name: str, *, max_chars: int, required: bool = True) -> str | None:
    value = frame.get(name)
    if value is None:
        if required:
            raise BadRequest(f"`{name}` is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"`{name}` must be a string")
    if len(value) > max_chars:
        raise TooLarge(f"`{name}` is longer than {max_chars} characters")
    if not value:
        raise BadRequest(f"`{name}` must not be empty")
    return value


def int_field(frame: Frame, name: str, *, minimum: int = 0, maximum: int = 2**53,
              required: bool = True) -> int | None:
    value = frame.get(name)
    if value is None:
        if required:
            raise BadRequest(f"`{name}` is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"`{name}` must be an integer")
    if not minimum <= value <= maximum:
        raise BadRequest(f"`{name}` must be between {minimum} and {maximum}")
    return value


def bool_field(frame: Frame, name: str) -> bool:
    value = frame.get(name)
    if not isinstance(value, bool):
        raise BadRequest(f"`{name}` must be true or false")
    return value


def cmid_field(frame: Frame) -> str | int:
    value = frame.get("cmid")
    if value is None:
        raise BadRequest("`cmid` is required")
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise BadRequest("`cmid` must be a non-empty string or an integer")
    if len(str(value)) > MAX_ID_CHARS or (isinstance(value, int) and not 0 <= value < 2**53):
        raise BadRequest(f"`cmid` must be at most {MAX_ID_CHARS} characters, "
                         "or an integer from 0 to 2**53-1")
    return value
