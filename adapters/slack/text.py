"""Slack text in and out: mentions, links, and neutralising crowd pings."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"<([^<>]*)>")
_USER = re.compile(r"<@([A-Za-z0-9]+)(?:\|([^<>]*))?>")
_CROWD = re.compile(r"<!(channel|here|everyone)(?:\|[^<>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^[A-Za-z0-9]+(?:\|@?([^<>]*))?>")
_SPECIAL = re.compile(r"<!([^<>|]*)(?:\|([^<>]*))?>")
_BARE = re.compile(r"(?<![\w@])@(channel|here|everyone)\b")
_PERMALINK = re.compile(
    r"https?://[^/\s]+/archives/([CDG][A-Z0-9]+)/p(\d{10})(\d{6})(?:\?[^\s>|]*thread_ts=(\d+\.\d+))?"
)
ZWSP = "\u200b"


def neutralise(text: str) -> str:
    """Model output pings nobody: users and user groups become plain `@name` text, and
    @channel/@here/@everyone (markup or bare) get a zero-width space after the @."""
    # A user mention keeps its label (`<@W456|bob>` -> @bob) or its id, as plain text.
    text = _USER.sub(lambda m: f"@{m.group(2) or m.group(1)}", text)
    text = _CROWD.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    text = _SUBTEAM.sub(lambda m: f"@{ZWSP}{m.group(1) or 'group'}", text)
    # Any other <!...> (dates, unknown specials): its fallback label, never live markup.
    text = _SPECIAL.sub(lambda m: m.group(2) or m.group(1), text)
    return _BARE.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)


# An unfinished token at the end: `<` alone, `<@...` or `<!...` not yet closed (labels can
# hold spaces; anything longer than a label is plain text), or a bare `@word`.
_OPEN_TAIL = re.compile(r"(<(?:[@!][^<>\n]{0,120})?|(?<![\w@])@\w{0,9})$")


def settled(text: str, *, final: bool) -> str:
    """The neutralised text that is safe to show now: an unfinished mention at the end is
    held back until more text shows what it is (`<@U1` could become `<@U123>`)."""
    if not final:
        m = _OPEN_TAIL.search(text)
        if m:
            text = text[: m.start()]
    return neutralise(text)


def mentions(text: str, user_id: str) -> bool:
    """True if `text` mentions `user_id`."""
    return any(m.group(1) == user_id for m in _USER.finditer(text))


def unescape(text: str) -> str:
    """Slack's three entities, decoded once (`&amp;lt;` is the text `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _token(inner: str, *, bot_user: str, names: dict[str, str]) -> str:
    body, _, label = inner.partition("|")
    if body.startswith("@"):
        uid = body[1:]
        return "" if uid == bot_user else f"@{names.get(uid) or unescape(label) or uid}"
    if body.startswith("#"):
        return f"#{unescape(label) or body[1:]}"
    if body.startswith("!subteam^"):
        return f"@{unescape(label).lstrip('@') or 'group'}"
    if body.startswith("!"):
        special = body[1:]
        return f"@{special}" if special in ("channel", "here", "everyone") else unescape(label)
    url = unescape(body)
    return f"{unescape(label)} ({url})" if label else url


def readable(text: str, *, bot_user: str, names: dict[str, str]) -> str:
    """Slack markup to what a model should read, in one pass: no bot mention, names for
    users, plain links and channels, and entities decoded exactly once."""
    out: list[str] = []
    at = 0
    for m in _TOKEN.finditer(text):
        out.append(unescape(text[at : m.start()]))
        out.append(_token(m.group(1), bot_user=bot_user, names=names))
        at = m.end()
    out.append(unescape(text[at:]))
    return re.sub(r"[ \t]{2,}", " ", "".join(out)).strip()


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
