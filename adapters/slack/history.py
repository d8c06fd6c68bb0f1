"""Reading a Slack channel's or thread's history for catch-ups and thread summaries.

- conversations.history (newest first, `oldest` = the window's start) and
  conversations.replies for the thread parents whose `latest_reply` falls in the window,
  both paged with `cursor`; a thread is read once per catch-up however it was found.
- Both methods are Tier 3 (50+ per minute per workspace). Every call goes through the
  engine's scheduler on its own budget per workspace and method, so a burst of catch-ups
  is paced, and a 429's Retry-After holds the budget and the call is retried (the
  client's own retry handlers are left as they are: reply edits must see their 429s).
  Apps outside the Marketplace created after 2025-05-29 get 1 request per minute with at
  most 15 messages a page: a catch-up then stops reading after READ_DEADLINE_S and says so.
- Links are built, not asked for: `https://<workspace>.slack.com/archives/<channel>/p<ts>`
  (plus `?thread_ts=...&cid=...` for a reply), the workspace URL coming from one auth.test
  per process. chat.getPermalink would cost one call per message (for 5,000 messages,
  minutes of a rate-limited method); Slack documents the permalink shape and accepts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError
from slack_sdk.errors import SlackApiError

from adapters.slack.events import Short, SlackId, Text, Ts, ts_value
from adapters.slack.text import readable, user_ids
from bot.catchup import ChannelMessage, FileRef, Read, Window
from bot.errors import BotError, PlatformRateLimited
from bot.ports import Budget

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter
    from adapters.slack.workspaces import Workspace

log = logging.getLogger(__name__)

# Tier 3 is "50+ per minute"; a little under it, so network jitter never lands two of our
# calls closer together at Slack than its limit allows.
TIER3 = 45 / 60  # calls per second
TIER3_BURST = 10
HISTORY_PAGE = 999  # conversations.history's most per page: fewer Tier 3 calls
REPLIES_PAGE = 1000  # conversations.replies' most per page
MEMBERS_PAGE = 1000
LOOK_BACK = 200  # history before the window searched for threads still active in it
READ_DEADLINE_S = 300.0  # past this, summarise what was read (Slack is pacing us hard)
KEPT_SUBTYPES = {None, "file_share", "thread_broadcast", "bot_message", "me_message"}
SLOW = "Slack's rate limits stopped the read early; the oldest messages are not in it."

Counter = Callable[[int], Awaitable[None]]


class Refused(BotError):
    """The requester may not see this summary, or the bot cannot read the channel."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class _BotProfile(_Model):
    name: Short | None = None


class HistoryMessage(_Model):
    """A message as conversations.history / .replies return it (the fields read here)."""

    ts: Ts
    thread_ts: Ts | None = None
    user: SlackId | None = None
    bot_id: Short | None = None
    username: Short | None = None
    bot_profile: _BotProfile | None = None
    subtype: Short | None = None
    text: Text | None = None
    files: list[Any] | None = None
    reply_count: StrictInt | None = None
    latest_reply: Ts | None = None

    @property
    def is_reply(self) -> bool:
        """True for a message inside a thread (not the thread's parent)."""
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel the requester and the bot may both read."""

    id: str
    name: str  # "#general", or "this DM"


@dataclass
class _Reading:
    """One read: what was kept, which threads were read, when to give up."""

    cap: int
    deadline: float
    kept: dict[str, HistoryMessage] = field(default_factory=dict)
    threads: set[str] = field(default_factory=set)
    capped: bool = False  # a message was left out for the cap
    slow: bool = False

    @property
    def ask(self) -> int:
        """How many to ask for: the room left, plus one to tell whether the cap cuts."""
        return max(1, self.cap - len(self.kept) + 1)

    def add(self, m: HistoryMessage) -> bool:
        """Keep `m` if it is a message people wrote; False once the cap is reached."""
        if m.subtype not in KEPT_SUBTYPES or m.ts in self.kept:
            return True
        if len(self.kept) >= self.cap:
            self.capped = True
            return False
        self.kept[m.ts] = m
        return True

    def done(self) -> bool:
        """The cap cut the read, or Slack's pacing made it too slow to go on."""
        self.slow = self.slow or asyncio.get_running_loop().time() > self.deadline
        return self.capped or self.slow


