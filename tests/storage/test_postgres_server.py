"""The test PostgreSQL server (tests/postgres.py) with the driver the Postgres store will
use (asyncpg): it starts, serves, and its advisory locks exclude across connections, which
is what several replicas will rely on to run a thread's turns one at a time."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.helpers import until


async def test_server_answers_and_advisory_locks_exclude(postgres_url: str) -> None:
    a = await asyncpg.connect(postgres_url)
    b = await asyncpg.connect(postgres_url)
    try:
        assert await a.fetchval("SELECT current_setting('server_version_num')::int") >= 150000
        assert await a.fetchval("SELECT pg_try_advisory_lock(42)") is True
        assert await b.fetchval("SELECT pg_try_advisory_lock(42)") is False
        waiter = asyncio.ensure_future(b.fetchval("SELECT pg_advisory_lock(42)"))
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        seen: list[int] = []

        async def blocked() -> bool:
            seen.append(await a.fetchval(waiting))
            return seen[-1] == 1

        await until(blocked, limit=10)  # b is queued behind a's lock
        assert not waiter.done()
        await a.fetchval("SELECT pg_advisory_unlock(42)")
        await asyncio.wait_for(waiter, 10)  # b gets it once a lets go
        assert await a.fetchval("SELECT pg_try_advisory_lock(42)") is False
    finally:
        await a.close()
        await b.close()
