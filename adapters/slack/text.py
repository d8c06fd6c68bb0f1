"""Slack text in and out: mentions, links, and neutralising crowd pings."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CROWD = re.compile(r"<!(channel|here|everyone)(?:\|[^>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^[A-Z0-9]+(?:\|@?([^>]*))?>")
_BARE = re.compile(r"(?<![\w@])@(channel|here|everyone)\b")
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]+))?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_PERMALINK = re.compile(
    r"https?://[^/\s]+/archives/([CDG][A-Z0-9]+)/p(\d{10})(\d{6})(?:\?[^\s>|]*thread_ts=(\d+\.\d+))?"
)
ZWSP = "\u200b"


def neutralise(text: str) -> str:
    """Model output can never ping a crowd: @channel/@here/@everyone and user groups."""
    text = _CROWD.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    text = _SUBTEAM.sub(lambda m: f"@{ZWSP}{m.group(1) or 'group'}", text)
    return _BARE.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)


_OPEN_TAIL = re.compile(r"(<[^>]*|@\w*)$")


def settled(text: str, *, final: bool) -> str:
    """The neutralised text that is safe to append now: an unfinished `<...` or `@word` at
    the end is held back until more text shows what it is (it could become <!here>)."""
    if not final:
        m = _OPEN_TAIL.search(text)
        if m:
            text = text[: m.start()]
    return neutralise(text)


def mentions(text: str, user_id: str) -> bool:
    """True if `text` mentions `user_id`."""
    return any(m.group(1) == user_id for m in _USER.finditer(text))


def readable(text: str, *, bot_user: str, names: dict[str, str]) -> str:
    """Slack markup to what a model should read: no bot mention, names, plain links."""
    text = _USER.sub(
        lambda m: "" if m.group(1) == bot_user else f"@{names.get(m.group(1), m.group(1))}", text
    )
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _CROWD.sub(lambda m: f"@{m.group(1)}", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def user_ids(text: str) -> list[str]:
    """User ids mentioned in `text`."""
    return [m.group(1) for m in _USER.finditer(text)]


@dataclass(frozen=True, slots=True)
class Permalink:
    """A message link: channel, message ts and the thread it is in."""

    channel: str
    ts: str
    thread_ts: str | None


def parse_permalink(text: str) -> Permalink | None:
    """The first Slack message link in `text`, if any."""
    m = _PERMALINK.search(text)
    if not m:
        return None
    return Permalink(m.group(1), f"{m.group(2)}.{m.group(3)}", m.group(4))
