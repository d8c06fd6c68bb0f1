"""Rate limiters for platform budgets: a token bucket and a sliding window.

Both count calls against a Budget and may have a parent (e.g. Discord's global limit) that
every call also counts against. Each also says when its state will be exactly that of a new
limiter (`recovers_in`), so the scheduler can forget idle ones without ever letting a call
through that the remembered state would have held back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from bot.clock import Clock
from bot.ports import Budget

# Float rounding leaves a refilled bucket a hair short of full; this much short is full.
EPSILON = 1e-9


@dataclass(slots=True)
class Ticket:
    """One call counted by a limiter (and its parent); done() when the call returns."""

    entry: list[float] | None
    parent: Ticket | None
    probe: bool = False  # spent beyond an adaptive estimate (bot/adaptive.py)

    def done(self, now: float) -> None:
        """The platform has certainly seen the call by now: count it from here."""
        if self.entry is not None:
            self.entry[0] = max(self.entry[0], now)
        if self.parent is not None:
            self.parent.done(now)


class _Fixed:
    """What a limiter with a fixed budget answers to the scheduler's adaptive questions."""

    parent: Limiter | None
    budget: Budget

    def can_probe(self) -> bool:
        """A fixed budget never tries a call beyond itself."""
        return False

    def take_probe(self) -> Ticket:
        """Never called for a fixed budget."""
        raise NotImplementedError

    def succeeded(self, ticket: Ticket) -> None:
        """A call went through: a fixed budget learns nothing."""

    def refused(self, ticket: Ticket | None, retry_after: float) -> None:
        """A 429: honour Retry-After."""
        self.penalize(retry_after)

    def failed(self, ticket: Ticket) -> None:
        """A call failed for another reason: nothing to learn."""

    def refund(self, ticket: Ticket) -> None:
        """The call was never made: give its token back (and the parent's)."""
        self._give_back(ticket)
        if ticket.parent is not None and self.parent is not None:
            self.parent.refund(ticket.parent)

    def _give_back(self, ticket: Ticket) -> None:
        raise NotImplementedError

    def penalize(self, retry_after: float) -> None:
        """No calls until Retry-After has passed."""
        raise NotImplementedError

    def _gauge(self) -> float:
        """The wait the platform's own client knows of (Budget.gauge), if any."""
        gauge = self.budget.gauge
        return max(0.0, gauge()) if gauge is not None else 0.0


class TokenBucket(_Fixed):
    """Classic token bucket with an optional parent (e.g. Discord's global limit)."""

    def __init__(self, budget: Budget, clock: Clock, parent: Limiter | None = None) -> None:
        self.budget = budget
        self.clock = clock
        self.parent = parent
        self.tokens = float(self.burst)
        self.updated = clock.now()
        self.blocked_until = 0.0
        # Lanes, in-progress one-off calls and child limiters using this one: while any
        # does, it must stay the one limiter of its key.
        self.users = 0

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.budget.rate

    @property
    def burst(self) -> int:
        """Tokens the bucket holds when full."""
        return self.budget.burst

    def _refill(self, now: float) -> None:
        if self.rate == float("inf"):
            self.tokens = float(self.burst)
        else:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def delay(self) -> float:
        """Seconds until a call may be made (0 when one may be made now)."""
        now = self.clock.now()
        self._refill(now)
        wait = max(0.0, self.blocked_until - now)
        # The epsilon stops float rounding (0.999999...) from asking for a zero-length sleep.
        if self.tokens < 1 - EPSILON:
            wait = max(wait, (1 - self.tokens) / self.rate)
        wait = max(wait, self._gauge())
        if self.parent is not None:
            wait = max(wait, self.parent.delay())
        return wait

    def available_max(self) -> float:
        """Tokens the bucket holds when full."""
        return float(self.burst)

    def available(self) -> float:
        """Tokens in the bucket now."""
        self._refill(self.clock.now())
        return self.tokens

    def time_until(self, tokens: float) -> float:
        """Seconds until the bucket holds `tokens`."""
        return max(0.0, (tokens - self.available()) / self.rate)

    def take(self) -> Ticket:
        """Spend one token (call only when delay() is 0)."""
        self.tokens -= 1
        return Ticket(None, self.parent.take() if self.parent is not None else None)

    def _give_back(self, ticket: Ticket) -> None:
        self._refill(self.clock.now())
        self.tokens = min(float(self.burst), self.tokens + 1)

    def penalize(self, retry_after: float) -> None:
        """A 429: no calls until Retry-After has passed, and start again from an empty bucket."""
        now = self.clock.now()
        self.blocked_until = max(self.blocked_until, now + retry_after)
        self.tokens = min(self.tokens, 0.0)
        self.updated = now

    def recovers_in(self) -> float:
        """Seconds until the bucket is full and unblocked, as a new one would be."""
        now = self.clock.now()
        self._refill(now)
        wait = max(0.0, self.blocked_until - now)
        short = self.burst - self.tokens
        if short > EPSILON:
            wait = max(wait, short / self.rate)
        return wait


