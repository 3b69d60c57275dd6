"""Sessions at the edge: runs the pure rules of `rooms/` in store transactions, then publishes.

Theory of operation: every operation (book, confirm, reschedule, cancel, start a
messaging session, a join or leave, a deadline firing) is one `Store.transact` call. Inside
it, the room, the session and the ledger are read, the rule function computes a `Step`,
and the step's record, ledger entries, charges, jobs and system messages are written —
all in the same transaction, so a step happens entirely or not at all, and a deadline job
is deleted in the very transaction that applies it (R17: it fires once). A `RuleError`
aborts the transaction and reaches the client naming its rule. After the commit, both
members get a `session` frame and the room gets the step's system messages.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rooms import booking, capabilities, lifecycle, messaging, periods, slots
from rooms.booking import LiveBooking
from rooms.effects import Job, Notice, Step
from rooms.hours import DEFAULT_HOURS, WorkingHours, is_overdue, room_reply_due
from rooms.ledger import Charge, CreditLedger, LedgerEntry, grant, replay
from rooms.room import SYSTEM, Actor, Room
from rooms.sessions import LiveSession, MessagingSession
from rooms.settings import DEFAULT_SETTINGS, Settings
from rooms.slots import Interval, ProviderSchedule
from server import codec
from server.errors import BadRequest, Forbidden, NotFound, RuleError
from server.hub import Hub
from server.ids import RoomId, SessionId, UserId
from server.records import dumps, loads
from server.store import RoomRecord, Store, StoredMessage
from server.store.base import Doc, JobRow, Tx

SYSTEM_USER = UserId("system")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def as_room(record: RoomRecord) -> Room:
    return Room(record.room, record.client, record.provider, record.plan, record.service,
                record.messaging)


@dataclass
class Outcome:
    """What a committed transaction leaves to publish."""

    room: RoomId
    session: dict[str, Any] | None = None
    messages: list[StoredMessage] = field(default_factory=list)
    jobs: bool = False
    charges: bool = False
    entries: list[LedgerEntry] = field(default_factory=list)
    charged: list[Charge] = field(default_factory=list)

    def cost(self) -> dict[str, Any]:
        """What the step cost the client: credits forfeited or returned, money charged."""
        return {
            "credit_forfeited": sum(e.credits for e in self.entries if e.kind == "forfeit"),
            "credit_returned": sum(e.credits for e in self.entries if e.kind == "release"),
            "charged_cents": sum(c.amount_cents for c in self.charged),
            "charges": [json.loads(dumps(c)) for c in self.charged],
        }


def session_json(session: LiveSession | MessagingSession) -> dict[str, Any]:
    """A session as clients see it (the `session` frame and the HTTP answers)."""
    if isinstance(session, LiveSession):
        return {
            "session": session.id, "kind": "live", "room": session.room,
            "state": session.state, "modality": session.modality,
            "start": session.start.isoformat(), "end": session.end.isoformat(),
            "client": session.client, "provider": session.provider, "by": session.by,
            "at": session.at.isoformat() if session.at else None,
            "confirm_by": session.confirm_by.isoformat(),
            "confirmed_at": session.confirmed_at.isoformat() if session.confirmed_at else None,
            "joined": sorted(session.joined), "absent": sorted(session.absent),
            "reschedules": session.reschedules,
        }
    ends = session.ends_at
    return {
        "session": session.id, "kind": "messaging", "room": session.room,
        "state": session.state, "client": session.client, "provider": session.provider,
        "by": session.by, "at": session.at.isoformat() if session.at else None,
        "length_s": int(session.length.total_seconds()),
        "started_at": session.started_at.isoformat() if session.started_at else None,
        "ends_at": ends.isoformat() if ends else None,
    }


NOTICE_TEXT = {
    "booked": "A session was booked.",
    "confirmed": "The provider confirmed the session.",
    "reminder": "Reminder: the session starts soon. Join with the link.",
    "rescheduled": "The session was moved to a new time.",
    "cancelled": "The session was cancelled.",
    "late_cancelled": "The session was cancelled inside the late window.",
    "lapsed": "The booking was not confirmed in time and lapsed; the credit is back.",
    "no_show": "The session was missed.",
    "messaging_started": "A messaging session started.",
    "messaging_ended": "The messaging session ended.",
}


class Sessions:
    """Session operations of one node: one transaction each, published after commit."""

    def __init__(self, store: Store, hub: Hub, *, clock: Clock = utc_now,
                 rules: Settings = DEFAULT_SETTINGS, public_url: str = "") -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self.rules = rules
        self.public_url = public_url.rstrip("/")
        self.on_jobs: Callable[[], None] = lambda: None
        self.on_session: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.on_charges: Callable[[], None] = lambda: None
        # every `send` checks its room: the rules' view of the record, made once per record
        self._send_rooms: dict[RoomId, tuple[RoomRecord, Room]] = {}

    # -- reading inside a transaction -------------------------------------------------------

    def _room(self, tx: Tx, room: RoomId) -> Room:
        record = tx.room(room)
        if record is None:
            raise NotFound(f"no room {room}")
        return as_room(record)

    def _ledger(self, tx: Tx, room: RoomId) -> CreditLedger:
        return replay(room, (loads(LedgerEntry, e) for e in tx.ledger(room)))

    def _live(self, tx: Tx, session: str) -> LiveSession:
        doc = tx.get_doc("live", session)
        if doc is None:
            raise NotFound(f"no live session {session}")
        return loads(LiveSession, doc.body)

    def _messaging(self, tx: Tx, session: str) -> MessagingSession:
        doc = tx.get_doc("messaging", session)
        if doc is None:
            raise NotFound(f"no messaging session {session}")
        return loads(MessagingSession, doc.body)

    def _schedule(self, tx: Tx, provider: UserId) -> ProviderSchedule:
        doc = tx.get_doc("schedule", provider)
        return loads(ProviderSchedule, doc.body) if doc else ProviderSchedule()

    def _busy(self, tx: Tx, provider: UserId, skip: str | None = None) -> list[Interval]:
        sessions = [loads(LiveSession, d.body) for d in tx.docs("live", owner=provider,
                                                                   active=True)]
        return slots.busy_time(s for s in sessions if s.id != skip)

    # -- writing inside a transaction -------------------------------------------------------

    def _persist(self, tx: Tx, step: Step[Any], out: Outcome,
                 before: LiveSession | None = None) -> None:
        session = step.session
        now_ms = ms(self.clock())
        if isinstance(session, LiveSession):
            tx.put_doc(Doc("live", session.id, session.room, session.provider, session.state,
                           session.final, dumps(session)))
            if session.final and session.state != "ended":
                tx.release_time(session.id)
            elif before is None or before.start != session.start:
                tx.release_time(session.id)
                tx.claim_time(session.provider, session.id, ms(session.start), ms(session.end))
        else:
            tx.put_doc(Doc("messaging", session.id, session.room, session.provider,
                           session.state, session.final, dumps(session)))
        self._effects(tx, out, step.entries, step.charges, step.schedule, step.cancel, now_ms)
        for notice in step.notices:
            out.messages.append(self._notice(tx, notice, now_ms))
        out.session = session_json(session)

    def _effects(self, tx: Tx, out: Outcome, entries: tuple[LedgerEntry, ...],
                 charges: tuple[Charge, ...], schedule: tuple[Job, ...] = (),
                 cancel: tuple[Job, ...] = (), now_ms: int = 0) -> None:
        if entries:
            tx.post(out.room, [dumps(e) for e in entries])
            out.entries += entries
        for c in charges:
            if tx.add_charge(c.key, out.room, dumps(c), now_ms):
                out.charges = True
                out.charged.append(c)
        for job in cancel:
            tx.cancel(job.key)
        for job in schedule:
            tx.schedule(JobRow(job.key, ms(job.due), job.kind, job.subject))
        out.jobs |= bool(schedule)

    def _notice(self, tx: Tx, notice: Notice, now_ms: int) -> StoredMessage:
        meta: dict[str, Any] = {"event": notice.kind, "session": notice.session,
                                "by": notice.by}
        if notice.absent:
            meta["absent"] = sorted(notice.absent)
        if notice.kind == "reminder":
            meta["join"] = f"{self.public_url}/live/{notice.session}"
        return tx.append(notice.room, SYSTEM_USER, "system", NOTICE_TEXT[notice.kind], now_ms,
                         json.dumps(meta, separators=(",", ":")))

    # -- running an operation ---------------------------------------------------------------

    async def run(self, room: RoomId, fn: Callable[[Tx, Outcome], None]) -> Outcome:
        """Run `fn` in one transaction, then publish what it did."""
        def body(tx: Tx) -> Outcome:
            out = Outcome(room)  # fresh on every try: the store may run `body` again
            fn(tx, out)
            return out

        out = await self.store.transact(body)
        await self.publish(out)
        return out

    async def publish(self, out: Outcome) -> None:
        if out.session is not None:
            await self.hub.relay(out.room, {"t": "session", "room": out.room,
                                            "session": out.session})
            if self.on_session is not None:
                await self.on_session(out.session)
        for message in out.messages:
            await self.hub.publish_message(out.room, message_frame(message))
        if out.jobs:
            self.on_jobs()
        if out.charges:
            self.on_charges()

    async def room_of_session(self, session: str) -> RoomId:
        def find(tx: Tx) -> RoomId:
            doc = tx.get_doc("live", session) or tx.get_doc("messaging", session)
            if doc is None or doc.room is None:
                raise NotFound(f"no session {session}")
            return RoomId(doc.room)

        return await self.store.view(find)

    # -- operations -------------------------------------------------------------------------

    async def room_created(self, record: RoomRecord) -> None:
        """R12: a plan that grants credits opens its first billing period."""
        now = self.clock()

        def fn(tx: Tx, out: Outcome) -> None:
            room = as_room(record)
            period = periods.period_containing(now)
            entries = periods.open_period(room, self._ledger(tx, room.id), period, now,
                                          self.rules)
            if entries:
                self._effects(tx, out, entries, (), (periods.period_end_job(room, period),))

        await self.run(record.room, fn)

    async def book(self, room_id: RoomId, user: UserId, body: dict[str, Any]) -> Outcome:
        kind = body.get("kind")
        now = self.clock()
        session_id = SessionId("s_" + secrets.token_urlsafe(10))
        if kind == "messaging":
            def fn(tx: Tx, out: Outcome) -> None:
                room = self._room(tx, room_id)
                open_ = [loads(MessagingSession, d.body)
                         for d in tx.docs("messaging", room=room_id, active=True)]
                step = booking.book_messaging(room, now, user, session_id=session_id,
                                              open_sessions=open_, settings=self.rules)
                self._persist(tx, step, out)
            return await self.run(room_id, fn)
        if kind != "live":
            raise BadRequest("`kind` must be live or messaging")
        request = LiveBooking(parse_modality(body.get("modality")),
                              parse_start(body.get("start")),
                              parse_bool(body, "buy_credit"))

        def book_live(tx: Tx, out: Outcome) -> None:
            room = self._room(tx, room_id)
            step = booking.book_live(
                room, request, now, user, session_id=session_id,
                ledger=self._ledger(tx, room_id), schedule=self._schedule(tx, room.provider),
                busy=self._busy(tx, room.provider), settings=self.rules)
            self._persist(tx, step, out)

        return await self.run(room_id, book_live)

    async def live_step(self, session_id: str, event: lifecycle.LiveEvent,
                        actor: Actor) -> Outcome:
        room_id = await self.room_of_session(session_id)
        now = self.clock()

        def fn(tx: Tx, out: Outcome) -> None:
            before = self._live(tx, session_id)
            room = self._room(tx, RoomId(before.room))
            if isinstance(event, lifecycle.Reschedule):
                slots.check_slot(self._schedule(tx, before.provider),
                                 self._busy(tx, before.provider, skip=before.id),
                                 event.start, before.length, now)
            step = lifecycle.apply(before, event, now, actor, room=room,
                                   ledger=self._ledger(tx, room.id), settings=self.rules)
            self._persist(tx, step, out, before)

        return await self.run(room_id, fn)

    async def messaging_step(self, session_id: str, event: messaging.MessagingEvent,
                             actor: Actor) -> Outcome:
        room_id = await self.room_of_session(session_id)
        now = self.clock()

        def fn(tx: Tx, out: Outcome) -> None:
            before = self._messaging(tx, session_id)
            room = self._room(tx, RoomId(before.room))
            self._persist(tx, messaging.apply(before, event, now, actor, room=room), out)

        return await self.run(room_id, fn)

    async def session_step(self, session_id: str, action: str, actor: UserId,
                           body: dict[str, Any]) -> Outcome:
        """An HTTP action on a session: confirm, cancel, reschedule (live); start, cancel."""
        kind = await self.store.view(lambda tx: "live" if tx.get_doc("live", session_id)
                                     else "messaging" if tx.get_doc("messaging", session_id)
                                     else None)
        if kind is None:
            raise NotFound(f"no session {session_id}")
        if kind == "messaging":
            events: dict[str, messaging.MessagingEvent] = {
                "start": messaging.StartMessaging(), "cancel": messaging.CancelMessaging()}
            if action not in events:
                raise RuleError("R5", f"a messaging session cannot {action}")
            return await self.messaging_step(session_id, events[action], actor)
        live_event: lifecycle.LiveEvent
        match action:
            case "confirm":
                live_event = lifecycle.Confirm()
            case "cancel":
                live_event = lifecycle.Cancel()
            case "reschedule":
                live_event = lifecycle.Reschedule(parse_start(body.get("start")),
                                                  parse_bool(body, "buy_credit"))
            case _:
                raise BadRequest(f"a live session cannot {action}")
        return await self.live_step(session_id, live_event, actor)

    async def grant_credits(self, room_id: RoomId, count: int) -> Outcome:
        now = self.clock()

        def fn(tx: Tx, out: Outcome) -> None:
            self._room(tx, room_id)
            self._effects(tx, out, (grant(room_id, count, now, pool="kept", rule="R7"),), ())

        return await self.run(room_id, fn)

    # -- deadlines (R17) --------------------------------------------------------------------

    async def fire(self, row: JobRow) -> bool:
        """Apply a due job once: False when another node took it, or it was obsolete."""
        job = Job(datetime.fromtimestamp(row.due_ms / 1000, UTC), row.kind,  # type: ignore[arg-type]
                  row.subject)
        now = self.clock()
        fired = False

        def fn(tx: Tx, out: Outcome) -> None:
            nonlocal fired
            if not tx.take_job(row.key):
                return
            fired = True
            try:
                self._apply_job(tx, out, job, now)
            except RuleError:
                out.session = None  # obsolete: the session moved on; the job is gone

        room = RoomId(row.subject) if row.kind == "period_end" else await self._job_room(row)
        await self.run(room, fn)
        return fired

    async def _job_room(self, row: JobRow) -> RoomId:
        try:
            return await self.room_of_session(row.subject)
        except NotFound:
            return RoomId("")

    def _apply_job(self, tx: Tx, out: Outcome, job: Job, now: datetime) -> None:
        if job.kind == "period_end":
            room = self._room(tx, RoomId(job.subject))
            period = periods.period_containing(job.due - timedelta(microseconds=1))
            entries = periods.close_period(room, self._ledger(tx, room.id), period, now,
                                           self.rules)
            following = period.next()
            self._effects(tx, out, entries, (), (periods.period_end_job(room, following),))
        elif job.kind == "end_messaging":
            current = self._messaging(tx, job.subject)
            room = self._room(tx, RoomId(current.room))
            self._persist(tx, messaging.apply(current, messaging.event_for_job(job), now,
                                              SYSTEM, room=room), out)
        else:
            before = self._live(tx, job.subject)
            room = self._room(tx, RoomId(before.room))
            step = lifecycle.apply(before, lifecycle.event_for_job(job), now, SYSTEM,
                                   room=room, ledger=self._ledger(tx, room.id),
                                   settings=self.rules)
            self._persist(tx, step, out, before)

    # -- reads ------------------------------------------------------------------------------

    async def messaging_now(self, room: RoomId) -> MessagingSession | None:
        """The room's latest messaging session (R2/R5 check on `send`)."""
        def latest(tx: Tx) -> MessagingSession | None:
            found = [loads(MessagingSession, d.body) for d in tx.docs("messaging", room=room)]
            started = [s for s in found if s.started_at is not None]
            return max(started, key=lambda s: s.started_at or s.booked_at) if started else None

        return await self.store.view(latest)

    async def check_send(self, record: RoomRecord, user: UserId, now: datetime) -> None:
        """R2, R3, R5: may `user` send to the room at `now`? (`RuleError` if not)"""
        cached = self._send_rooms.get(record.room)
        if cached is not None and cached[0] is record:
            room = cached[1]
        else:  # a room's record is replaced whole when it changes
            room = as_room(record)
            self._send_rooms[record.room] = (record, room)
        current = None
        if capabilities.messaging_policy(room) == "in_session":
            current = await self.messaging_now(record.room)
        capabilities.check_send(room, user, now, current)

    async def reply_due(self, provider: UserId, rooms: list[RoomRecord]
                        ) -> list[dict[str, Any]]:
        """R4: each room of the provider with its reply-due time, oldest first."""
        now = self.clock()

        def fn(tx: Tx) -> list[dict[str, Any]]:
            schedule = self._schedule(tx, provider)
            hours = schedule.hours or DEFAULT_HOURS
            listed = []
            for record in rooms:
                since = tx.unanswered_since(record.room, record.client, provider)
                if since is None:
                    continue
                due = room_reply_due(datetime.fromtimestamp(since / 1000, UTC), hours)
                assert due is not None
                listed.append({"room": record.room, "client": record.client,
                               "waiting_since": codec.iso(since),
                               "reply_due": due.astimezone(UTC).isoformat(),
                               "overdue": is_overdue(due, now)})
            return sorted(listed, key=lambda r: r["reply_due"])

        return await self.store.view(fn)

    async def set_hours(self, provider: UserId, hours: WorkingHours | None,
                        extra: Interval | None) -> ProviderSchedule:
        def fn(tx: Tx) -> ProviderSchedule:
            current = self._schedule(tx, provider)
            updated = ProviderSchedule(
                hours if hours is not None else current.hours,
                current.extra + ((extra,) if extra is not None else ()))
            tx.put_doc(Doc("schedule", provider, None, provider, "published", False,
                           dumps(updated)))
            return updated

        return await self.store.transact(fn)

    async def free_slots(self, provider: UserId, span: Interval) -> list[Interval]:
        now = self.clock()
        return await self.store.view(lambda tx: slots.free_slots(
            self._schedule(tx, provider), self._busy(tx, provider), span,
            self.rules.live_session_length, now, self.rules.slot_step))

    async def share_availability(self, record: RoomRecord, user: UserId,
                                 intervals: list[Interval]) -> Outcome:
        """R7: the client shares their own availability with the provider, in the room."""
        if user != record.client:
            raise Forbidden("only the room's client shares their availability (R7)")
        now_ms = ms(self.clock())

        def fn(tx: Tx, out: Outcome) -> None:
            meta = {"event": "availability", "by": "client",
                    "intervals": [{"start": i.start.isoformat(), "end": i.end.isoformat()}
                                  for i in intervals]}
            out.messages.append(tx.append(
                record.room, SYSTEM_USER, "system",
                "The client shared times that would suit them for a session.", now_ms,
                json.dumps(meta, separators=(",", ":"))))

        return await self.run(record.room, fn)

    async def view_session(self, session_id: str) -> dict[str, Any]:
        def fn(tx: Tx) -> dict[str, Any]:
            doc = tx.get_doc("live", session_id) or tx.get_doc("messaging", session_id)
            if doc is None:
                raise NotFound(f"no session {session_id}")
            cls = LiveSession if doc.kind == "live" else MessagingSession
            found = session_json(loads(cls, doc.body))  # type: ignore[arg-type]
            attended = tx.get_doc("attendance", session_id)
            if attended is not None:
                found["attendance"] = json.loads(attended.body)
            return found

        return await self.store.view(fn)

    async def record_attendance(self, session_id: str, attendance: Any) -> None:
        """Keep who was present when in a live session, its starts and its end (history)."""
        def fn(tx: Tx) -> None:
            doc = tx.get_doc("live", session_id)
            if doc is None:
                return
            tx.put_doc(Doc("attendance", session_id, doc.room, doc.owner,
                           str(attendance.end_reason or "open"), True, dumps(attendance)))

        await self.store.transact(fn)

    async def room_sessions(self, room: RoomId) -> list[dict[str, Any]]:
        def fn(tx: Tx) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = [session_json(loads(LiveSession, d.body))
                                           for d in tx.docs("live", room=room)]
            found += [session_json(loads(MessagingSession, d.body))
                      for d in tx.docs("messaging", room=room)]
            return sorted(found, key=lambda s: s.get("start") or s.get("at") or "")

        return await self.store.view(fn)

    async def credits(self, room: RoomId) -> dict[str, Any]:
        def fn(tx: Tx) -> dict[str, Any]:
            ledger = self._ledger(tx, room)
            return credits_json(ledger, tx)

        return await self.store.view(fn)


