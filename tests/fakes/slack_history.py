"""The fake Slack's messages, channels and their reads: conversations.history / .replies /
.members / .info with Slack's cursor paging, channel membership, chat.getPermalink, and a
fast seeding helper for tests.

Facts followed (docs.slack.dev method pages):
- history: newest first, top-level messages and thread parents only (a parent carries
  thread_ts, reply_count, reply_users, latest_reply); `limit` default 100, max 999.
- replies: the parent first, then the replies oldest first; `limit` max 1000; an unknown
  `ts` is `thread_not_found`; the `ts` of a reply reads that reply's whole thread.
- both: `oldest`/`latest` bound the window, excluded unless `inclusive`; `has_more` and
  `response_metadata.next_cursor` (opaque base64 such as "next_ts:1512085861000543", empty
  when done); Tier 3 (50+/min). Non-Marketplace apps created after 2025-05-29 get
  1 request/min and a `limit` of at most 15 (see `FakeSlack.non_marketplace_limits`).
- an unknown channel is `channel_not_found`; a public channel the bot is not in is
  `not_in_channel`; a private one it is not in does not exist for it (`channel_not_found`).
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TS_RE = re.compile(r"^\d{1,12}(\.\d{1,9})?$")
PERMALINK_BASE = "https://test.slack.com/archives"


def api_ok(**data: Any) -> web.Response:
    return web.json_response({"ok": True, **data})


def api_err(
    error: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    messages: list[str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": messages}
    return web.json_response(body, status=status, headers=headers)


def ts_us(ts: str) -> int:
    """A Slack ts ("1700000001.000100") as integer microseconds (no float rounding)."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0")[:6] or 0)


def format_ts(us: int) -> str:
    """Integer microseconds as Slack writes a ts: "%.6f"."""
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def ts_key(ts: str) -> int:
    """Sort key of a ts."""
    return ts_us(ts)


def encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(cursor: str, kind: str) -> str | None:
    """The value of a cursor of this kind, or None when it is not one of ours."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, sep, value = text.partition(":")
    return value if sep and prefix == kind and value else None


def _ts_cursor(ts: str) -> str:
    return encode_cursor("next_ts", ts.replace(".", ""))


def _cursor_ts(cursor: str) -> int | None:
    value = decode_cursor(cursor, "next_ts")
    if value is None or not value.isdigit() or len(value) <= 6:
        return None
    return ts_us(f"{value[:-6]}.{value[-6:]}")


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


@dataclass
class Call:
    """One Web API call the fake answered (or a file route it served)."""

    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None
    retry_after: float = 0.0  # the Retry-After of a 429
    team: str | None = None  # the workspace of the token that made it


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    blocks: list[Any] = field(default_factory=list)
    bot_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    subtype: str | None = None
    team: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def as_api(self, *, in_thread: bool, replies: list[Message] | None = None) -> dict[str, Any]:
        """The message as conversations.replies / conversations.history return it.
        `replies`: this message's replies (it is then a thread parent with their metadata)."""
        out: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
        }
        if self.subtype:
            out["subtype"] = self.subtype
        if self.team:
            out["team"] = self.team
        if self.is_reply:
            out["thread_ts"] = self.thread_ts
        elif replies:
            users = list(dict.fromkeys(r.user for r in replies))
            out.update(
                thread_ts=self.ts,
                reply_count=len(replies),
                reply_users_count=len(users),
                reply_users=users[:5],
                latest_reply=replies[-1].ts,
                is_locked=False,
                subscribed=False,
            )
        elif in_thread:
            out["thread_ts"] = self.thread_ts or self.ts
        if self.bot_id:
            out["bot_id"] = self.bot_id
        if self.blocks:
            out["blocks"] = self.blocks
        if self.files:
            out["files"] = self.files
        return out

    def visible(self) -> str:
        for b in self.blocks:
            if b.get("type") == "markdown":
                return str(b.get("text", ""))
        return self.text


