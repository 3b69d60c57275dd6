"""Arbitrary frames thrown at a live node: it answers, closes or refuses, and never breaks.

One node serves the whole module (started once, on the module's event loop) with its
rate limit raised out of the way. Each hypothesis example sends one frame on a fuzzing
connection of user `c1`, then checks what the wire contract promises:

- undecodable input (bad msgpack or JSON, not a map, no string `t`, the wrong kind of
  websocket frame): close 4400;
- a well-formed frame that breaks a rule: an `error` with a code other than `internal`,
  and the connection still answers `ping`;
- nothing escapes as an exception (no `internal` error, no error in the node's log);
- a bystander connection in the room stays connected and still gets the messages a
  well-behaved client sends, and the store keeps all of them with gapless seq.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.client import Client, Frame
from support.nodes import RunningNode, node_in_process
from websockets.exceptions import ConnectionClosed

from server.codec import MAX_JSON_DEPTH
from server.wire import message_cap

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENCODINGS = ["msgpack", "json"]
MAX_FRAME_BYTES = 65536  # the node's default `max_frame_bytes`
CLIENT_ERRORS = {"bad_request", "unauthorized", "forbidden", "not_found", "rule", "conflict",
                 "too_large", "rate_limited"}
CLIENT_FRAMES = ["hello", "sub", "unsub", "send", "history", "typing", "read", "ping",
                 "live.join", "live.signal", "live.leave"]
SERVER_FRAMES = ["welcome", "subbed", "unsubbed", "ack", "msg", "presence", "session",
                 "live.waiting", "live.start", "live.signal", "live.left", "live.ended",
                 "error", "pong", "typing", "read", "history"]
FIELDS = ["room", "since", "cmid", "kind", "body", "media", "before", "limit", "on", "seq",
          "n", "session", "data", "token", "id", "re", "t"]
FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the arena: one node, a well-behaved sender, a bystander, a fuzzer per encoding ------


class ErrorLog(logging.Handler):
    """Every record at ERROR or above that the node (or its server) logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        lines = [f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else
                 f"{r.name}: {r.getMessage()}" for r in self.records]
        self.records.clear()
        return lines


@dataclass(repr=False)
class Arena:
    running: RunningNode
    room: str  # c1 (the fuzzer) and p1 (sender and bystander) are its members
    foreign_room: str  # c1 is not a member
    sender: Client
    bystander: Client
    errors: ErrorLog
    sent: dict[str, int] = field(default_factory=dict)  # the sender's cmid -> acked seq
    fuzzers: dict[str, Client] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10**6))

    def __repr__(self) -> str:
        return f"<Arena {self.running.url} room={self.room} sent={len(self.sent)}>"

    def next_id(self) -> int:
        return next(self._ids)

    async def fuzzer(self, encoding: str) -> Client:
        """The open fuzzing connection for `encoding` (a new one after a close)."""
        client = self.fuzzers.get(encoding)
        if client is None:
            client = await Client.connect(self.running.url, self.running.token("c1"), encoding)
            self.fuzzers[encoding] = client
        return client

    def forget(self, encoding: str) -> None:
        self.fuzzers.pop(encoding, None)

    async def answered_ping(self, client: Client) -> list[Frame]:
        """Ping; every frame received before the pong (the connection must still answer)."""
        n = f"probe-{self.next_id()}"  # no `id`: a fuzzed frame may reuse any id
        await client.send({"t": "ping", "n": n})
        await client.next(lambda f: f == {"t": "pong", "n": n})
        frames, client.inbox = client.inbox, []
        return frames

    async def well_behaved_round(self) -> None:
        """The sender sends a message; the bystander, still connected, receives it."""
        cmid = f"wb-{len(self.sent)}"
        ack = await self.sender.send_text(self.room, f"body of {cmid}", cmid)
        assert ack["t"] == "ack" and ack["dup"] is False, ack
        self.sent[cmid] = ack["seq"]
        msg = await self.bystander.next(lambda f: f.get("t") == "msg" and f.get("cmid") == cmid)
        assert msg["seq"] == ack["seq"] and msg["body"] == f"body of {cmid}"
        assert not [f for f in self.bystander.inbox if f.get("t") == "error"]
        self.bystander.inbox.clear()
        self.sender.inbox.clear()

    def assert_nothing_escaped(self) -> None:
        assert self.errors.take() == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def arena(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Arena]:
    errors = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("confide", "uvicorn.error", "asyncio")]
    for logger in loggers:
        logger.addHandler(errors)
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    try:
        async with node_in_process(data, rate_limit_per_s=100000,
                                   rate_limit_burst=100000) as running:
            room = await running.room("c1", "p1")
            foreign = await running.room("c2", "p2")
            sender = await Client.connect(running.url, running.token("p1", "provider"))
            bystander = await Client.connect(running.url, running.token("p1", "provider"),
                                             "json")
            await bystander.sub(room, since=0)
            arena = Arena(running, room, foreign, sender, bystander, errors)
            yield arena
            for client in (sender, bystander, *arena.fuzzers.values()):
                await client.close()
    finally:
        for logger in loggers:
            logger.removeHandler(errors)