class SlackHistory:
    """History reads, membership checks and message links of one SlackAdapter."""

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter
        self.read_deadline_s = READ_DEADLINE_S
        self._workspace_urls: dict[str, str] = {}

    # -- calls ---------------------------------------------------------------

    async def call(self, team: str, method: str, **args: Any) -> dict[str, Any]:
        """One Web API call on its Tier 3 budget; a 429 waits Retry-After and retries."""
        budget = Budget(f"slack:{team}:{method}", rate=TIER3, burst=TIER3_BURST)
        result: dict[str, Any] = {}
        api = getattr((await self.adapter.ws(team)).client, method.replace(".", "_"))

        async def once() -> None:
            try:
                resp = await api(**{k: v for k, v in args.items() if v not in (None, "")})
            except SlackApiError as exc:
                if exc.response.status_code == 429:
                    raise PlatformRateLimited(_retry_after(exc.response.headers)) from None
                raise
            result.update(resp.data if isinstance(resp.data, dict) else {})

        await self.adapter.core.pacer.call(budget, once)
        return result

    async def workspace_url(self, team: str) -> str:
        """`https://<workspace>.slack.com/` from auth.test (asked once per workspace)."""
        if team not in self._workspace_urls:
            auth = await (await self.adapter.ws(team)).client.auth_test()
            url = str(auth.get("url") or "https://slack.com/")
            self._workspace_urls[team] = url if url.endswith("/") else url + "/"
        return self._workspace_urls[team]

    def _link(self, channel: str, m: HistoryMessage, *, base: str) -> str:
        """The message's permalink, built as Slack shapes it."""
        url = f"{base}archives/{channel}/p{m.ts.replace('.', '')}"
        if m.is_reply:
            url += f"?thread_ts={m.thread_ts}&cid={channel}"
        return url

    # -- permissions -----------------------------------------------------------

    async def check(self, team: str, channel: str, *, user: str) -> Channel:
        """The channel if the bot is in it and `user` is a member; Refused saying why."""
        try:
            info = (await self.call(team, "conversations.info", channel=channel)).get("channel")
        except SlackApiError as exc:
            if exc.response.get("error") in ("channel_not_found", "not_in_channel"):
                raise Refused(
                    "cannot see channel",
                    user_message="I cannot read that channel. Invite me first: /invite @gemini",
                ) from None
            scope = missing_scope(exc)
            if scope is not None:
                raise scope from None
            raise
        info = info if isinstance(info, dict) else {}
        if info.get("is_im"):
            if info.get("user") != user:
                raise Refused("not your DM", user_message="I can only read your own DM with me.")
            return Channel(channel, "this DM")
        name = f"#{info.get('name') or channel}"
        if not info.get("is_member"):
            raise Refused(
                "bot not in channel",
                user_message=f"I am not in {name}. Invite me first: /invite @gemini",
            )
        if not await self.is_member(team, channel, user=user):
            raise Refused(
                "requester not a member",
                user_message=f"You are not a member of {name}, so I will not summarise it "
                "for you. Join it first.",
            )
        return Channel(channel, name)

    async def is_member(self, team: str, channel: str, *, user: str) -> bool:
        """Whether `user` is in `channel` (conversations.members, paged)."""
        cursor = ""
        while True:
            page = await self.call(
                team, "conversations.members", channel=channel, limit=MEMBERS_PAGE, cursor=cursor
            )
            if user in (page.get("members") or []):
                return True
            cursor = _next_cursor(page)
            if not cursor:
                return False

    # -- reads -----------------------------------------------------------------

    def _reading(self, cap: int) -> _Reading:
        return _Reading(cap, asyncio.get_running_loop().time() + self.read_deadline_s)

    async def thread(
        self, team: str, channel: str, *, root: str, cap: int, with_files: bool = False
    ) -> tuple[list[ChannelMessage], Read]:
        """A whole thread, oldest first, up to `cap` messages."""
        reading = self._reading(cap)
        await self._replies(team, channel, root, reading, oldest=None)
        read = Read(capped="first" if reading.capped else None, cap=cap, stopped=_stopped(reading))
        return await self._convert(team, channel, reading, with_files=with_files), read

    async def channel(
        self,
        team: str,
        channel: str,
        *,
        window: Window,
        user: str,
        cap: int,
        counter: Counter,
    ) -> tuple[list[ChannelMessage], Read, Window]:
        """The window's messages, newest first up to `cap`, with the threads active in it.
        `counter` hears how many messages are read so far (for a progress note)."""
        reading = self._reading(cap)
        window = await self._top_level(team, channel, window, user, reading, counter)
        oldest = _ts(window.start) if window.start else None
        roots = [
            m.ts
            for m in reading.kept.values()
            if m.reply_count and (oldest is None or ts_value(m.latest_reply or m.ts) > _tv(oldest))
        ]
        roots += [m.thread_ts for m in reading.kept.values() if m.is_reply and m.thread_ts]
        earlier: dict[str, HistoryMessage] = {}
        if oldest is not None and not reading.done():
            earlier = await self._older_parents(team, channel, oldest)
        for root in sorted({*roots, *earlier}, key=ts_value, reverse=True):
            if reading.done():
                break
            await self._replies(team, channel, root, reading, oldest=oldest)
            if root in earlier:
                # The parent of a thread from before the window: context for its replies.
                reading.add(earlier[root])
            await counter(len(reading.kept))  # threads are paced: the note keeps moving
        await counter(len(reading.kept))
        read = Read(
            capped="newest" if reading.capped else None,
            cap=cap,
            stopped=_stopped(reading),
            threads=len(reading.threads),
        )
        return await self._convert(team, channel, reading), read, window

    async def _top_level(
        self,
        team: str,
        channel: str,
        window: Window,
        user: str,
        reading: _Reading,
        counter: Counter,
    ) -> Window:
        """conversations.history from now back to the window's start (or the requester's
        last message), newest first; the window, anchored when it was 'my last message'."""
        oldest = _ts(window.start) if window.start else None
        cursor = ""
        while not reading.done():
            page = await self.call(
                team,
                "conversations.history",
                channel=channel,
                oldest=oldest,
                limit=min(HISTORY_PAGE, reading.ask),
                cursor=cursor,
            )
            for m in _messages(page):
                if window.since_own and m.user == user and m.subtype in KEPT_SUBTYPES:
                    return window.after_own(datetime.fromtimestamp(float(m.ts), UTC))
                if not reading.add(m):
                    break
            await counter(len(reading.kept))
            cursor = _next_cursor(page)
            if not cursor:
                break
        return window

    async def _older_parents(
        self, team: str, channel: str, oldest: str
    ) -> dict[str, HistoryMessage]:
        """Threads started before the window with replies inside it: the parents on one
        page of history before the window (a bounded look back, one call)."""
        page = await self.call(
            team, "conversations.history", channel=channel, latest=oldest, limit=LOOK_BACK
        )
        return {
            m.ts: m
            for m in _messages(page)
            if m.reply_count and m.latest_reply and ts_value(m.latest_reply) > _tv(oldest)
        }

    async def _replies(
        self, team: str, channel: str, root: str, reading: _Reading, *, oldest: str | None
    ) -> None:
        """A thread's messages (its parent always), oldest first, once per reading."""
        if root in reading.threads:
            return
        reading.threads.add(root)
        cursor = ""
        while not reading.done():
            page = await self.call(
                team,
                "conversations.replies",
                channel=channel,
                ts=root,
                oldest=oldest,
                limit=min(REPLIES_PAGE, reading.ask),
                cursor=cursor,
            )
            for m in _messages(page):
                if not reading.add(m):
                    break
            cursor = _next_cursor(page)
            if not cursor:
                return

    # -- conversion ------------------------------------------------------------

    async def _convert(
        self, team: str, channel: str, reading: _Reading, *, with_files: bool = False
    ) -> list[ChannelMessage]:
        """Neutral messages: names for users and mentions, built links, file names."""
        ws = await self.adapter.ws(team)
        msgs = list(reading.kept.values())
        ids = {m.user for m in msgs if m.user} | {u for m in msgs for u in user_ids(m.text or "")}
        names = await self.adapter.names_for(sorted(ids), ws)
        base = await self.workspace_url(team)
        out = []
        for m in msgs:
            own = m.user == ws.bot_user
            if own:
                author = "Gemini"
            elif m.bot_id or not m.user:
                profile = m.bot_profile.name if m.bot_profile else None
                author = profile or m.username or "a bot"
            else:
                author = names.get(m.user, m.user)
            out.append(
                ChannelMessage(
                    id=m.ts,
                    author=author,
                    text=readable(m.text or "", bot_user="", names=names),
                    at=datetime.fromtimestamp(float(m.ts), UTC),
                    link=self._link(channel, m, base=base),
                    thread_id=m.thread_ts if m.is_reply else None,
                    files=tuple(self._file(ws, f, with_files) for f in m.files or []),
                    bot=bool(m.bot_id) or own,
                )
            )
        return out

    @staticmethod
    def _file(ws: Workspace, raw: Any, with_files: bool) -> FileRef:
        att = ws.files.attachment(raw)
        return FileRef(
            att.name, att.size or 0, att.declared_mime, att.fetch if with_files else None
        )


def missing_scope(exc: SlackApiError) -> BotError | None:
    """A `missing_scope` answer as a message an admin can act on (None for other errors)."""
    if exc.response.get("error") != "missing_scope":
        return None
    needed = str(exc.response.get("needed") or "a scope")
    return BotError(
        "missing scope",
        user_message=f"The app lacks the {needed} permission: an admin must reinstall it "
        "from slack-manifest.yml.",
    )


def _messages(page: dict[str, Any]) -> list[HistoryMessage]:
    out = []
    raw = page.get("messages")
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(HistoryMessage.model_validate(item))
        except ValidationError:
            log.warning("slack: skipped a message of odd shape while reading history")
    return out


def _next_cursor(page: dict[str, Any]) -> str:
    meta = page.get("response_metadata")
    cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
    return cursor if isinstance(cursor, str) else ""


def _retry_after(headers: Any) -> float:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == "retry-after":
            try:
                return max(1.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                break
    return 30.0  # Slack always sends it; if not, wait long enough to be safe


def _ts(at: datetime) -> str:
    return f"{at.timestamp():.6f}"


def _tv(ts: str) -> tuple[int, int]:
    return ts_value(ts)


def _stopped(reading: _Reading) -> str:
    return SLOW if reading.slow else ""