class HistoryMixin:
    """Channels, membership and message reads of `FakeSlack` (which sets the attributes)."""

    messages: dict[tuple[str, str], Message]
    users: dict[str, dict[str, Any]]
    channel_team: dict[str, str]
    channel_members: dict[str, set[str]]
    channels: dict[str, dict[str, Any]]
    page_limits: dict[str, tuple[int, int]]
    limits: dict[str, tuple[float, int, str]]
    bot_user: str
    bot_id: str
    team_id: str
    _last_us: int
    # From OAuthMixin: the bot user / bot id of the workspace a channel belongs to.
    bot_in: Callable[[str], str]
    bot_id_in: Callable[[str], str]

    # -- channels and membership -------------------------------------------

    def add_channel(
        self,
        channel: str,
        name: str | None = None,
        *,
        private: bool = False,
        members: set[str] | list[str] | None = None,
        team: str | None = None,
    ) -> dict[str, Any]:
        """Register a channel (messages register theirs on their own). `members`: who is in
        it; without it everybody is, the bot included. `team`: the workspace it belongs to
        (default TEAM); a token of another workspace gets channel_not_found for it."""
        info = self.channels.setdefault(channel, {"id": channel})
        info["name"] = name or info.get("name") or f"chan-{channel.lower()}"
        info["is_private"] = private
        if members is not None:
            self.channel_members[channel] = set(members)
        if team is not None:
            self.channel_team[channel] = team
        return info

    def _register(self, channel: str) -> None:
        if channel not in self.channels:
            self.channels[channel] = {
                "id": channel,
                "name": f"chan-{channel.lower()}",
                "is_private": channel.startswith("G"),
            }

    def channel_known(self, channel: str) -> bool:
        return (
            channel in self.channels
            or channel in self.channel_members
            or channel in self.channel_team
            or any(ch == channel for ch, _ in self.messages)
        )

    def is_member(self, channel: str, user: str) -> bool:
        """Whether `user` is in `channel`; a channel without a member list has everybody."""
        members = self.channel_members.get(channel)
        return members is None or user in members

    def members_of(self, channel: str) -> list[str]:
        members = self.channel_members.get(channel)
        if members is None:
            members = {*self.users, self.bot_in(channel)}
        return sorted(members)

    def _access(self, channel: str) -> str | None:
        """The error the bot gets reading `channel`, or None."""
        if not channel or not self.channel_known(channel):
            return "channel_not_found"
        if self.is_member(channel, self.bot_in(channel)):
            return None
        if self.channels.get(channel, {}).get("is_private"):
            return "channel_not_found"
        return "not_in_channel"

    # -- messages -------------------------------------------------------------

    def _store(self, m: Message) -> Message:
        self.messages[(m.channel, m.ts)] = m
        self._register(m.channel)
        self._last_us = max(self._last_us, ts_us(m.ts))
        return m

    def seed(
        self,
        channel: str,
        *,
        count: int,
        start: float,
        step: float = 1.0,
        user_cycle: list[str] | None = None,
        text: Callable[[int], str] | None = None,
        thread_ts: str | None = None,
        team: str | None = None,
    ) -> list[Message]:
        """Insert `count` messages at ts = start + i*step ("%.6f", computed in integer
        microseconds), without the API; as replies of `thread_ts` when given (the parent's
        reply_count / latest_reply / reply_users follow, being computed when read)."""
        start_us, step_us = round(start * 1_000_000), round(step * 1_000_000)
        if count > 1 and step_us <= 0:
            raise ValueError("step must be at least one microsecond")
        users = user_cycle or ["U1ADA", "U2BOB"]
        make_text = text or (lambda i: f"message {i}")
        if team is not None:
            self.channel_team.setdefault(channel, team)
        out: list[Message] = []
        for i in range(count):
            ts = format_ts(start_us + i * step_us)
            if (channel, ts) in self.messages:
                raise ValueError(f"a message {channel}/{ts} exists already")
            user = users[i % len(users)]
            m = Message(channel, ts, user, make_text(i), thread_ts, team=team or self.team_id)
            if user == self.bot_in(channel):
                m.bot_id = self.bot_id_in(channel)
            out.append(self._store(m))
        return out

    def replies_of(self, channel: str, thread_ts: str) -> list[Message]:
        """The replies of a thread (not its parent), oldest first."""
        return sorted(
            (
                m
                for (ch, _), m in self.messages.items()
                if ch == channel and m.thread_ts == thread_ts and m.ts != thread_ts
            ),
            key=lambda m: ts_key(m.ts),
        )

    def _threads(self, channel: str) -> dict[str, list[Message]]:
        out: dict[str, list[Message]] = {}
        for (ch, _), m in self.messages.items():
            if ch == channel and m.is_reply:
                out.setdefault(str(m.thread_ts), []).append(m)
        for replies in out.values():
            replies.sort(key=lambda m: ts_key(m.ts))
        return out

    def message_api(self, m: Message) -> dict[str, Any]:
        """`m` as the Web API shows it, with its thread metadata when it is a parent."""
        replies = None if m.is_reply else self.replies_of(m.channel, m.ts)
        return m.as_api(in_thread=False, replies=replies)

    def permalink(self, channel: str, ts: str) -> str:
        url = f"{PERMALINK_BASE}/{channel}/p{ts.replace('.', '')}"
        m = self.messages.get((channel, ts))
        if m is not None and m.is_reply:
            url += f"?thread_ts={m.thread_ts}&cid={channel}"
        return url

    # -- paging ----------------------------------------------------------------

    def non_marketplace_limits(self) -> None:
        """What a non-Marketplace app created after 2025-05-29 gets: history and replies at
        1 request per minute, with `limit` at most (and by default) 15."""
        for method in ("conversations.history", "conversations.replies"):
            self.limits[method] = (1 / 60, 1, "team")
            self.page_limits[method] = (15, 15)

    def _page_size(self, method: str, raw: Any) -> int | None:
        default, most = self.page_limits.get(method, (100, 1000))
        if raw is None or raw == "":
            return default
        try:
            n = int(str(raw))
        except ValueError:
            return None
        if n < 0:
            return None
        return default if n == 0 else min(n, most)

    @staticmethod
    def _window(args: dict[str, Any]) -> tuple[int, int, bool] | str:
        """(oldest, latest, inclusive) in microseconds, or the error for a bad bound."""
        bounds: list[int] = []
        for name, default in (("oldest", "0"), ("latest", None)):
            raw = args.get(name)
            if raw in (None, "", "now") or (name == "oldest" and raw == "0"):
                bounds.append(ts_us(default) if default else 10**18)
                continue
            if not TS_RE.match(str(raw)):
                return f"invalid_ts_{name}"
            bounds.append(ts_us(str(raw)))
        return bounds[0], bounds[1], _flag(args.get("inclusive"))

    @staticmethod
    def _in_window(us: int, window: tuple[int, int, bool]) -> bool:
        oldest, latest, inclusive = window
        if inclusive:
            return oldest <= us <= latest
        return oldest < us < latest

    @staticmethod
    def _paged(items: list[Message], start: int, limit: int) -> tuple[list[Message], str]:
        page = items[start : start + limit]
        rest = start + limit
        return page, (_ts_cursor(items[rest].ts) if rest < len(items) else "")

    # -- handlers ----------------------------------------------------------------

    async def _conversations_history(self, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel") or "")
        if (err := self._access(channel)) is not None:
            return api_err(err)
        limit = self._page_size("conversations.history", args.get("limit"))
        if limit is None:
            return api_err("invalid_arguments")
        window = self._window(args)
        if isinstance(window, str):
            return api_err(window)
        threads = self._threads(channel)
        shown = sorted(
            (
                m
                for (ch, _), m in self.messages.items()
                if ch == channel
                and (not m.is_reply or m.subtype == "thread_broadcast")
                and self._in_window(ts_us(m.ts), window)
            ),
            key=lambda m: -ts_key(m.ts),
        )
        neg_keys = [-ts_key(m.ts) for m in shown]
        start = 0
        if args.get("cursor"):
            at = _cursor_ts(str(args["cursor"]))
            if at is None:
                return api_err("invalid_cursor")
            start = bisect_left(neg_keys, -at)
        page, next_cursor = self._paged(shown, start, limit)
        body: dict[str, Any] = {
            "messages": [
                m.as_api(in_thread=False, replies=None if m.is_reply else threads.get(m.ts))
                for m in page
            ],
            "has_more": bool(next_cursor),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }
        if args.get("latest"):
            body["latest"] = str(args["latest"])
        if args.get("oldest"):
            body["oldest"] = str(args["oldest"])
        return api_ok(**body)

    async def _conversations_replies(self, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel") or "")
        if (err := self._access(channel)) is not None:
            return api_err(err)
        ts = str(args.get("ts") or "")
        if not TS_RE.match(ts):
            return api_err("thread_not_found")
        limit = self._page_size("conversations.replies", args.get("limit"))
        if limit is None:
            return api_err("invalid_arguments")
        window = self._window(args)
        if isinstance(window, str):
            return api_err(window)
        named = self.messages.get((channel, ts))
        root = str(named.thread_ts) if named is not None and named.is_reply else ts
        parent = self.messages.get((channel, root))
        replies = self.replies_of(channel, root)
        if parent is None and not replies:
            return api_err("thread_not_found")
        # A parent the fake never saw (an event sent without recording it) is left out.
        thread = ([parent] if parent is not None else []) + replies
        shown = [m for m in thread if self._in_window(ts_us(m.ts), window)]
        keys = [ts_key(m.ts) for m in shown]
        start = 0
        if args.get("cursor"):
            at = _cursor_ts(str(args["cursor"]))
            if at is None:
                return api_err("invalid_cursor")
            start = bisect_left(keys, at)
        page, next_cursor = self._paged(shown, start, limit)
        out = []
        for m in page:
            if m is parent:
                out.append(m.as_api(in_thread=True, replies=replies))
            else:
                item = m.as_api(in_thread=True)
                if parent is not None:
                    item["parent_user_id"] = parent.user
                out.append(item)
        return api_ok(
            messages=out,
            has_more=bool(next_cursor),
            response_metadata={"next_cursor": next_cursor},
        )

    async def _conversations_members(self, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel") or "")
        if not self.channel_known(channel) or (
            not self.is_member(channel, self.bot_in(channel))
            and self.channels.get(channel, {}).get("is_private")
        ):
            return api_err("channel_not_found")
        limit = self._page_size("conversations.members", args.get("limit"))
        if limit is None:
            return api_err("invalid_arguments")
        members = self.members_of(channel)
        start = 0
        if args.get("cursor"):
            at = decode_cursor(str(args["cursor"]), "user")
            if at is None:
                return api_err("invalid_cursor")
            start = bisect_left(members, at)
        page = members[start : start + limit]
        rest = start + limit
        next_cursor = encode_cursor("user", members[rest]) if rest < len(members) else ""
        return api_ok(members=page, response_metadata={"next_cursor": next_cursor})

    def channel_object(self, channel: str) -> dict[str, Any]:
        """The channel as conversations.info returns it."""
        self._register(channel)
        info = self.channels[channel]
        if channel.startswith("D"):
            return {
                "id": channel,
                "created": 1_700_000_000,
                "is_im": True,
                "is_org_shared": False,
                "user": info.get("user", "U1ADA"),
                "is_user_deleted": False,
                "priority": 0,
            }
        private = bool(info.get("is_private"))
        return {
            "id": channel,
            "name": info["name"],
            "name_normalized": info["name"],
            "is_channel": not private,
            "is_group": private,
            "is_im": False,
            "is_mpim": False,
            "is_private": private,
            "is_archived": False,
            "is_general": info["name"] == "general",
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": self.is_member(channel, self.bot_in(channel)),
            "created": 1_700_000_000,
            "creator": "U1ADA",
            "context_team_id": self.channel_team.get(channel, self.team_id),
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }

    async def _conversations_info(self, args: dict[str, Any]) -> web.Response:
        channel = str(args.get("channel") or "")
        if not self.channel_known(channel) or (
            not self.is_member(channel, self.bot_in(channel))
            and self.channels.get(channel, {}).get("is_private")
        ):
            return api_err("channel_not_found")
        info = self.channel_object(channel)
        if _flag(args.get("include_num_members")) and not info.get("is_im"):
            info["num_members"] = len(self.members_of(channel))
        return api_ok(channel=info)

    async def _chat_getPermalink(self, args: dict[str, Any]) -> web.Response:
        channel, ts = str(args.get("channel") or ""), str(args.get("message_ts") or "")
        if not self.channel_known(channel):
            return api_err("channel_not_found")
        if (channel, ts) not in self.messages:
            return api_err("message_not_found")
        return api_ok(channel=channel, permalink=self.permalink(channel, ts))
