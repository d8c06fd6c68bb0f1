"""Waiting for a platform budget shared by replicas, before a call goes out.

A replica's own limiter (bot/limiters.py, bot/adaptive.py) decides which of its calls go
first; with replicas, the call then also claims its slot from the budget every replica
counts against (SharedLimits, e.g. storage/pg_limits.py), so N replicas never send N times
the rate. The shared budget uses what this replica's limiter believes now (an adaptive
estimate included). If the shared store cannot answer, the call goes on the local limit
alone: a reply is worth more than exactness during a database hiccup.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace

from bot.adaptive import AdaptiveBucket
from bot.clock import Clock
from bot.limiters import Limiter
from bot.ports import Budget, SharedLimits

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0
# A claim slower than this is given up (the call goes on the local limit): a database that
# hangs must not hold every platform call.
CLAIM_TIMEOUT_S = 0.5


def terms(bucket: Limiter) -> list[Budget]:
    """The budgets a call of `bucket` counts against (it and its parents), as the
    limiters see them now."""
    out: list[Budget] = []
    node: Limiter | None = bucket
    while node is not None:
        budget = node.budget
        if isinstance(node, AdaptiveBucket):
            budget = replace(budget, rate=node.rate, burst=node.burst)
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
            await self.clock.sleep(wait)
