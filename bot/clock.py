"""Time source for rate budgets; tests swap in a fake clock."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    """Monotonic time and sleeping."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds`."""
        ...


class SystemClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        """Monotonic seconds from the running loop."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(seconds)
