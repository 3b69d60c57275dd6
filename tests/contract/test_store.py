"""The `Store` contract: every guarantee of `server.store.base`, run against each implementation.

Each implementation is a `Backend` in `BACKENDS`: how to open a fresh, empty store, how
to open another handle on the same storage (to check what survived a close or a crash),
and the Python source a child process runs to open it (for the `kill -9` test). A
PostgreSQL store joins the suite by adding its `Backend` to the list.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.client import TIMEOUT

from server.errors import Conflict, NotFound
from server.ids import RoomId, UserId
from server.store import RoomRecord, Store
from server.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]

C = UserId("u-client")
P = UserId("u-provider")
P2 = UserId("u-provider-2")
OTHER = UserId("u-other")


@dataclass(frozen=True)
class Backend:
    """One `Store` implementation, bound to one place where its data lives."""

    name: str
    make: Callable[[], Store]  # a new, unopened handle on this backend's storage
    child_setup: str  # Python source that binds `store` (unopened) to the same storage


def sqlite_backend(tmp: Path) -> Backend:
    path = tmp / "store.db"
    setup = ("from pathlib import Path\n"
             "from server.store.sqlite import SQLiteStore\n"
             f"store = SQLiteStore(Path({str(path)!r}))\n")
    return Backend("sqlite", lambda: SQLiteStore(path), setup)


def sqlite_folding_backend(tmp: Path) -> Backend:
    """The embedded store with log generations of 5 rows: every few appends a generation
    is folded, one room per commit, so every test also runs across folds and swaps."""
    path = tmp / "store.db"
    setup = ("from pathlib import Path\n"
             "from server.store.sqlite import SQLiteStore\n"
             f"store = SQLiteStore(Path({str(path)!r}), generation_rows=5)\n")
    return Backend("sqlite-folding", lambda: SQLiteStore(path, generation_rows=5), setup)


BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "sqlite": sqlite_backend,
    "sqlite-folding": sqlite_folding_backend,
    # "postgresql": postgresql_backend,  (a fresh schema per test, same DSN for reopening)
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield BACKENDS[request.param](tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def reopened(backend: Backend) -> Store:
    """Another handle on the backend's storage, opened: what a restarted node would see."""
    s = backend.make()
    await s.open()
    return s


def room_record(room: str, client: UserId = C, provider: UserId = P,
                created_ms: int = 1) -> RoomRecord:
    return RoomRecord(RoomId(room), client, provider, "self_pay", "therapy", True, created_ms)


async def new_room(store: Store, room: str, **kw: object) -> RoomId:
    await store.create_room(room_record(room, **kw))  # type: ignore[arg-type]
    return RoomId(room)


async def text(store: Store, room: RoomId, body: str, cmid: str | int | None = None,
               sender: UserId = C, now_ms: int = 1000) -> int:
    appended = await store.append(room, sender, cmid, "text", body, None, now_ms)
    assert not appended.dup
    return appended.message.seq


async def all_messages(store: Store, room: RoomId) -> list[tuple[int, str | None]]:
    return [(m.seq, m.body) for m in await store.messages_after(room, 0, 1_000_000)]


# -- durable ----------------------------------------------------------------------------


async def test_durable_everything_written_is_there_after_close_and_reopen(
        backend: Backend) -> None:
    first = await reopened(backend)
    room = await new_room(first, "r-durable")
    await new_room(first, "r-second", client=OTHER)
    for i in range(1, 6):
        await text(first, room, f"body {i}", cmid=f"m{i}")
    await first.append(room, P, 99, "voice", None, "media-1", 2000)  # type: ignore[arg-type]
    await first.set_read(room, C, 4)
    await first.set_provider(room, P2, 3000)
    await first.close()

    second = await reopened(backend)
    try:
        record = await second.get_room(room)
        assert record == room_record("r-durable", provider=P2)
        assert [r.room for r in await second.rooms_of(OTHER)] == ["r-second"]
        msgs = await second.messages_after(room, 0, 100)
        assert [(m.seq, m.sender, m.kind, m.body, m.media, m.cmid) for m in msgs] == [
            *((i, C, "text", f"body {i}", None, f"m{i}") for i in range(1, 6)),
            (6, P, "voice", None, "media-1", 99),
        ]
        assert await second.reads(room) == {C: 4}
        # no reuse after a restart: the next message takes the next seq, a retry stays a dup
        assert await text(second, room, "after restart", cmid="m7") == 7
        again = await second.append(room, C, "m3", "text", "retry", None, 5000)
        assert again.dup and again.message.seq == 3 and again.message.body == "body 3"
    finally:
        await second.close()


