"""ReplyStream: one reply in flight, as the engine appends to it and the scheduler shows it.

It holds the reply's text split into platform messages (parts), knows what each message
shows, and says which call comes next (show, finish, fail), lowest part first. The
EditScheduler (bot/streaming.py) decides when that call runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.clock import Clock
from bot.errors import PlatformRateLimited
from bot.ports import ReplyTarget
from bot.splitting import split_message

if TYPE_CHECKING:
    from bot.lane import Lane

log = logging.getLogger(__name__)

# A target call that fails for another reason than a 429 is retried this often.
MAX_CALL_ATTEMPTS = 3


@dataclass(slots=True)
class _Op:
    kind: str  # "show" | "finish" | "fail"
    part: int
    text: str


class ReplyStream:
    """One reply in flight: the engine appends text; the scheduler shows it."""

    def __init__(self, target: ReplyTarget, lane: Lane) -> None:
        self.target = target
        self._lane = lane
        self._limit = target.max_chars
        self.frozen: list[str] = []
        self.tail = ""
        self._shown: dict[int, str] = {}
        self._closed = False
        self._finish_sent = False
        self._fail_message: str | None = None
        self._fail_sent = False
        self._in_flight = False
        self.queued = False
        self.error: BaseException | None = None
        self._attempts = 0
        self._done = asyncio.Event()
        self.first_show_at: float | None = None
        # A transient line ("Searching the web…") shown after the text until more text comes.
        self._status = ""
        self._status_parts: set[int] = set()  # parts whose screen shows only a status
        self._has_text = False
        self.last_call_at = float("-inf")  # when the scheduler last sent a call of it
        self.held_until = float("-inf")  # a 429's Retry-After on a call of no lane's budget

    @property
    def text(self) -> str:
        """Everything appended so far, as it will be shown (split across parts)."""
        return "".join(self.frozen) + self.tail

    def append(self, delta: str) -> None:
        """Add model text; it will be shown as soon as the budget allows."""
        if self._closed or not delta:
            return
        self._status = ""
        if not self._has_text:
            self._has_text = True
            self.target.text_ready()
        self.tail += delta
        self._split()
        self.target.offer(len(self.frozen), self.tail)
        self._lane.notify(self)

    def _split(self) -> None:
        while len(self.tail) > self._limit:
            head, rest = split_message(self.tail, self._limit)
            self.frozen.append(head)
            self.tail = rest
            self.target.offer(len(self.frozen) - 1, head)

    def status(self, line: str) -> None:
        """Show a transient line after the text (until more text comes), e.g. a tool at work."""
        if self._closed or line == self._status:
            return
        self._status = line
        self._lane.notify(self)

    def replace(self, body: str, *, footer: str = "") -> None:
        """Make the whole reply `body` (then `footer`, kept in the last message), e.g. with
        source markers added once the text is complete. Messages already showing the same
        text are not edited again."""
        if self._closed:
            return
        self._status = ""
        self.frozen, self.tail = [], body
        self._split()
        if footer:
            if self.tail and len(self.tail) + 2 + len(footer) > self._limit:
                self.frozen.append(self.tail)
                self.tail = ""
            self.tail = f"{self.tail}\n\n{footer}" if self.tail else footer
            self._split()
        self._lane.notify(self)

    def close(self, *, fail_message: str | None = None) -> None:
        """No more text; deliver the final text (and a failure note if given)."""
        if self._closed:
            return
        self._closed = True
        self._status = ""
        self._fail_message = fail_message
        if not self.tail and self.frozen:
            self.tail = self.frozen.pop()
        self._lane.notify(self)

    async def wait(self, limit: float | None = None) -> bool:
        """Wait until everything is delivered; False when `limit` seconds pass first."""
        if self._done.is_set():
            return True
        try:
            await asyncio.wait_for(self._done.wait(), limit)
        except TimeoutError:
            return False
        return True

    @property
    def delivered(self) -> bool:
        """True when the final state is on screen (or delivery gave up)."""
        return self._done.is_set()

    def next_op(self) -> _Op | None:
        """The next call this reply needs, lowest part first."""
        if self.error is not None:
            return None
        for i, text in enumerate(self.frozen):
            if self._shown.get(i) != text:
                return _Op("show", i, text)
        last = len(self.frozen)
        if self._closed:
            if not self._finish_sent and (self.tail or last > 0 or self._fail_message is None):
                return _Op("finish", last, self.tail)
            if self._fail_message is not None and not self._fail_sent:
                return _Op("fail", last, self._fail_message)
            return None
        shown = self._with_status(self.tail)
        if shown and self._shown.get(last) != shown:
            return _Op("show", last, shown)
        return None

    def _with_status(self, tail: str) -> str:
        if not self._status:
            return tail
        if not tail:
            return self._status
        joined = f"{tail}\n\n{self._status}"
        return joined if len(joined) <= self._limit else tail

    def first_text(self, op: _Op) -> bool:
        """The op shows a message's first text (or text in place of a status line)."""
        if op.kind != "show":
            return False
        if op.part in self._status_parts:
            return op.text != self._status
        return op.part not in self._shown and not self.target.showing(op.part)

    def urgent(self, op: _Op) -> bool:
        """First text of a message (also one replacing a status line), a finished message,
        or the end: never held back."""
        return op.kind != "show" or op.part < len(self.frozen) or self.first_text(op)

    def has_work(self) -> bool:
        """True when a call is needed and none is in flight."""
        return not self._in_flight and self.next_op() is not None

    def _check_done(self) -> None:
        if self._closed and not self._in_flight and self.next_op() is None:
            self._done.set()

    async def run_op(self, op: _Op, clock: Clock) -> bool | None:
        """Perform one call; record success, or leave the state dirty for a retry. True:
        the target called the platform on the lane's budget; False: it had nothing to
        send there; None: the call failed (and is retried or given up)."""
        self._in_flight = True
        sent: bool | None = None
        try:
            if op.kind == "show":
                sent = await self.target.show(op.text, part=op.part)
                self._shown[op.part] = op.text
                if op.text == self._status:
                    self._status_parts.add(op.part)
                else:
                    self._status_parts.discard(op.part)
            elif op.kind == "finish":
                sent = await self.target.finish(op.text, part=op.part)
                self._shown[op.part] = op.text
                self._finish_sent = True
            else:
                await self.target.fail(op.text)
                self._fail_sent = True
            if self.first_show_at is None and op.kind != "fail":
                self.first_show_at = clock.now()
            self._attempts = 0
            sent = sent is not False
        except PlatformRateLimited:
            raise
        except Exception as exc:  # any platform failure: retry a little, then give up
            self._attempts += 1
            log.warning("reply call %s failed (attempt %d): %r", op.kind, self._attempts, exc)
            if self._attempts >= MAX_CALL_ATTEMPTS:
                self.error = exc
        finally:
            self._in_flight = False
            if self.error is not None:
                self._done.set()
            else:
                self._check_done()
        return sent
