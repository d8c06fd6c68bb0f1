"""Message history for the fake Discord: time-based snowflakes, seeding and paging.

Ids are Discord snowflakes: milliseconds since the Discord epoch (1420070400000, the first
second of 2015) shifted left 22 bits, with a per-millisecond counter in the low 12 bits, so
`discord.utils.snowflake_time(id)` is the message's `timestamp`. `seed()` inserts thousands
of such messages directly (no gateway, no REST), for history reads.

`GET /channels/{id}/messages` pages as Discord does: `limit` 1-100 (default 50; outside:
400 50035), at most one of `before`, `after`, `around` (snowflakes), and the page is always
newest first, `after` included: it holds the `limit` messages right after the anchor, and
discord.py's `history(after=..., oldest_first=True)` reverses each page itself and takes the
next anchor from the page's first (newest) item. `around` gives `limit // 2` newer messages
and the rest at or before the anchor. The bot needs VIEW_CHANNEL (403 50001 otherwise);
without READ_MESSAGE_HISTORY the list is empty (both from Discord's Get Channel Messages).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_gateway import BOT_ID
from tests.fakes.discord_perms import READ_MESSAGE_HISTORY
from tests.fakes.discord_wire import invalid_form, json_response

DISCORD_EPOCH = 1420070400000
EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def millis(when: datetime) -> int:
    """Unix milliseconds of an aware datetime (naive ones are refused: which zone?)."""
    if when.tzinfo is None:
        raise ValueError("use an aware datetime (e.g. tzinfo=UTC)")
    return DISCORD_EPOCH + (when - EPOCH) // _MS


def snowflake_ms(sid: str | int) -> int:
    """Unix milliseconds a snowflake was made at."""
    return (int(sid) >> 22) + DISCORD_EPOCH


def iso(ms: int) -> str:
    """Discord's timestamp form for Unix milliseconds."""
    dt = EPOCH + (ms - DISCORD_EPOCH) * _MS
    return dt.isoformat(timespec="microseconds")


def now_iso() -> str:
    """Discord's timestamp form for now."""
    return iso(millis(datetime.now(UTC)))


def page(
    ids: list[int],
    *,
    limit: int,
    before: int | None = None,
    after: int | None = None,
    around: int | None = None,
) -> list[int]:
    """One page of a channel's ids (sorted oldest first), newest first as Discord sends."""
    if before is not None:
        end = bisect.bisect_left(ids, before)
        chunk = ids[max(0, end - limit) : end]
    elif after is not None:
        start = bisect.bisect_right(ids, after)
        chunk = ids[start : start + limit]
    elif around is not None:
        mid = bisect.bisect_right(ids, around)
        newer = limit // 2
        chunk = ids[max(0, mid - (limit - newer)) : mid + newer]
    else:
        chunk = ids[-limit:]
    return chunk[::-1]


