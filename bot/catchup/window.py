"""The `since` of /catchup: which stretch of a channel's history to read.

Accepted forms (case-insensitive, an optional leading "since" or "last"):
- nothing: the last 24 hours;
- durations `90m`, `12h`, `3d`, `1w`, combined (`1d12h`) or spelt out (`2 days`);
- `today` / `yesterday` (from midnight UTC);
- a date `2026-11-28` (midnight UTC) or an ISO datetime `2026-11-28T09:30`,
  `2026-11-28 09:30Z`, `2026-11-28T09:30:00+01:00` (naive times are UTC);
- `my last message`: everything after the requester's latest message in the channel (the
  adapter finds it, reading back from now).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from bot.errors import BotError

DEFAULT = timedelta(hours=24)
# A year: older windows are almost certainly a typo, and the message cap bounds them anyway.
LONGEST = timedelta(days=366)
USAGE = (
    "Try /catchup with nothing (the last 24 hours), a duration like 90m, 12h, 3d or 1w, "
    "a date like 2026-11-28 (or 2026-11-28T09:30), or 'since my last message'."
)

_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_UNIT_WORDS = {
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "wk": "w",
    "wks": "w",
    "week": "w",
    "weeks": "w",
}
_PART = re.compile(r"(\d+)\s*([a-z]+)")
_DURATION = re.compile(r"^(?:\d+\s*[a-z]+\s*)+$")
_OWN = re.compile(r"^(?:since\s+)?(?:my\s+)?(?:last|latest)\s+(?:message|post)$")
_LABELS = {"m": "minute", "h": "hour", "d": "day", "w": "week"}


class WindowError(BotError):
    """A `since` the bot cannot read; the message says which forms work."""


@dataclass(frozen=True, slots=True)
class Window:
    """Where a catch-up starts: a time, or the requester's last message (`since_own`)."""

    start: datetime | None
    label: str  # for the answer's header: "the last 2 days", "since 2026-11-28 00:00 UTC"
    since_own: bool = False

    def after_own(self, at: datetime) -> Window:
        """This window, anchored at the requester's last message found at `at`."""
        return Window(at, f"since your last message ({stamp(at)})", since_own=True)


def stamp(at: datetime) -> str:
    """A time as the answers show it: `2026-11-28 09:30 UTC`."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_since(text: str, *, now: datetime) -> Window:
    """The window `text` names, ending `now`; WindowError when it names none."""
    raw = " ".join(text.strip().lower().split())
    if not raw:
        return Window(now - DEFAULT, "the last 24 hours")
    if _OWN.match(raw):
        return Window(None, "since your last message", since_own=True)
    body = re.sub(r"^(?:since|last|past)\s+", "", raw)
    if body in ("today", "yesterday"):
        day = now.astimezone(UTC).date() - timedelta(days=1 if body == "yesterday" else 0)
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return Window(start, f"since {stamp(start)}")
    if _DURATION.match(body):
        return _duration(body, now)
    return _moment(body, raw, now)


def _duration(body: str, now: datetime) -> Window:
    total = timedelta(0)
    words: list[str] = []
    for amount, unit_word in _PART.findall(body):
        unit = _UNIT_WORDS.get(unit_word)
        if unit is None:
            raise WindowError(body, user_message=f"I do not know the unit '{unit_word}'. {USAGE}")
        n = int(amount)
        total += n * _UNITS[unit]
        words.append(f"{n} {_LABELS[unit]}{'' if n == 1 else 's'}")
    if total <= timedelta(0):
        raise WindowError(body, user_message=f"That window is empty. {USAGE}")
    if total > LONGEST:
        raise WindowError(body, user_message="That is more than a year; pick a shorter window.")
    return Window(now - total, f"the last {' '.join(words)}")


def _moment(body: str, raw: str, now: datetime) -> Window:
    candidate = body.upper().replace("Z", "+00:00")
    try:
        at = datetime.fromisoformat(candidate)
    except ValueError:
        raise WindowError(raw, user_message=f"I could not read '{raw}'. {USAGE}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at >= now:
        raise WindowError(raw, user_message=f"{stamp(at)} has not happened yet. {USAGE}")
    if now - at > LONGEST:
        raise WindowError(raw, user_message="That is more than a year ago; pick a later start.")
    return Window(at, f"since {stamp(at)}")