async def test_close_finishes_every_write_already_submitted(backend: Backend) -> None:
    first = await reopened(backend)
    room = await new_room(first, "r-close")
    tasks = [asyncio.create_task(text(first, room, f"b{i}", cmid=i)) for i in range(50)]
    await asyncio.sleep(0)  # every task has submitted its append
    await first.close()
    seqs = await asyncio.gather(*tasks)
    assert sorted(seqs) == list(range(1, 51))
    second = await reopened(backend)
    try:
        assert await second.head(room) == 50
    finally:
        await second.close()


CHILD = """
import asyncio, sys
from server.ids import RoomId, UserId
from server.store import RoomRecord
{setup}

async def main() -> None:
    await store.open()
    room = RoomId("r-kill")
    await store.create_room(RoomRecord(room, UserId("c"), UserId("p"), "self_pay", "therapy",
                                       True, 1))
    print("ready", flush=True)

    async def writer(w: int) -> None:  # 16 of them: appends always in flight
        for n in range(10**9):
            cmid = f"m{{w}}-{{n}}"
            appended = await store.append(room, UserId("c"), cmid, "text", "b", None, n)
            sys.stdout.write(f"{{appended.message.seq}} {{cmid}}\\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer(w) for w in range(16)))

asyncio.run(main())
"""


async def test_durable_every_acknowledged_append_survives_kill_9(backend: Backend) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD.format(setup=backend.child_setup), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    acked: dict[int, str] = {}
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), 10 * TIMEOUT)
        assert ready == b"ready\n", await child.stderr.read()
        while len(acked) < 333:  # then kill it mid-stream, with appends in flight
            line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
            assert line, await child.stderr.read()
            seq, cmid = line.decode().split()
            acked[int(seq)] = cmid
        child.send_signal(signal.SIGKILL)
        rest = await asyncio.wait_for(child.stdout.read(), TIMEOUT)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    assert child.returncode != 0  # it never exits by itself (asyncio may report 255 for -9)
    for tail in rest.decode().splitlines():  # acks printed before the kill landed
        if tail.endswith(tuple("0123456789")):  # not a line cut short by the kill
            seq, cmid = tail.split()
            acked[int(seq)] = cmid

    after = await reopened(backend)
    try:
        stored = {m.seq: m.cmid for m in await after.messages_after(RoomId("r-kill"), 0, 10**6)}
    finally:
        await after.close()
    missing = {seq: cmid for seq, cmid in acked.items() if stored.get(seq) != cmid}
    assert not missing, f"{len(missing)} acknowledged appends lost, e.g. {list(missing)[:5]}"
    assert sorted(stored) == list(range(1, len(stored) + 1))  # gapless even after the crash


# -- gapless order ----------------------------------------------------------------------


async def test_gapless_seq_under_hundreds_of_concurrent_appends_to_one_room(store: Store) -> None:
    room = await new_room(store, "r-one")
    seqs = await asyncio.gather(*(text(store, room, f"b{i}", cmid=f"m{i}") for i in range(500)))
    assert sorted(seqs) == list(range(1, 501))
    msgs = await store.messages_after(room, 0, 1000)
    assert [m.seq for m in msgs] == list(range(1, 501))
    # each ack names the seq its own message was stored at
    assert {m.seq: m.body for m in msgs} == {seq: f"b{i}" for i, seq in enumerate(seqs)}
    assert await store.head(room) == 500