class SlidingWindow(_Fixed):
    """At most `burst` calls in any `window` seconds, with an optional parent."""

    # Calls reach the platform a little after we send them, and not evenly late: counting
    # each call this much later keeps the platform's own window from seeing burst + 1.
    JITTER = 0.05

    def __init__(self, budget: Budget, clock: Clock, parent: Limiter | None = None) -> None:
        self.budget = budget
        self.clock = clock
        self.parent = parent
        # [time] cells: the send time plus JITTER, moved to the completion time by done().
        self.sent: list[list[float]] = []
        self.blocked_until = 0.0
        self.users = 0  # as TokenBucket.users

    def _trim(self, now: float) -> list[float]:
        """Drop calls older than the window; the remaining times, oldest first."""
        self.sent = [e for e in self.sent if e[0] > now - self.budget.window]
        return sorted(e[0] for e in self.sent)

    def delay(self) -> float:
        """Seconds until a call may be made (0 when one may be made now)."""
        now = self.clock.now()
        times = self._trim(now)
        wait = max(0.0, self.blocked_until - now)
        if len(times) >= self.budget.burst:
            wait = max(wait, times[-self.budget.burst] + self.budget.window - now)
        wait = max(wait, self._gauge())
        if self.parent is not None:
            wait = max(wait, self.parent.delay())
        return wait

    def available_max(self) -> float:
        """Calls the window holds."""
        return float(self.budget.burst)

    def available(self) -> float:
        """Calls that may be made now."""
        return float(self.budget.burst - len(self._trim(self.clock.now())))

    def time_until(self, tokens: float) -> float:
        """Seconds until `tokens` calls may be made."""
        now = self.clock.now()
        times = self._trim(now)
        short = int(tokens) - (self.budget.burst - len(times))
        if short <= 0:
            return 0.0
        return max(0.0, times[short - 1] + self.budget.window - now)

    def take(self) -> Ticket:
        """Count one call (call only when delay() is 0); hand the ticket to done()."""
        entry = [self.clock.now() + self.JITTER]
        self.sent.append(entry)
        return Ticket(entry, self.parent.take() if self.parent is not None else None)

    def _give_back(self, ticket: Ticket) -> None:
        self.sent = [e for e in self.sent if e is not ticket.entry]

    def penalize(self, retry_after: float) -> None:
        """A 429: no calls until Retry-After has passed."""
        self.blocked_until = max(self.blocked_until, self.clock.now() + retry_after)

    def recovers_in(self) -> float:
        """Seconds until the window is empty and unblocked, as a new one would be."""
        now = self.clock.now()
        self._trim(now)
        wait = max(0.0, self.blocked_until - now)
        if self.sent:
            wait = max(wait, max(e[0] for e in self.sent) + self.budget.window - now)
        return wait


Limiter: TypeAlias = TokenBucket | SlidingWindow