def credits_json(ledger: CreditLedger, tx: Tx) -> dict[str, Any]:
    charges = [json.loads(c) for c in tx.charges(ledger.room)]
    return {
        "room": ledger.room, "available": ledger.available(),
        "plan": ledger.available("plan"), "kept": ledger.available("kept"),
        "held": ledger.held(),
        "entries": [json.loads(dumps(e)) for e in ledger.entries],
        "charges": charges,
        "charged_cents": sum(c["amount_cents"] for c in charges),
    }


def message_frame(message: StoredMessage) -> dict[str, Any]:
    """The `msg` frame of a stored message (system messages carry their `event`)."""
    frame: dict[str, Any] = {"t": "msg", "room": message.room, "seq": message.seq,
                             "from": message.sender, "kind": message.kind,
                             "ts": codec.iso(message.ts_ms), "cmid": message.cmid}
    if message.media is not None:
        frame["media"] = message.media
    else:
        frame["body"] = message.body
    if message.meta is not None:
        frame["event"] = json.loads(message.meta)
    return frame


# Times a request may name: far wider than any booking, narrow enough that no sum of a
# time and a duration, nor a change of offset, leaves the calendar.
FIRST_YEAR, LAST_YEAR = 1970, 9000


def parse_time(value: object, name: str, in_url: bool = False) -> datetime:
    """`value` as an ISO 8601 time with an offset, or a `BadRequest` naming `name`
    (`in_url`: it came in a URL's query, where an unescaped '+' reads as a space)."""
    if value is None:
        raise BadRequest(f"`{name}` is required: an ISO 8601 time with an offset")
    if not isinstance(value, str):
        raise BadRequest(f"`{name}` must be an ISO 8601 time with an offset")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        hint = " (a '+' in a URL must be written %2B)" if in_url and " " in value else ""
        raise BadRequest(f"`{name}` must be an ISO 8601 time with an offset{hint}") from None
    if when.tzinfo is None:
        raise BadRequest(f"`{name}` needs an offset, e.g. +00:00")
    if not FIRST_YEAR < when.year < LAST_YEAR:
        raise BadRequest(f"`{name}` must fall after the year {FIRST_YEAR} and before "
                         f"{LAST_YEAR}")
    return when


def parse_start(value: object) -> datetime:
    start = parse_time(value, "start")
    if start.second or start.microsecond or start.minute % 5:
        raise BadRequest("`start` must fall on a five-minute mark")
    return start


def parse_modality(value: object) -> Any:
    if value not in ("video", "audio", "chat"):
        raise BadRequest("`modality` must be video, audio or chat")
    return value


def parse_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"`{name}` must be true or false")
    return value
