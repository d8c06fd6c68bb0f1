"""Fixtures of the scheduler tests: a fake clock and an EditScheduler on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.streaming import EditScheduler
from tests.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def scheduler(clock: FakeClock) -> AsyncIterator[EditScheduler]:
    s = EditScheduler(clock)
    yield s
    await s.aclose()
