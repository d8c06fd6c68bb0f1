from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bot.gemini import GeminiChatModel
from bot.ports import Store
from storage.memory import MemoryStore
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.fakes.discord import ADMIN_ROLE, FakeDiscord
from tests.fakes.gemini import API_KEY, FakeGemini
from tests.fakes.slack import FakeSlack
from tests.postgres import (
    HOW_TO_GET,
    PostgresServer,
    create_database,
    drop_database,
    find_bindir,
)

ROOT = Path(__file__).resolve().parent.parent
ADA, BOB = "100000000000000001", "100000000000000002"  # Discord users; Ada is an admin


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    fake = FakeGemini()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def gemini(fake_gemini: FakeGemini) -> AsyncIterator[GeminiChatModel]:
    model = GeminiChatModel(
        api_key=API_KEY,
        default_model="gemini-test",
        base_url=fake_gemini.base_url,
        backoff_base=0.01,
        upload_poll_seconds=0.01,
    )
    try:
        yield model
    finally:
        await model.aclose()


@pytest.fixture(params=["sqlite", "memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store implementation in turn, fresh and open (the contract suite's subject)."""
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(
            tmp_path / "db.sqlite", blob_dir=tmp_path / "blobs", max_blob_bytes=1024 * 1024
        )
    elif request.param == "postgres":
        s = PostgresStore(request.getfixturevalue("database"), max_blob_bytes=1024 * 1024)
    else:
        s = MemoryStore(max_blob_bytes=1024 * 1024)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


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


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server (sync, so that an async
    fixture may ask for it by name)."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture
async def pg_stores(database: str) -> AsyncIterator[Callable[[], Awaitable[PostgresStore]]]:
    """A factory of open PostgresStores on one fresh database (one per "replica"), all
    closed at the end."""
    async with AsyncExitStack() as stack:

        async def make() -> PostgresStore:
            store = PostgresStore(database, max_blob_bytes=1024)
            await store.open()
            stack.push_async_callback(store.close)
            return store

        yield make


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for this test session (one per xdist worker)."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(HOW_TO_GET)  # in CI these tests never skip
        pytest.skip(HOW_TO_GET)
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