# -- what the node should do with a frame -----------------------------------------------

CLOSE = "close 4400"
CLOSE_TOO_BIG = "close 1009"
TOO_LARGE = "error too_large"
ANSWER = "an answer"


def _json_depth(text: str) -> int:
    from server.codec import json_depth as depth

    return depth(text)


def expected(data: bytes | str, encoding: str) -> str:
    """What the wire contract says the node does with `data` on an open connection."""
    if len(data.encode() if isinstance(data, str) else data) > message_cap(MAX_FRAME_BYTES):
        return CLOSE_TOO_BIG
    if len(data) > MAX_FRAME_BYTES:
        return TOO_LARGE
    try:
        if encoding == "msgpack":
            if not isinstance(data, bytes):
                return CLOSE
            frame = msgpack.unpackb(data, raw=False, strict_map_key=False)
        else:
            if not isinstance(data, str):
                return CLOSE
            if _json_depth(data) > MAX_JSON_DEPTH:  # the protocol's fixed nesting limit
                return CLOSE
            frame = json.loads(data)
    except Exception:
        return CLOSE
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
        return CLOSE
    return ANSWER


def encode(frame: Any, encoding: str) -> bytes | str:
    if encoding == "msgpack":
        return msgpack.packb(frame, use_bin_type=True)
    return json.dumps(frame)  # ASCII: lone surrogates travel as \ud800 escapes


def internal_errors(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.get("t") == "error" and f.get("code") not in CLIENT_ERRORS]


async def throw(arena: Arena, encoding: str, data: bytes | str,
                reply_to: int | None = None) -> list[Frame]:
    """Send `data` on the fuzzing connection and check the node's answer; what came back.

    With `reply_to`, the frame is sure to get a reply with that `re`: it is awaited before
    the ping, so the two answers are not written back to back.
    """
    outcome = expected(data, encoding)
    fuzzer = await arena.fuzzer(encoding)
    if outcome == CLOSE_TOO_BIG:  # the node may close before the frame is all sent
        with contextlib.suppress(ConnectionClosed):
            await fuzzer.send_raw(data)
    else:
        await fuzzer.send_raw(data)
    early = [await fuzzer.next(lambda f: f.get("re") == reply_to)] if reply_to else []
    if outcome in (CLOSE, CLOSE_TOO_BIG):
        code, reason = await fuzzer.closed()
        arena.forget(encoding)
        assert code == (4400 if outcome == CLOSE else 1009), (code, reason)
        frames = early + fuzzer.inbox
    else:
        frames = early + await arena.answered_ping(fuzzer)
        if outcome == TOO_LARGE:
            assert [f["code"] for f in frames if f.get("t") == "error"] == ["too_large"]
    assert internal_errors(frames) == []
    await arena.well_behaved_round()
    arena.assert_nothing_escaped()
    return frames


# -- strategies -------------------------------------------------------------------------


def texts(encoding: str, max_size: int = 40) -> st.SearchStrategy[str]:
    # Lone surrogates (which JSON escapes can carry) have their own test:
    # test_lone_surrogates_in_json_are_refused_without_internal_error.
    return st.text(max_size=max_size)


def huge_strings(encoding: str) -> st.SearchStrategy[str]:
    return st.builds(lambda s, n: (s or "x") * n, texts(encoding, 3), st.integers(1, 70000))


def leaves(encoding: str) -> st.SearchStrategy[Any]:
    common = (st.none() | st.booleans() | st.floats() | texts(encoding)
              | st.sampled_from(["$room", "$foreign", "", "text", "voice", "video", "system"]))
    if encoding == "msgpack":
        return (common | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
                | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)))
    return common | st.integers(-(10**30), 10**30)


def keys(encoding: str) -> st.SearchStrategy[Any]:
    names = st.sampled_from(FIELDS) | texts(encoding, 8)
    if encoding == "msgpack":
        return names | st.integers(-5, 5) | st.binary(max_size=4) | st.none()
    return names


def values(encoding: str) -> st.SearchStrategy[Any]:
    return st.recursive(leaves(encoding), lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys(encoding), inner, max_size=4), max_leaves=12)


