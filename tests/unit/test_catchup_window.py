"""/catchup's `since`: durations, dates, datetimes, 'since my last message', and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.catchup import WindowError, parse_since

NOW = datetime(2026, 11, 30, 15, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago", "label"),
    [
        ("", timedelta(hours=24), "the last 24 hours"),
        ("3d", timedelta(days=3), "the last 3 days"),
        ("12h", timedelta(hours=12), "the last 12 hours"),
        ("90m", timedelta(minutes=90), "the last 90 minutes"),
        ("1w", timedelta(weeks=1), "the last 1 week"),
        ("1d12h", timedelta(days=1, hours=12), "the last 1 day 12 hours"),
        ("2 days", timedelta(days=2), "the last 2 days"),
        ("since 3 hours", timedelta(hours=3), "the last 3 hours"),
        ("  Last 2D ", timedelta(days=2), "the last 2 days"),
    ],
)
def test_durations(text: str, ago: timedelta, label: str) -> None:
    w = parse_since(text, now=NOW)
    assert w.start == NOW - ago
    assert w.label == label and not w.since_own


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
        ("since 2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-28T09:30", datetime(2026, 11, 28, 9, 30, tzinfo=UTC)),
        ("2026-11-28 09:30Z", datetime(2026, 11, 28, 9, 30, tzinfo=UTC)),
        ("2026-11-28T09:30:00+01:00", datetime(2026, 11, 28, 8, 30, tzinfo=UTC)),
        ("today", datetime(2026, 11, 30, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 29, tzinfo=UTC)),
    ],
)
def test_dates_and_times(text: str, start: datetime) -> None:
    w = parse_since(text, now=NOW)
    assert w.start == start
    assert w.label == f"since {start.strftime('%Y-%m-%d %H:%M')} UTC"


@pytest.mark.parametrize(
    "text", ["since my last message", "my last message", "last message", "Since my latest post"]
)
def test_since_my_last_message(text: str) -> None:
    w = parse_since(text, now=NOW)
    assert w.since_own and w.start is None
    anchored = w.after_own(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    assert anchored.start == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert anchored.label == "since your last message (2026-11-30 09:00 UTC)"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("soon", "could not read 'soon'"),
        ("3 fortnights", "unit 'fortnights'"),
        ("0h", "empty"),
        ("400d", "more than a year"),
        ("2027-01-01", "has not happened yet"),
        ("2020-01-01", "more than a year ago"),
    ],
)
def test_refusals_say_why_and_what_works(text: str, says: str) -> None:
    with pytest.raises(WindowError) as err:
        parse_since(text, now=NOW)
    assert says in err.value.user_message
