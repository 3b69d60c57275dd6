"""Confide's session rules, pure: no sockets, no database, no clock, no asyncio.

Every function takes `now` (an aware datetime) when time matters, returns what
happened as immutable data, or raises `server.errors.RuleError(rule, message)`
and changes nothing. The hub (`server/`) decodes, calls these, persists the
result in one transaction, then publishes. Decisions: docs/sessions.md.

Data (frozen dataclasses)
-------------------------
- `rooms.room.Room(id, client, provider, plan, service, messaging_included=False)`;
  actors are a `UserId` or `rooms.room.SYSTEM` (a deadline job firing).
- `rooms.sessions.LiveSession`, `rooms.sessions.MessagingSession`: the stored
  session records (state, who and when). `LiveState` names are the wire's.
- `rooms.settings.Settings` (windows, offsets, lengths; `DEFAULT_SETTINGS`) and
  `PlanTerms` per plan (modalities, messaging length, credits, price in cents).
- `rooms.ledger.CreditLedger(room, entries)`, `LedgerEntry`, `Charge`.
- `rooms.effects.Step[S]`: `session` (the new record), `entries` (post them),
  `charges` (write and bill them; `key` is unique), `notices` (one system message
  each), `schedule` / `cancel` (`Job`s with a unique `key`).

Checks (return None or the member's side; raise RuleError)
----------------------------------------------------------
- `capabilities.check_read(room, user) -> Side`                                  R1
- `capabilities.check_send(room, sender, now, messaging=None) -> None`       R1-R3, R5
- `capabilities.allowed_modalities(room, settings) -> frozenset[Modality]`    R3, R6
- `capabilities.check_modality(room, modality, settings) -> None`             R3, R6
- `capabilities.check_session_actor(room, actor) -> Side`                     R1, R13

Booking
-------
- `booking.book_live(room, LiveBooking(modality, start, buy_credit), now, actor, *,
  session_id, ledger, schedule, busy, settings) -> Step[LiveSession]`      R1, R3, R6, R7
- `booking.book_messaging(room, now, actor, *, session_id, open_sessions, settings)
  -> Step[MessagingSession]`                                                  R2, R3, R5
- `slots.free_slots(schedule, busy, span, length, now, step) -> list[Interval]`     R7
- `slots.check_slot(schedule, busy, start, length, now) -> Interval` (also before a
  reschedule); `slots.busy_time(sessions) -> list[Interval]`;
  `slots.ProviderSchedule(hours: WorkingHours | None, extra: tuple[Interval, ...])`

Lifecycles (one transition table each; `*_diagram()` renders it as Mermaid)
---------------------------------------------------------------------------
- `lifecycle.apply(session, event, now, actor, *, room, ledger, settings)
  -> Step[LiveSession]`; events: `Confirm, Remind(due), Join, Leave, Begin, Cancel,
  Reschedule(start, buy_credit), Lapse, NoShowCheck(joined=None), End`.  R8-R11, R13-R15
- `messaging.apply(session, event, now, actor, *, room) -> Step[MessagingSession]`;
  events: `StartMessaging, CancelMessaging, EndMessaging, SwitchToLive`.             R5
- `lifecycle.event_for_job(job)`, `messaging.event_for_job(job)`: the event a fired
  job applies with actor `SYSTEM`; a RuleError from it means "obsolete, drop".  R17

Deadlines, credits, time
------------------------
- `deadlines.live_jobs(session, settings)`, `deadlines.messaging_jobs(session)`
  -> frozenset[Job]: the jobs a session has in its state.                 R5, R8, R9, R15
- `deadlines.no_show_outcome(joined) -> NoShowOutcome | None`,
  `deadlines.sides_joined_by(records, deadline)`.                        R11, R14, R15
- `periods.period_containing(at) -> BillingPeriod` (calendar month, UTC),
  `periods.open_period(room, ledger, period, at)` and `periods.close_period(room,
  ledger, period, at)` -> entries (idempotent), `periods.period_end_job(room, period)`. R12
- `ledger.grant(room, credits, at, pool="kept")` (admin credits),
  `CreditLedger.post(*entries)`, `.available(pool=None)`, `.held()`, `.held_by(session)`,
  `ledger.replay(room, entries)`.                                     R7, R11, R12, R14
- `hours.reply_due(sent_at, hours) -> datetime`, `hours.room_reply_due(unanswered_since,
  hours)`, `hours.is_overdue(due, now)`, `hours.WorkingHours.weekdays(tz, ...)`.       R4
- `diagrams.lifecycle_markdown()`: the docs' lifecycle section.
"""
