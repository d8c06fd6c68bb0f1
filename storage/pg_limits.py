"""PgLimits: platform budgets shared by replicas, one row per budget in PostgreSQL.

A claim is one statement, `rate_take()` (migration 005): it locks the budgets' rows, checks
each (a token bucket as GCRA, or a sliding window), and records the call in all of them or
in none. The database's clock decides, so replicas' clocks need not agree.

Why PostgreSQL and not Redis: the replicas already share it, a claim costs one round trip
(well under a millisecond on the same host, against budgets of 1 to 50 calls per second),
and it adds no server to run. Redis would answer faster, but nothing here waits on that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.ports import Budget
from storage.postgres import PostgresStore


class PgLimits:
    """SharedLimits on the store's database."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def take(self, budgets: Sequence[Budget]) -> float:
        """Claim one call of each budget, all or none; 0, or seconds until it might go."""
        # In key order: two claims on the same new budgets must lock their rows in one order.
        budgets = sorted(budgets, key=lambda b: b.key)
        wait = await self.store.pool.fetchval(
            "SELECT rate_take($1::text[], $2::float8[], $3::int[], $4::float8[])",
            [b.key for b in budgets],
            [b.rate for b in budgets],
            [b.burst for b in budgets],
            [b.window for b in budgets],
        )
        return float(wait)

    async def prune(self, *, idle_for: timedelta) -> int:
        """Forget budgets unused for `idle_for` (every channel ever posted in has one)."""
        cutoff = (datetime.now(UTC) - idle_for).timestamp()
        rows = await self.store.pool.fetch(
            "DELETE FROM rate_limits WHERE used_at < $1 RETURNING 1", cutoff
        )
        return len(rows)
