"""Test doubles for pure-logic unit tests: a fake clock and a recording reply target."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import PlatformRateLimited
from bot.markup import MARKDOWN, Markup
from bot.ports import Budget, Finished, ModelContent, ModelEvent, OutFile, TargetDefaults, TextDelta
from bot.types import Persona, RemoteFile, Usage


class FakeClock:
    """Virtual time: sleepers wake only when the test advances the clock."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), fut))
        await fut

    @staticmethod
    async def settle(rounds: int = 30) -> None:
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, step: float | None = None) -> None:
        """Move time forward, waking sleepers in order (in steps, if given)."""
        target = self.t + seconds
        await self.settle()
        while True:
            nxt = self._sleepers[0][0] if self._sleepers else None
            stop = target if step is None else min(target, self.t + step)
            if nxt is not None and nxt <= stop:
                deadline, _, fut = heapq.heappop(self._sleepers)
                self.t = max(self.t, deadline)
                if not fut.done():
                    fut.set_result(None)
                await self.settle()
                continue
            self.t = stop
            await self.settle()
            if stop >= target:
                return


@dataclass
class Call:
    kind: str
    part: int
    text: str
    at: float


@dataclass
class RecordingTarget(TargetDefaults):
    """A ReplyTarget that records every call; `fail_with` maps call index -> exception."""

    clock: Any
    budget: Budget = field(default_factory=lambda: Budget("test", rate=1.0, burst=1))
    max_chars: int = 2000
    markup: Markup = MARKDOWN
    calls: list[Call] = field(default_factory=list)
    attached: list[OutFile] = field(default_factory=list)
    fail_with: dict[int, BaseException] = field(default_factory=dict)
    started: bool = False
    _attempts: int = 0

    @property
    def message_ids(self) -> Sequence[str]:
        return [f"m{p}" for p in sorted({c.part for c in self.calls if c.kind != "fail"})]

    async def start(self) -> None:
        self.started = True

    async def _call(self, kind: str, text: str, part: int) -> None:
        idx = self._attempts
        self._attempts += 1
        if idx in self.fail_with:
            raise self.fail_with[idx]
        self.calls.append(Call(kind, part, text, self.clock.now()))

    async def show(self, text: str, *, part: int) -> None:
        await self._call("show", text, part)

    async def finish(self, text: str, *, part: int) -> None:
        await self._call("finish", text, part)

    async def fail(self, user_message: str) -> None:
        await self._call("fail", user_message, -1)

    async def attach(self, files: Sequence[OutFile]) -> None:
        self.attached.extend(files)

    async def status(self, line: str) -> bool:
        return False

    def visible(self) -> list[str]:
        """The last text shown for each part, in part order."""
        parts: dict[int, str] = {}
        for c in self.calls:
            if c.kind in ("show", "finish"):
                parts[c.part] = c.text
        return [parts[k] for k in sorted(parts)]


def rate_limited(retry_after: float) -> PlatformRateLimited:
    return PlatformRateLimited(retry_after)


class InstantModel:
    """A ChatModel answering at once (for lock, load and bench tests of the engine)."""

    def __init__(self, reply: str = "ok", chunks: int = 1, delay: float = 0.0) -> None:
        self.reply = reply
        self.chunks = chunks
        self.delay = delay
        self.calls: list[tuple[Persona, Sequence[ModelContent], ModelContent]] = []
        self.active = 0
        self.max_active = 0

    async def stream(
        self, *, persona: Persona, history: Sequence[ModelContent], message: ModelContent
    ) -> AsyncIterator[ModelEvent]:
        self.calls.append((persona, history, message))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            size = max(1, len(self.reply) // self.chunks)
            for i in range(0, len(self.reply), size):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield TextDelta(self.reply[i : i + size])
            yield Finished("stop", Usage(10, 2))
        finally:
            self.active -= 1

    async def upload(self, *, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


async def until(cond: Any, limit: float = 10.0, message: str = "condition not met in time") -> None:
    """Wait for `cond()` (sync or async) to be true, polling; fail after `limit` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.01)
