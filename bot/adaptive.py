"""Budgets that learn what a platform really grants, instead of a guessed limit.

Slack documents chat.update as "50+ per minute" and chat.postMessage as "1 per second per
channel, short bursts allowed": the real limit is at least that, and only the platform
knows how much more. An adaptive budget (`Budget(adaptive=True)`) therefore:

- starts from the documented rate and burst, and sends as fast as that allows;
- when calls are waiting on that estimate, sends a call beyond it: a probe. One probe at a
  time per family (one method of one workspace, over all its channels), so finding the
  edge costs one 429; after accepted probes in a row, up to MAX_PROBES at once (one more
  per two accepted, as TCP's slow start), so a crowd's finals do not queue behind one
  round trip each. A probe the platform accepts proves room for one more call:
  the burst grows by one, and the rate by a tenth of the documented rate at most once per
  token interval (probes sent back to back are evidence of a deeper bucket, not of a
  faster one);
- a probe the platform refuses costs that one 429: its Retry-After is honoured, the estimate
  stays, and there is no probing for QUIET seconds (doubled after each refused probe in a
  row, up to 10 minutes: each one holds the whole lane for its Retry-After);
- a 429 on a call the estimate allowed means the platform grants less than believed: rate
  and burst halve (once per Retry-After, however many calls it refused), never below
  1/FLOOR of the documented rate (multiplicative decrease);
- QUIET seconds after the last 429, a cut estimate grows back towards the documented
  limit by a tenth of the documented rate and one call of burst every second (additive
  increase), and probing resumes under demand.

Nothing is lost either way: the scheduler retries a refused call with the newest text.
"""

from __future__ import annotations

import asyncio
import math

from bot.clock import Clock
from bot.limiters import EPSILON, Limiter, Ticket, TokenBucket
from bot.ports import Budget

GROW = 50  # an estimate never exceeds this multiple of the documented rate or burst
FLOOR = 16  # ... nor falls below 1/FLOOR of the documented rate
STEP = 0.1  # rate step per accepted probe, as a share of the documented rate
CUT = 0.5  # rate and burst factor on a 429 within the estimate
QUIET = 20.0  # seconds without a 429 before probing again
QUIET_MAX = 600.0  # ... at most, after refused probes in a row
MAX_PROBES = 4  # probes in flight at once, after accepted ones in a row


