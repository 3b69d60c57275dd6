"""Wire times (`ts`, `waiting_since`, ...): ISO 8601 in UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from server import codec


@given(st.integers(min_value=-(10**12), max_value=253_402_300_799_998))
@settings(max_examples=400)
def test_wire_times_agree_with_the_standard_library_on_every_millisecond(ms: int) -> None:
    """`iso` reuses the formatting of the second it formatted last: a repeat, the next
    millisecond and going back must all still come out exact."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    for value, expected in ((ms, when), (ms + 1, when + timedelta(milliseconds=1)), (ms, when)):
        assert codec.iso(value) == expected.isoformat(timespec="milliseconds")


def test_a_known_time() -> None:
    assert codec.iso(1_700_000_000_123) == "2023-11-14T22:13:20.123+00:00"
    assert codec.iso(0) == "1970-01-01T00:00:00.000+00:00"
