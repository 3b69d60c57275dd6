"""A room, its ledger and a fixed clock for the rule tests: `Scenario` walks a session's life."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rooms import lifecycle
from rooms.booking import LiveBooking, book_live
from rooms.effects import Job, Notice, Step
from rooms.ledger import Charge, CreditLedger, grant
from rooms.room import SYSTEM, Actor, Room
from rooms.sessions import LiveSession
from rooms.settings import DEFAULT_SETTINGS, Modality, Settings
from rooms.slots import ProviderSchedule
from server.ids import Plan, RoomId, Service, SessionId, UserId

# Monday 4 May 2026, noon UTC.
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
CLIENT = UserId("u-client")
PROVIDER = UserId("u-provider")
ADMIN = UserId("u-admin")
STRANGER = UserId("u-stranger")
H = timedelta(hours=1)
MIN = timedelta(minutes=1)


def make_room(plan: Plan = "self_pay", service: Service = "therapy", **kw: bool) -> Room:
    return Room(RoomId("r-1"), CLIENT, PROVIDER, plan, service, **kw)


@dataclass
class Scenario:
    """One room's story: a ledger, sessions, and everything the rules asked to persist."""

    room: Room = field(default_factory=make_room)
    settings: Settings = DEFAULT_SETTINGS
    ledger: CreditLedger = field(init=False)
    session: LiveSession | None = None
    charges: list[Charge] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    jobs: set[Job] = field(default_factory=set)
    count: int = 0

    def __post_init__(self) -> None:
        self.ledger = CreditLedger(self.room.id)

    def give(self, credits: int, pool: str = "kept") -> None:
        assert pool in ("kept", "plan")
        self.ledger = self.ledger.post(
            grant(self.room.id, credits, NOW - 30 * H, "kept" if pool == "kept" else "plan")
        )

    def _record(self, step: Step[LiveSession]) -> LiveSession:
        self.ledger = self.ledger.post(*step.entries)
        self.charges += step.charges
        self.notices += step.notices
        self.jobs = (self.jobs - set(step.cancel)) | set(step.schedule)
        self.session = step.session
        return step.session

    def book(
        self,
        start: datetime,
        now: datetime = NOW,
        modality: Modality = "video",
        buy: bool = False,
        schedule: ProviderSchedule | None = None,
    ) -> LiveSession:
        self.count += 1
        step = book_live(
            self.room,
            LiveBooking(modality, start, buy),
            now,
            CLIENT,
            session_id=SessionId(f"s-{self.count}"),
            ledger=self.ledger,
            schedule=schedule or ProviderSchedule(),
            busy=(),
            settings=self.settings,
        )
        return self._record(step)

    def do(self, event: lifecycle.LiveEvent, now: datetime, actor: Actor = SYSTEM) -> LiveSession:
        assert self.session is not None
        step = lifecycle.apply(
            self.session,
            event,
            now,
            actor,
            room=self.room,
            ledger=self.ledger,
            settings=self.settings,
        )
        return self._record(step)

    def confirmed(self, start: datetime, now: datetime = NOW) -> LiveSession:
        self.book(start, now)
        return self.do(lifecycle.Confirm(), now + MIN, PROVIDER)

    def due(self, kind: str) -> list[Job]:
        return sorted(j for j in self.jobs if j.kind == kind)
