"""Work a Slack request starts after it is acknowledged, tracked so it can be drained.

Bolt acknowledges a request when its listener returns. Our listeners only start a task
here and return, so Slack gets its ack at once, and `drain()` says exactly when everything
those requests started has finished (tests and shutdown wait on it, not on a quiet spell).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Inbox:
    """The tasks started by acknowledged Slack requests."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pending(self) -> int:
        """Acknowledged requests whose handling has not finished."""
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any], *, what: str) -> None:
        """Run `work` in the background; a failure is logged (handlers report to users)."""
        task = asyncio.create_task(work, name=f"slack:{what}")
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("slack: handling %s failed", what, exc_info=exc)

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Return once every task started so far (and any they started) has finished."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self, grace: float = 5.0) -> None:
        """Let running work finish for `grace` seconds, then cancel what is left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for t in set(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
