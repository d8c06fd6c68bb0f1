from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.discord import ADMIN_ROLE, FakeDiscord
from tests.fakes.slack import FakeSlack

ADA, BOB = "100000000000000001", "100000000000000002"  # Discord users; Ada is an admin


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    fake.add_user(ADA, "ada", roles=[ADMIN_ROLE])
    fake.add_user(BOB, "bob")
    await fake.start()
    yield fake
    await fake.close()
