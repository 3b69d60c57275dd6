"""The tunable numbers of the session rules: windows, offsets, lengths and prices.

Every rule that RULES.md leaves as "a setting" reads it from here, so the hub can
load one `Settings` from configuration and pass it to every rule function.
Defaults are the decisions written in docs/sessions.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Literal

from server.ids import Plan

Modality = Literal["video", "audio", "chat"]
MODALITIES: tuple[Modality, ...] = ("video", "audio", "chat")


@dataclass(frozen=True)
class PlanTerms:
    """What one plan grants and costs (R2, R5, R6, R12, R14)."""

    live_modalities: frozenset[Modality] = frozenset(MODALITIES)
    messaging_session_length: timedelta = timedelta(minutes=30)  # R5
    credits_per_period: int = 0  # R12: plan credits granted each billing period
    sells_credits: bool = False  # R7: the client may buy a credit while booking
    session_price_cents: int = 12_000  # R14: the "full session cost"; also a credit's price


DEFAULT_PLAN_TERMS: Mapping[Plan, PlanTerms] = MappingProxyType(
    {
        "eap": PlanTerms(),
        "bh": PlanTerms(),
        "org": PlanTerms(),
        "self_pay": PlanTerms(credits_per_period=4, sells_credits=True),
    }
)


@dataclass(frozen=True)
class Settings:
    """All session-rule settings, with the project's defaults."""

    confirm_lead: timedelta = timedelta(hours=24)  # R8
    reminder_offsets: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(minutes=15))  # R9
    join_opens: timedelta = timedelta(minutes=10)  # R10
    no_show_grace: timedelta = timedelta(minutes=10)  # R15
    late_window: timedelta = timedelta(hours=24)  # R14
    live_session_length: timedelta = timedelta(minutes=50)  # R7: the length of a slot
    live_overrun: timedelta = timedelta(minutes=30)  # a started session ends by itself after
    slot_step: timedelta = timedelta(minutes=30)  # R7: free slots start on this grid
    plans: Mapping[Plan, PlanTerms] = field(default_factory=lambda: DEFAULT_PLAN_TERMS)

    def terms(self, plan: Plan) -> PlanTerms:
        return self.plans[plan]


DEFAULT_SETTINGS = Settings()
