"""Fixtures of the rule tests: a self-pay therapy room with one credit."""

from __future__ import annotations

import pytest
from rules.story import Scenario


@pytest.fixture
def scenario() -> Scenario:
    s = Scenario()
    s.give(1)
    return s
