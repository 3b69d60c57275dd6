"""Frames as the node sends them: `codec.framed` reuses one msgpack packer per thread."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import codec


def _payload(message: bytes) -> Any:
    """The value carried by one final, unmasked binary frame."""
    assert message[0] == 0x82
    length = message[1]
    head = 2
    if length == 126:
        length, head = int.from_bytes(message[2:4], "big"), 4
    elif length == 127:
        length, head = int.from_bytes(message[2:10], "big"), 10
    assert len(message) == head + length
    return msgpack.unpackb(message[head:], raw=False)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=300)
    | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=20)


@given(st.dictionaries(st.text(max_size=8), _values, max_size=6), st.integers(0, 70_000))
@settings(max_examples=200)
def test_each_frame_carries_exactly_its_value(frame: dict[str, Any], pad: int) -> None:
    """Frames of any size (the 7-, 16- and 64-bit lengths) come out whole, one after
    another from the same packer, with nothing of the one before."""
    frame = {**frame, "t": "x", "pad": "p" * pad}
    assert _payload(codec.framed(frame, "msgpack")) == frame
    assert _payload(codec.framed({"t": "next"}, "msgpack")) == {"t": "next"}


def test_a_value_that_cannot_be_packed_leaves_nothing_behind() -> None:
    with pytest.raises(TypeError):
        codec.framed({"t": "x", "body": "part of it", "bad": object()}, "msgpack")
    assert _payload(codec.framed({"t": "ok"}, "msgpack")) == {"t": "ok"}