def garbage_fields(encoding: str) -> st.SearchStrategy[dict[Any, Any]]:
    return st.dictionaries(keys(encoding), values(encoding) | huge_strings(encoding).filter(
        lambda s: len(s) < 2000) | huge_strings(encoding), max_size=6)


def frame_types(encoding: str) -> st.SearchStrategy[str]:
    return st.sampled_from(CLIENT_FRAMES + SERVER_FRAMES) | texts(encoding, 20)


def place(frame: dict[Any, Any], arena: Arena) -> dict[Any, Any]:
    """`frame` with "$room" and "$foreign" replaced by the arena's room ids."""
    rooms = {"$room": arena.room, "$foreign": arena.foreign_room}
    return {k: rooms.get(v, v) if isinstance(v, str) else v for k, v in frame.items()}


# Valid frames of every request type, and, per field, values no reading of the contract
# accepts there. One such field in an otherwise valid frame must get a client error.
VALID: dict[str, dict[str, Any]] = {
    "sub": {"room": "$room"},
    "unsub": {"room": "$room"},
    "send": {"room": "$room", "cmid": "fz", "kind": "text", "body": "hi"},
    "history": {"room": "$room"},
    "typing": {"room": "$room", "on": True},
    "read": {"room": "$room", "seq": 0},
    "ping": {},
}
NOT_TEXT = [None, 0, 1.5, True, [], ["x"], {"a": 1}, ""]
NOT_COUNT = [-1, 1.5, True, "1", [], {}, 2**53 + 1]
WRONG: dict[str, list[Any]] = {
    "room": [*NOT_TEXT, "r" * 65, "$foreign", "no-such-room"],
    "cmid": [None, True, 1.5, [], {}, "", "c" * 65, -1, 2**53],
    "kind": [None, "", "system", "TEXT", 1, [], {}, True],
    "body": [*NOT_TEXT, "b" * 20001],
    "on": [None, 0, 1, "true", [], {}],
    "seq": [None, *NOT_COUNT, 10**9],
    "since": NOT_COUNT,
    "before": [0, *NOT_COUNT],
    "limit": [0, 201, *NOT_COUNT],
    "n": [1.5, True, [], {}, "n" * 65, 10**70],
}
BREAKABLE: dict[str, list[str]] = {
    "sub": ["room", "since"],
    "unsub": ["room"],
    "send": ["room", "cmid", "kind", "body"],
    "history": ["room", "before", "limit"],
    "typing": ["room", "on"],
    "read": ["room", "seq"],
    "ping": ["n"],
}