async def test_gapless_seq_per_room_under_concurrent_appends_to_several_rooms(
        store: Store) -> None:
    rooms = [await new_room(store, f"r-many-{k}") for k in range(6)]
    calls = [(rooms[i % 6], i) for i in range(600)]
    seqs = await asyncio.gather(*(text(store, room, f"b{i}", cmid=i) for room, i in calls))
    for room in rooms:
        mine = sorted(seq for (r, _), seq in zip(calls, seqs, strict=True) if r == room)
        assert mine == list(range(1, 101))
        assert [seq for seq, _ in await all_messages(store, room)] == list(range(1, 101))
    assert await store.heads(rooms) == dict.fromkeys(rooms, 100)


async def test_send_order_sequential_appends_are_stored_in_the_order_made(store: Store) -> None:
    room = await new_room(store, "r-order")

    async def one_caller_in_turn() -> list[int]:
        return [await text(store, room, f"in turn {i}", cmid=f"t{i}", sender=P)
                for i in range(100)]

    async def others_at_once() -> list[int]:
        return list(await asyncio.gather(*(text(store, room, f"x{i}", cmid=f"x{i}")
                                           for i in range(300))))

    in_turn, _ = await asyncio.gather(one_caller_in_turn(), others_at_once())
    assert in_turn == sorted(in_turn)
    provider_bodies = [m.body for m in await store.messages_after(room, 0, 1000)
                       if m.sender == P]
    assert provider_bodies == [f"in turn {i}" for i in range(100)]


async def test_an_awaited_append_is_visible_to_reads_at_once(store: Store) -> None:
    room = await new_room(store, "r-visible")
    for i in range(1, 21):
        assert await text(store, room, f"b{i}") == i
        assert await store.head(room) == i
        assert (await store.messages_after(room, i - 1, 10))[0].body == f"b{i}"


# -- exactly once -----------------------------------------------------------------------


async def test_exactly_once_repeated_cmid_answers_the_first_seq_and_ts_with_dup(
        store: Store) -> None:
    room = await new_room(store, "r-dup")
    first = await store.append(room, C, "c-1", "text", "original", None, 1000)
    await text(store, room, "in between", cmid="c-2")
    again = await store.append(room, C, "c-1", "text", "a retry", None, 9000)
    assert not first.dup and again.dup
    assert again.message == first.message  # same seq, same ts, the first body
    assert (again.message.seq, again.message.ts_ms) == (1, 1000)
    assert await all_messages(store, room) == [(1, "original"), (2, "in between")]


async def test_exactly_once_under_concurrent_retries_of_one_cmid(store: Store) -> None:
    room = await new_room(store, "r-dup-race")
    results = await asyncio.gather(*(store.append(room, C, "same", "text", f"try {i}", None, i)
                                     for i in range(50)))
    assert sum(not r.dup for r in results) == 1
    assert {r.message.seq for r in results} == {1}
    assert await store.head(room) == 1


async def test_same_cmid_from_another_sender_or_in_another_room_is_a_new_message(
        store: Store) -> None:
    room = await new_room(store, "r-cmid-a")
    other_room = await new_room(store, "r-cmid-b")
    a = await store.append(room, C, "k", "text", "client", None, 1)
    b = await store.append(room, P, "k", "text", "provider", None, 2)
    c = await store.append(other_room, C, "k", "text", "elsewhere", None, 3)
    assert [(x.dup, x.message.seq) for x in (a, b, c)] == [(False, 1), (False, 2), (False, 1)]


async def test_integer_and_string_cmids_are_distinct_and_keep_their_type(store: Store) -> None:
    room = await new_room(store, "r-cmid-types")
    as_int = await store.append(room, C, 7, "text", "int", None, 1)
    as_str = await store.append(room, C, "7", "text", "str", None, 2)
    big = await store.append(room, C, 2**53 - 1, "text", "big", None, 3)
    assert (as_int.dup, as_str.dup, big.dup) == (False, False, False)
    assert (await store.append(room, C, 7, "text", "retry", None, 4)).message.seq == 1
    assert (await store.append(room, C, "7", "text", "retry", None, 5)).message.seq == 2
    cmids = [m.cmid for m in await store.messages_after(room, 0, 10)]
    assert cmids == [7, "7", 2**53 - 1]
    assert [type(x) for x in cmids] == [int, str, int]


