"""Keep each platform adapter running: one adapter's crash never stops the others.

An adapter whose `run()` raises (or returns while nobody asked it to stop) is started again
after a delay that doubles from `initial` up to `cap` (1 s -> 60 s by default) and falls
back to `initial` once a run has stayed up for `stable` seconds. While it is down, its
status is "restarting", which /healthz reports as unhealthy; the other adapters, the HTTP
server and the engine keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.ports import Adapter

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial` doubling up to `cap`; reset after `stable` s of uptime."""

    initial: float = 1.0
    cap: float = 60.0
    stable: float = 60.0

    def next(self, delay: float) -> float:
        """The delay after `delay`."""
        return min(delay * 2, self.cap)


class Supervisor:
    """Runs one adapter until stop(), restarting it with backoff when it fails."""

    def __init__(self, adapter: Adapter, *, backoff: Backoff | None = None) -> None:
        self.adapter = adapter
        self.backoff = backoff or Backoff()
        self.restarts = 0
        self.delays: list[float] = []  # every restart delay waited, for tests and logs
        self._running = False
        self._stopping = asyncio.Event()

    @property
    def status(self) -> str:
        """`connected`, `disconnected` (running, not connected yet) or `restarting`."""
        if not self._running:
            return "restarting" if not self._stopping.is_set() else "stopped"
        return "connected" if self.adapter.connected else "disconnected"

    async def run(self) -> None:
        """Run the adapter, restarting it after failures, until stop()."""
        loop = asyncio.get_running_loop()
        delay = self.backoff.initial
        while not self._stopping.is_set():
            started = loop.time()
            self._running = True
            try:
                await self.adapter.run()
            except Exception as exc:
                if self._stopping.is_set():
                    return
                # Any failure, whatever its type: the other adapters must keep serving.
                log.error("adapter %s failed: %s", self.adapter.name, exc, exc_info=exc)
            else:
                if self._stopping.is_set():
                    return
                log.error("adapter %s stopped on its own; restarting", self.adapter.name)
            finally:
                self._running = False
            if loop.time() - started >= self.backoff.stable:
                delay = self.backoff.initial  # it was up a good while: a new incident
            log.warning("adapter %s: next start in %.1f s", self.adapter.name, delay)
            self.delays.append(delay)
            await self._pause(delay)
            self.restarts += 1
            delay = self.backoff.next(delay)

    async def _pause(self, seconds: float) -> None:
        # stop() ends the wait at once: shutdown never waits out a backoff.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def stop(self) -> None:
        """No more restarts; close the adapter (its run() then returns)."""
        self._stopping.set()
        try:
            await self.adapter.aclose()
        except Exception:
            log.exception("closing %s", self.adapter.name)
