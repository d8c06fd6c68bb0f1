"""The SQLite store's caches: a small LRU and each conversation's decoded tail."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from bot.types import History, Turn
from storage.history import fit

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        return key in self._d

    def get(self, key: K) -> V | None:
        """The value, marking it recently used."""
        if key not in self._d:
            return None
        self._d.move_to_end(key)
        return self._d[key]

    def put(self, key: K, value: V) -> None:
        """Store, evicting the least recently used entry when full."""
        self._d[key] = value
        self._d.move_to_end(key)
        if len(self._d) > self.size:
            self._d.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget a key."""
        self._d.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._d.clear()


class Tail:
    """A conversation's first turn and its newest turns, decoded once and kept current."""

    __slots__ = ("complete", "first", "recent")

    def __init__(self, first: Turn | None, recent: list[Turn], *, complete: bool) -> None:
        self.first = first
        self.recent = recent  # contiguous, oldest first, ending at the newest turn
        self.complete = complete  # True when `recent` reaches back to seq 2

    def add(self, turn: Turn) -> None:
        """Append a newly written turn (once: a turn the tail already holds is ignored)."""
        last = self.recent[-1] if self.recent else self.first
        if last is not None and turn.seq <= last.seq:
            return
        if self.first is None:
            self.first = turn
        else:
            self.recent.append(turn)

    def update(self, turn: Turn) -> None:
        """Replace the cached copy of a turn that changed (a checkpoint, a finished reply)."""
        if self.first is not None and self.first.id == turn.id:
            self.first = turn
            return
        for i in range(len(self.recent) - 1, -1, -1):
            if self.recent[i].id == turn.id:
                self.recent[i] = turn
                return

    def history(self, budget: int) -> History | None:
        """The history for `budget`, or None when older turns must be read first."""
        if self.first is None:
            return History((), 0, 0)
        fitted, used, cut = fit(self.first, reversed(self.recent), budget)
        if not cut and not self.complete:
            return None
        kept = len(fitted)
        if kept < len(self.recent) - 1:
            # Keep one turn past the budget's edge, drop the rest from memory.
            del self.recent[: len(self.recent) - kept - 1]
            self.complete = False
        last_seq = self.recent[-1].seq if self.recent else self.first.seq
        turns = (self.first, *self.recent[len(self.recent) - kept :])
        return History(turns, last_seq - len(turns), used)