async def test_appends_without_cmid_are_never_duplicates(store: Store) -> None:
    room = await new_room(store, "r-no-cmid")
    results = [await store.append(room, C, None, "text", "same", None, 1) for _ in range(3)]
    assert [(r.dup, r.message.seq, r.message.cmid) for r in results] == [
        (False, 1, None), (False, 2, None), (False, 3, None)]


# -- atomic -----------------------------------------------------------------------------


async def test_atomic_creating_a_room_twice_conflicts_and_keeps_the_first(store: Store) -> None:
    await store.create_room(room_record("r-twice", created_ms=10))
    with pytest.raises(Conflict):
        await store.create_room(room_record("r-twice", client=OTHER, provider=P2,
                                            created_ms=20))
    assert await store.get_room(RoomId("r-twice")) == room_record("r-twice", created_ms=10)
    assert await store.rooms_of(OTHER) == []
    assert await store.rooms_of(P2) == []


async def test_atomic_a_failing_write_fails_alone_in_a_concurrent_batch(store: Store) -> None:
    room = await new_room(store, "r-batch")
    outcomes = await asyncio.gather(
        *(text(store, room, f"b{i}", cmid=i) for i in range(100)),
        store.create_room(room_record("r-batch", client=OTHER)),
        store.set_provider(RoomId("r-missing"), P2, 5),
        *(text(store, room, f"b{i}", cmid=i) for i in range(100, 200)),
        return_exceptions=True)
    assert isinstance(outcomes[100], Conflict)
    assert isinstance(outcomes[101], NotFound)
    seqs = [o for o in outcomes if isinstance(o, int)]
    assert sorted(seqs) == list(range(1, 201))
    assert [s for s, _ in await all_messages(store, room)] == list(range(1, 201))
    assert await store.get_room(RoomId("r-missing")) is None
    assert (await store.get_room(room)) == room_record("r-batch")


async def test_atomic_set_provider_of_an_unknown_room_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_provider(RoomId("r-nowhere"), P2, 1)
    assert await store.get_room(RoomId("r-nowhere")) is None
    assert await store.rooms_of(P2) == []


# -- read marks -------------------------------------------------------------------------


async def test_read_marks_only_move_forward(store: Store) -> None:
    room = await new_room(store, "r-read")
    assert await store.reads(room) == {}
    assert await store.set_read(room, C, 5) == 5
    assert await store.set_read(room, C, 3) == 5
    assert await store.set_read(room, C, 5) == 5
    assert await store.set_read(room, C, 8) == 8
    assert await store.set_read(room, P, 2) == 2
    assert await store.reads(room) == {C: 8, P: 2}


async def test_read_marks_keep_the_highest_of_concurrent_marks(store: Store) -> None:
    room = await new_room(store, "r-read-race")
    marks = [(i * 37) % 101 for i in range(200)]
    stored = await asyncio.gather(*(store.set_read(room, C, m) for m in marks))
    assert all(s >= m for s, m in zip(stored, marks, strict=True))
    assert await store.reads(room) == {C: max(marks)}


# -- paging -----------------------------------------------------------------------------


@pytest.fixture
async def ten(store: Store) -> RoomId:
    """A room holding messages 1..10 with bodies "b1".."b10"."""
    room = await new_room(store, "r-ten")
    for i in range(1, 11):
        await text(store, room, f"b{i}")
    return room


@pytest.mark.parametrize(("after", "limit", "seqs"), [
    (0, 3, [1, 2, 3]),
    (3, 3, [4, 5, 6]),
    (8, 5, [9, 10]),
    (9, 1, [10]),
    (10, 5, []),
    (50, 5, []),
    (0, 100, list(range(1, 11))),
])
async def test_messages_after_pages_oldest_first_from_the_bound(
        store: Store, ten: RoomId, after: int, limit: int, seqs: list[int]) -> None:
    msgs = await store.messages_after(ten, after, limit)
    assert [m.seq for m in msgs] == seqs
    assert [m.body for m in msgs] == [f"b{s}" for s in seqs]


