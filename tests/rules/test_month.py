"""A month of a self-pay room through the pure rules, with the ledger checked to the cent."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from rules.story import CLIENT, MIN, PROVIDER, Scenario

from rooms.lifecycle import Begin, Cancel, Confirm, End, Join, NoShowCheck
from rooms.periods import close_period, open_period, period_containing
from rooms.room import SYSTEM
from rooms.settings import DEFAULT_SETTINGS


def may(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 5, day, hour, tzinfo=UTC)


def test_r12_a_month_of_a_self_pay_room() -> None:
    plans = dict(DEFAULT_SETTINGS.plans)
    plans["self_pay"] = replace(plans["self_pay"], credits_per_period=5)
    s = Scenario(settings=replace(DEFAULT_SETTINGS, plans=plans))
    period = period_containing(may(1))
    s.ledger = s.ledger.post(*open_period(s.room, s.ledger, period, may(1, 0), s.settings))
    assert s.ledger.available("plan") == 5

    # attended
    s.book(may(7), now=may(4))
    s.do(Confirm(), may(4, 13), PROVIDER)
    s.do(Join(), may(7) - 5 * MIN, CLIENT)
    s.do(Join(), may(7) - 2 * MIN, PROVIDER)
    s.do(Begin(), may(7), SYSTEM)
    s.do(End(), may(7, 13), PROVIDER)
    # late cancel (R14)
    s.book(may(12), now=may(8))
    s.do(Confirm(), may(8, 13), PROVIDER)
    s.do(Cancel(), may(11, 18), CLIENT)
    # client no-show (R14, R15)
    s.book(may(15), now=may(9))
    s.do(Confirm(), may(9, 13), PROVIDER)
    s.do(Join(), may(15), PROVIDER)
    s.do(NoShowCheck(), may(15) + 10 * MIN, SYSTEM)
    # provider cancels (R11), the client rebooks with the same credit
    s.book(may(20), now=may(10))
    s.do(Confirm(), may(10, 13), PROVIDER)
    s.do(Cancel(), may(19), PROVIDER)
    assert s.ledger.available("plan") == 2
    s.book(may(22), now=may(19, 13))
    # a bought credit, cancelled in time: it stays with the client and never lapses
    s.book(may(28), now=may(19, 14))
    s.book(may(29), now=may(19, 15), buy=True)
    s.do(Cancel(), may(20), CLIENT)

    assert [(c.kind, c.amount_cents) for c in s.charges] == [
        ("late_cancel", 12_000),
        ("no_show", 12_000),
        ("purchase", 12_000),
    ]
    assert sum(c.amount_cents for c in s.charges) == 36_000
    assert (s.ledger.available("plan"), s.ledger.available("kept"), s.ledger.held()) == (0, 1, 2)

    s.ledger = s.ledger.post(*close_period(s.room, s.ledger, period, period.end, s.settings))
    assert (s.ledger.available("plan"), s.ledger.available("kept"), s.ledger.held()) == (5, 1, 2)
    assert s.ledger.available() == sum(e.available_delta() for e in s.ledger.entries)
    assert [n.kind for n in s.notices].count("booked") == 7