class HistoryMixin:
    """Snowflakes, seeding and the history route; FakeDiscord calls `_init_history()`."""

    channels: dict[str, dict[str, Any]]
    messages: dict[str, dict[str, dict[str, Any]]]
    users: dict[str, dict[str, Any]]

    if TYPE_CHECKING:  # provided by FakeDiscord and its other mixins

        def dispatch(self, event: str, data: Any) -> Awaitable[None]: ...

        def permissions(self, uid: str, channel_id: str) -> int: ...

        def attachment(
            self, name: str, data: bytes, content_type: str | None = None
        ) -> dict[str, Any]: ...

        def public(self, msg: dict[str, Any]) -> dict[str, Any]: ...

        def _thread(self, tid: str, parent: str, name: str, owner: str) -> dict[str, Any]: ...

        def _message(
            self,
            channel_id: str,
            author_id: str,
            content: str,
            *,
            attachments: list[dict[str, Any]] | None = None,
            reference: str | None = None,
            allowed_mentions: dict[str, Any] | None = None,
            embeds: list[dict[str, Any]] | None = None,
            flags: int = 0,
            mid: str | None = None,
            ms: int | None = None,
            store: bool = True,
        ) -> dict[str, Any]: ...

    def _init_history(self) -> None:
        self._counters: dict[int, itertools.count[int]] = {}
        self._last_id = 0

    # -- snowflakes --------------------------------------------------------------

    def snowflake_at(self, when: datetime | int) -> str:
        """A new id made at `when` (an aware datetime or Unix milliseconds)."""
        ms = millis(when) if isinstance(when, datetime) else when
        counter = next(self._counters.setdefault(ms, itertools.count()))
        if counter > 0xFFF:
            raise ValueError("more than 4096 ids in one millisecond")
        return str(((ms - DISCORD_EPOCH) << 22) | counter)

    def snowflake(self) -> str:
        """A new id made now, increasing like Discord's."""
        # Never below the last one, even if the clock steps back or a millisecond fills up.
        ms = max(millis(datetime.now(UTC)), snowflake_ms(self._last_id))
        while True:
            try:
                sid = int(self.snowflake_at(ms))
                break
            except ValueError:
                ms += 1
        self._last_id = sid
        return str(sid)

    # -- seeding -----------------------------------------------------------------

    def seed(
        self,
        channel_id: str,
        *,
        count: int,
        start: datetime,
        step: timedelta,
        authors: list[str] | None = None,
        text: Callable[[int], str] | None = None,
    ) -> list[dict[str, Any]]:
        """`count` messages at start, start + step, ...; ids made from their timestamps.

        Authors take turns (default: every user but the bot); text(i) is the i-th content
        (default "message i"). Stored only: no gateway event, no REST call.
        """
        if channel_id not in self.channels:
            raise KeyError(channel_id)
        who = authors or [uid for uid in self.users if uid != BOT_ID] or [BOT_ID]
        say = text or (lambda i: f"message {i}")
        out = []
        for i in range(count):
            ms = millis(start + i * step)
            out.append(
                self._message(
                    channel_id, who[i % len(who)], say(i), mid=self.snowflake_at(ms), ms=ms
                )
            )
        ch = self.channels[channel_id]
        if out:
            newest = max(self.messages[channel_id], key=int)
            ch["last_message_id"] = newest
            if "message_count" in ch:
                ch["message_count"] = ch.get("message_count", 0) + count
                ch["total_message_sent"] = ch["message_count"]
        return out

    async def seed_thread(
        self,
        parent_id: str,
        name: str,
        *,
        count: int = 0,
        start: datetime,
        step: timedelta = timedelta(minutes=1),
        authors: list[str] | None = None,
        text: Callable[[int], str] | None = None,
        owner: str | None = None,
        root: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A public thread in `parent_id` (from `root` if given) with `count` seeded messages.

        THREAD_CREATE is dispatched (a no-op before the bot connects: GUILD_CREATE then
        lists the thread).
        """
        who = authors or [uid for uid in self.users if uid != BOT_ID] or [BOT_ID]
        tid = root["id"] if root is not None else self.snowflake_at(start)
        thread = self._thread(tid, parent_id, name, owner or who[0])
        msgs = self.seed(tid, count=count, start=start, step=step, authors=who, text=text)
        self.thread_members.setdefault(tid, set()).update(who)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread, msgs

    def add_attachment(
        self, message: dict[str, Any], name: str, data: bytes, content_type: str | None = None
    ) -> dict[str, Any]:
        """Attach a file (downloadable from the fake CDN) to a stored message."""
        att = self.attachment(name, data, content_type)
        message.setdefault("attachments", []).append(att)
        return att

    # -- REST --------------------------------------------------------------------

    def _history(self, cid: str, query: Mapping[str, str]) -> web.Response:
        anchors = {k: query[k] for k in ("before", "after", "around") if k in query}
        if len(anchors) > 1:
            return invalid_form(
                "_errors", "before, after and around are mutually exclusive; pass one."
            )
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return invalid_form("limit", "Value is not int.")
        if not 1 <= limit <= 100:
            return invalid_form("limit", "int value should be between 1 and 100.")
        try:
            anchor = {k: int(v) for k, v in anchors.items()}
        except ValueError:
            return invalid_form(next(iter(anchors)), "Value is not snowflake.")
        if not self.permissions(BOT_ID, cid) & READ_MESSAGE_HISTORY:
            return json_response([])
        stored = self.messages.get(cid, {})
        ids = sorted(int(m) for m in stored)
        chosen = page(ids, limit=limit, **anchor)
        return json_response([self.public(stored[str(i)]) for i in chosen])