@pytest.mark.parametrize(("before", "limit", "seqs"), [
    (None, 3, [8, 9, 10]),
    (None, 100, list(range(1, 11))),
    (8, 3, [5, 6, 7]),
    (4, 10, [1, 2, 3]),
    (2, 5, [1]),
    (1, 5, []),
    (11, 2, [9, 10]),
    (1000, 2, [9, 10]),
])
async def test_messages_before_gives_the_newest_page_oldest_first(
        store: Store, ten: RoomId, before: int | None, limit: int, seqs: list[int]) -> None:
    assert [m.seq for m in await store.messages_before(ten, before, limit)] == seqs


async def test_paging_back_with_messages_before_visits_every_message_once(
        store: Store, ten: RoomId) -> None:
    seen: list[int] = []
    before: int | None = None
    while page := await store.messages_before(ten, before, 3):
        seen = [m.seq for m in page] + seen
        before = page[0].seq
    assert seen == list(range(1, 11))


async def test_paging_reads_only_the_room_asked_for(store: Store, ten: RoomId) -> None:
    empty = await new_room(store, "r-empty")
    assert await store.messages_after(empty, 0, 10) == []
    assert await store.messages_before(empty, None, 10) == []
    assert await store.messages_after(RoomId("r-unknown"), 0, 10) == []
    assert {m.room for m in await store.messages_after(ten, 0, 100)} == {ten}


async def test_heads_gives_each_rooms_head_in_one_call(store: Store, ten: RoomId) -> None:
    empty = await new_room(store, "r-empty")
    unknown = RoomId("r-unknown")
    assert await store.head(ten) == 10
    assert await store.head(empty) == 0
    assert await store.heads([ten, empty, unknown]) == {ten: 10, empty: 0, unknown: 0}
    assert await store.heads([]) == {}


async def test_head_and_reads_and_rooms_with_heads_agree_with_the_single_reads(
        store: Store, ten: RoomId) -> None:
    empty = await new_room(store, "r-empty")
    record = await store.get_room(ten)
    assert record is not None
    await store.set_read(ten, record.provider, 7)
    assert await store.head_and_reads(ten) == (10, {record.provider: 7})
    assert await store.head_and_reads(empty) == (0, {})
    listed = await store.rooms_with_heads(record.client)
    assert listed == [(r, await store.head(r.room)) for r in await store.rooms_of(record.client)]
    assert (record, 10) in listed


# -- rooms ------------------------------------------------------------------------------


async def test_rooms_of_follows_the_current_provider(store: Store) -> None:
    room = await new_room(store, "r-move", created_ms=1)
    kept = await new_room(store, "r-kept", created_ms=2)
    await text(store, room, "before the change")
    changed = await store.set_provider(room, P2, 1234)
    assert changed == room_record("r-move", provider=P2, created_ms=1)
    assert [r.room for r in await store.rooms_of(P)] == [kept]
    assert await store.rooms_of(P2) == [changed]
    assert [r.room for r in await store.rooms_of(C)] == [room, kept]
    assert await store.get_room(room) == changed
    assert await all_messages(store, room) == [(1, "before the change")]  # history stays


async def test_get_room_of_an_unknown_room_is_none(store: Store) -> None:
    assert await store.get_room(RoomId("r-unknown")) is None
    assert await store.rooms_of(UserId("u-nobody")) == []


# -- group commit -----------------------------------------------------------------------


async def test_group_commit_batches_concurrent_writes(store: Store) -> None:
    commits_before, ops_before = statistics(store)
    room = await new_room(store, "r-group")
    await asyncio.gather(*(text(store, room, f"b{i}", cmid=i) for i in range(300)))
    commits, ops = statistics(store)
    assert ops - ops_before == 301
    assert commits - commits_before < (ops - ops_before) / 4, (commits, ops)


def statistics(store: Store) -> tuple[int, int]:
    """(transactions committed, writes committed), for stores that batch their commits."""
    if not hasattr(store, "commits") or not hasattr(store, "ops"):
        pytest.skip(f"{type(store).__name__} keeps no commit statistics")
    return int(store.commits), int(store.ops)