class Estimate:
    """What one family of buckets has learned: rate and burst, and whether it may probe."""

    def __init__(self, budget: Budget, clock: Clock) -> None:
        self.clock = clock
        self.base_rate = budget.rate
        self.base_burst = budget.burst
        self.rate = budget.rate
        self.burst = budget.burst
        self.probing = 0  # probes in flight
        self.probed_at = float("-inf")  # when the last probe was sent
        self.streak = 0  # probes accepted in a row
        self.quiet = QUIET  # the pause after the next refused probe
        self.stepped_at = float("-inf")  # when the rate last grew
        self.last_used = clock.now()
        self.quiet_until = float("-inf")  # no probe before this
        self.cut_until = float("-inf")  # 429s before this belong to the last cut
        self.users = 0  # buckets using this estimate
        self.changed = asyncio.Event()  # a probe ended: waiting calls may look again

    def recover(self) -> None:
        """Grow a cut estimate back towards the documented one, once QUIET s have passed
        without a 429: a step a second."""
        now = self.clock.now()
        if now < self.quiet_until or (
            self.rate >= self.base_rate and self.burst >= self.base_burst
        ):
            return
        since = max(self.quiet_until, self.stepped_at)
        steps = int(now - since)
        if steps <= 0:
            return
        self.stepped_at = since + steps
        # Only what is below the documented value grows; a dimension probes proved higher
        # keeps what was learned.
        if self.rate < self.base_rate:
            self.rate = min(self.base_rate, self.rate + steps * self.base_rate * STEP)
        if self.burst < self.base_burst:
            self.burst = min(self.base_burst, self.burst + steps)

    def may_probe(self) -> bool:
        """True when one call beyond the estimate may be tried now."""
        now = self.clock.now()
        if now - self.probed_at > QUIET:
            self.streak = 0  # a streak is evidence about now, not about minutes ago
        return (
            self.probing < min(MAX_PROBES, 1 + self.streak // 2)
            and now >= self.quiet_until
            and (self.rate < self.base_rate * GROW or self.burst < self.base_burst * GROW)
        )

    def probe_accepted(self) -> None:
        """The platform had room for one more call: a deeper bucket, perhaps a faster one."""
        self._end_probe()
        self.streak += 1
        self.quiet = QUIET
        self.burst = min(self.base_burst * GROW, self.burst + 1)
        now = self.clock.now()
        if now - self.stepped_at >= 1 / self.rate:
            self.stepped_at = now
            self.rate = min(self.base_rate * GROW, self.rate + self.base_rate * STEP)

    def refused(self, retry_after: float, *, probe: bool) -> None:
        """A 429: no probing for a while (QUIET s, doubled for each refused probe in a row,
        up to QUIET_MAX: each costs the lane a Retry-After); one within the estimate also
        cuts it."""
        now = self.clock.now()
        self.quiet_until = max(self.quiet_until, now + max(self.quiet, retry_after))
        self.streak = 0
        if probe:
            self.quiet = min(QUIET_MAX, self.quiet * 2)
            self._end_probe()
            return
        if now < self.cut_until:
            return  # the same episode: the calls were sent before the cut was known
        self.cut_until = now + retry_after
        self.rate = max(self.base_rate / FLOOR, self.rate * CUT)
        self.burst = max(1, math.floor(self.burst * CUT))

    def probe_dropped(self) -> None:
        """A probe ended without an answer about the limit (another error)."""
        self._end_probe()

    def _end_probe(self) -> None:
        self.probing = max(0, self.probing - 1)
        self.changed.set()
        self.changed = asyncio.Event()

    def at_rest(self) -> bool:
        """True when forgetting this estimate loses nothing (it is the documented one)."""
        return (
            not self.probing
            and self.rate == self.base_rate
            and self.burst == self.base_burst
            and self.clock.now() >= self.quiet_until
        )


class AdaptiveBucket(TokenBucket):
    """A token bucket whose rate and burst come from its family's Estimate."""

    def __init__(
        self, budget: Budget, clock: Clock, estimate: Estimate, parent: Limiter | None = None
    ) -> None:
        self.estimate = estimate
        estimate.users += 1
        super().__init__(budget, clock, parent)

    # Calls reach the platform a little after we count them, and not evenly late: once
    # the bucket is empty, waiting this much longer for the next token keeps the platform
    # from seeing it a moment early (as a 429 within the estimate, which would cut it).
    JITTER = 0.05

    def delay(self) -> float:
        """Seconds until a call may be made within the estimate."""
        wait = super().delay()
        if self.tokens < 1 - EPSILON:
            wait = max(wait, (1 - self.tokens) / self.rate + self.JITTER)
        return wait

    def time_until(self, tokens: float) -> float:
        """Seconds until the bucket holds `tokens` (late by JITTER, as delay())."""
        wait = super().time_until(tokens)
        return wait + self.JITTER if wait > 0 else wait

    @property
    def rate(self) -> float:
        """The estimated rate."""
        self.estimate.recover()
        return self.estimate.rate

    @property
    def burst(self) -> int:
        """The estimated burst."""
        self.estimate.recover()
        return self.estimate.burst

    def can_probe(self) -> bool:
        """True when the bucket is empty (a call with a token left is no evidence of room
        beyond the estimate), no Retry-After holds calls back, and the family may try one
        call beyond its estimate."""
        now = self.clock.now()
        self._refill(now)
        return (
            self.tokens < 1 - EPSILON
            and now >= self.blocked_until
            and (self.parent is None or self.parent.delay() == 0)
            and self.estimate.may_probe()
        )

    def take_probe(self) -> Ticket:
        """Send a call the estimate would hold back (call only when can_probe()): it is
        paid for only if the platform refuses it."""
        self.estimate.probing += 1
        self.estimate.probed_at = self.clock.now()
        self.estimate.last_used = self.clock.now()
        ticket = self.take()
        ticket.probe = True
        return ticket

    def take(self) -> Ticket:
        """Spend one token."""
        self.estimate.last_used = self.clock.now()
        return super().take()

    def succeeded(self, ticket: Ticket) -> None:
        """The call went through; an accepted probe proves room for one more token."""
        if ticket.probe:
            ticket.probe = False
            self._refill(self.clock.now())
            self.estimate.probe_accepted()
            self.tokens = min(float(self.burst), self.tokens + 1)

    def refused(self, ticket: Ticket | None, retry_after: float) -> None:
        """A 429: honour Retry-After (the platform's bucket is empty now, so is ours)."""
        probe = ticket is not None and ticket.probe
        if ticket is not None:
            ticket.probe = False
        self.estimate.refused(retry_after, probe=probe)
        self.penalize(retry_after)
        if probe:  # the probe was not counted: the bucket is empty, not in debt
            self.tokens = max(self.tokens, 0.0)

    def failed(self, ticket: Ticket) -> None:
        """The call failed for another reason: a probe taught nothing, so it ends."""
        if ticket.probe:
            self.refund(ticket)

    def refund(self, ticket: Ticket) -> None:
        """The call was never made (or taught nothing): its token comes back."""
        if ticket.probe:
            ticket.probe = False
            self.estimate.probe_dropped()
        super().refund(ticket)
