"""Waiting for a platform budget shared by replicas, before a call goes out.

A replica's own limiter (bot/limiters.py, bot/adaptive.py) decides which of its calls go
first; with replicas, the call then also claims its slot from the budget every replica
counts against (SharedLimits, e.g. storage/pg_limits.py), so N replicas never send N times
the rate. Every replica claims on the same terms, the budget as declared less one call
(`terms`); what an adaptive limiter learns paces only its own replica. If the shared store
cannot answer, the call goes on the local limit alone: a reply is worth more than
exactness during a database hiccup.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace

from bot.clock import Clock
from bot.limiters import Limiter
from bot.ports import Budget, SharedLimits

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0
SPENT_KEYS = 1024  # budgets remembered as recently spent, before old ones are forgotten
SPENT_KEEP_S = 60.0
# A claim slower than this is given up (the call goes on the local limit): a database that
# hangs must not hold every platform call. Not less: on a loaded box claims of 0.5 s were
# seen, and replicas pacing alone then drew 429s (tests/e2e/test_replicas.py).
CLAIM_TIMEOUT_S = 2.0


def terms(bucket: Limiter) -> list[Budget]:
    """The budgets a call of `bucket` counts against (it and its parents), as every
    replica counts them: the budget as declared (not this replica's adaptive estimate),
    less one call of burst.

    Declared, because replicas claiming one budget on different terms do not share it: a
    replica whose estimate a 429 halved needs the budget nearly full to claim a call, and
    starves while the others claim on their bigger terms (seen: a thread stalled 20 s).
    Less one call, because a call is claimed on the database's clock before it is sent:
    calls claimed exactly one interval apart can reach the platform closer together (their
    round trips differ), and a bucket kept full to the last token answers those with 429s.
    Each replica's own limiter still paces it by what it has learned."""
    out: list[Budget] = []
    node: Limiter | None = bucket
    while node is not None:
        budget = replace(node.budget, burst=max(1, node.budget.burst - 1))
        if math.isfinite(budget.rate) and budget.rate > 0:
            out.append(budget)
        node = node.parent
    return out


class SharedSlots:
    """Claims each call's slot from the shared budgets, waiting while they are spent."""

    def __init__(self, limits: SharedLimits, clock: Clock) -> None:
        self.limits = limits
        self.clock = clock
        self.waits = 0  # calls that waited for another replica's use of a budget
        self.errors = 0
        self._warned_at = -math.inf
        # Budget key -> when a claim on it last found it spent (by any replica): what this
        # replica knows of the others' use, for EditScheduler.spare().
        self._spent_at: dict[str, float] = {}

    def spent_within(self, key: str, seconds: float) -> bool:
        """True when a claim on budget `key` found it spent in the last `seconds`."""
        return self.clock.now() - self._spent_at.get(key, -math.inf) < seconds

    def _spent(self, key: str) -> None:
        now = self.clock.now()
        if len(self._spent_at) >= SPENT_KEYS:  # forget budgets not crowded for a while
            self._spent_at = {k: t for k, t in self._spent_at.items() if now - t < SPENT_KEEP_S}
        self._spent_at[key] = now

    async def slot(self, bucket: Limiter) -> bool:
        """Return once the call may go by every replica's count (or the count failed);
        True when it had to wait for the other replicas' calls."""
        budgets = terms(bucket)
        if not budgets:
            return False
        waited = False
        while True:
            try:
                wait = await asyncio.wait_for(self.limits.take(budgets), CLAIM_TIMEOUT_S)
            except Exception as exc:
                self.errors += 1
                now = self.clock.now()
                if now - self._warned_at >= WARN_EVERY_S:
                    self._warned_at = now
                    log.warning(
                        "shared budget %s unavailable, pacing locally: %r", budgets[0].key, exc
                    )
                return waited
            if wait <= 0:
                return waited
            if not waited:
                waited = True
                self.waits += 1
            self._spent(budgets[0].key)
            await self.clock.sleep(wait)