@st.composite
def broken_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request of some type with one field made wrong (or dropped, if None)."""
    t = draw(st.sampled_from(sorted(VALID)))
    name = draw(st.sampled_from(BREAKABLE[t]))
    value = draw(st.sampled_from(WRONG[name]))
    frame = {"t": t, **VALID[t], name: value}
    if value is None:
        del frame[name]
    return frame


# -- the properties ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200))
async def test_undecodable_input_closes_4400_and_anything_else_is_answered(
        arena: Arena, encoding: str, data: bytes | str) -> None:
    await throw(arena, encoding, data)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(data=st.data())
async def test_a_map_without_a_string_t_closes_4400(
        arena: Arena, encoding: str, data: st.DataObject) -> None:
    frame = data.draw(garbage_fields(encoding))
    frame.pop("t", None)
    if data.draw(st.booleans()):
        frame["t"] = data.draw(values(encoding).filter(lambda v: not isinstance(v, str)))
    payload = encode(frame, encoding)
    if len(payload) <= MAX_FRAME_BYTES:
        assert expected(payload, encoding) == CLOSE
    await throw(arena, encoding, payload)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(data=st.data())
async def test_any_frame_type_with_garbage_fields_is_answered_without_internal_error(
        arena: Arena, encoding: str, data: st.DataObject) -> None:
    frame = {**place(data.draw(garbage_fields(encoding)), arena),
             "t": data.draw(frame_types(encoding))}
    await throw(arena, encoding, encode(frame, encoding))


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(frame=broken_requests())
async def test_a_request_with_one_wrong_field_gets_a_client_error_and_the_connection_lives(
        arena: Arena, encoding: str, frame: dict[str, Any]) -> None:
    rid = arena.next_id()
    assume(encoding == "json" or frame.get("n") != 10**70)  # msgpack has no such integer
    frames = await throw(arena, encoding, encode({**place(frame, arena), "id": rid}, encoding),
                         reply_to=rid)
    replies = [f for f in frames if f.get("re") == rid]
    assert len(replies) == 1 and replies[0]["t"] == "error", (frame, frames)
    assert replies[0]["code"] in CLIENT_ERRORS


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(t=st.sampled_from(["hello", *sorted(set(SERVER_FRAMES) - set(CLIENT_FRAMES))])
       | st.text(min_size=1, max_size=30).filter(lambda t: t not in CLIENT_FRAMES),
       fields=st.dictionaries(st.sampled_from(FIELDS[:-3]),
                              st.integers(-(2**63), 2**63) | st.text()))
async def test_an_unknown_frame_type_gets_bad_request_and_the_connection_lives(
        arena: Arena, encoding: str, t: str, fields: dict[str, Any]) -> None:
    rid = arena.next_id()
    frames = await throw(arena, encoding, encode({**fields, "t": t, "id": rid}, encoding),
                         reply_to=rid)
    assert [(f["t"], f.get("code")) for f in frames if f.get("re") == rid] == [
        ("error", "bad_request")]


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(depth=st.integers(1, 5000))
async def test_deeply_nested_frames_close_4400_or_get_an_error(
        arena: Arena, encoding: str, depth: int) -> None:
    if encoding == "msgpack":  # {"t": "ping", "n": [[[...nil...]]]}, built by hand
        payload: bytes | str = b"\x82\xa1t\xa4ping\xa1n" + b"\x91" * depth + b"\xc0"
    else:
        payload = '{"t":"ping","n":' + "[" * depth + "]" * depth + "}"
    await throw(arena, encoding, payload)


@pytest.mark.parametrize("encoding", ENCODINGS)
@FUZZ
@given(data=st.data())
async def test_any_first_frame_but_a_valid_hello_closes_4400_or_4401(
        arena: Arena, encoding: str, data: st.DataObject) -> None:
    frame = data.draw(garbage_fields(encoding))
    if data.draw(st.booleans()):
        frame["t"] = data.draw(st.just("hello") | frame_types(encoding))
    payload = data.draw(st.just(encode(frame, encoding)) | st.binary(max_size=64)
                        | st.text(max_size=64))
    outcome = expected(payload, encoding)
    client = await Client.connect(arena.running.url, encoding=encoding, hello=False)
    if outcome == CLOSE_TOO_BIG:  # the node may close before the frame is all sent
        with contextlib.suppress(ConnectionClosed):
            await client.send_raw(payload)
    else:
        await client.send_raw(payload)
    code, reason = await client.closed()
    assert not client.inbox
    want = {CLOSE_TOO_BIG: 1009, ANSWER: 4401}.get(outcome, 4400)
    assert code == want, (code, reason)
    arena.assert_nothing_escaped()


async def test_store_keeps_every_well_behaved_message_with_gapless_seq(arena: Arena) -> None:
    for _ in range(3):  # so the check means something even when run alone
        await arena.well_behaved_round()
    store = arena.running.node.store if arena.running.node else None
    assert store is not None
    stored = await store.messages_after(arena.room, 0, 10**6)  # type: ignore[arg-type]
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    by_cmid = {m.cmid: m for m in stored if m.sender == "p1"}
    for cmid, seq in arena.sent.items():
        assert by_cmid[cmid].seq == seq and by_cmid[cmid].body == f"body of {cmid}"
    assert [m.cmid for m in stored if m.sender == "p1"] == list(arena.sent)  # in send order
    assert await arena.answered_ping(arena.bystander) is not None
    arena.assert_nothing_escaped()


@pytest.mark.parametrize("raw", [
    '{"t":"sub","room":"\\ud800","id":1}',
    '{"t":"send","room":"$room","cmid":"c","kind":"text","body":"\\udfff","id":1}',
    '{"t":"send","room":"$room","cmid":"\\ud800","kind":"text","body":"b","id":1}',
    '{"t":"ping","n":"\\ud800","id":1}',
    '{"t":"ping","id":"\\ud800"}',
    '{"t":"hello","token":"\\ud800"}',
], ids=["room", "body", "cmid", "ping-n", "id", "hello-token"])
async def test_lone_surrogates_in_json_are_refused_without_internal_error(
        arena: Arena, raw: str) -> None:
    raw = raw.replace("$room", arena.room)
    hello = '"hello"' in raw
    client = await Client.connect(arena.running.url, None if hello else arena.running.token("c1"),
                                  "json", hello=not hello)
    try:
        await client.send_raw(raw)
        if hello:
            assert (await client.closed())[0] in (4400, 4401)
        else:  # an `error` other than internal (or a close 4400), and no error in the log
            reply = await client.next(lambda f: f.get("t") in ("error", "pong"))
            assert internal_errors([reply]) == []
            assert reply["t"] == "error" or reply.get("n") is None
            await arena.answered_ping(client)
        arena.assert_nothing_escaped()
    finally:
        arena.errors.take()
        await client.close()
