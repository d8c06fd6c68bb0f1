"""Shared by the catch-up tests: a fake-Gemini responder that summarises by citing, and
readers of what reached the model and what the user was shown."""

from __future__ import annotations

import re

from tests.fakes.gemini import Recorded, Reply

LINE = re.compile(r"^\[(m\d+)\] (?:↳\[[^\]]+\] )?\d{4}-\d\d-\d\d \d\d:\d\d (.+?): (.*)$")
SLACK_LINK = re.compile(r"<(https?://[^|>]+)\|(\d+)>")
DISCORD_LINK = re.compile(r"\[(\d+)\]\(<(https?://[^>]+)>\)")


def is_map(rec: Recorded) -> bool:
    """A request that carries messages (not summaries of parts)."""
    return "Messages:" in rec.texts()[0]


def is_reduce(rec: Recorded) -> bool:
    """A request that combines the summaries of parts."""
    return "Summaries:" in rec.texts()[0]


def summarising(rec: Recorded) -> Reply:
    """Map: three points citing the first, middle and last message it was given.
    Reduce: every point of the parts, references kept."""
    if is_reduce(rec):
        points = [ln for ln in rec.texts()[1].splitlines() if ln.startswith("- ")]
        return Reply(["\n".join(points)])
    lines = [m for m in (LINE.match(ln) for ln in rec.texts()[1].splitlines()) if m]
    picked = {0: lines[0], 1: lines[len(lines) // 2], 2: lines[-1]} if lines else {}
    points = [f"- {m.group(2)} said {m.group(3)[:40]} [{m.group(1)}]" for m in picked.values()]
    return Reply(["\n".join(dict.fromkeys(points))])


def citing_every(rec: Recorded) -> Reply:
    """One point per message, each citing its message (small transcripts only)."""
    lines = [m for m in (LINE.match(ln) for ln in rec.texts()[1].splitlines()) if m]
    return Reply(["\n".join(f"- {m.group(3)[:40]} [{m.group(1)}]" for m in lines)])


def transcript_lines(requests: list[Recorded]) -> dict[str, tuple[str, str]]:
    """Reference -> (author, text) of every message line the model was sent."""
    out: dict[str, tuple[str, str]] = {}
    for rec in requests:
        if is_map(rec):
            for ln in rec.texts()[1].splitlines():
                m = LINE.match(ln)
                if m:
                    out[m.group(1)] = (m.group(2), m.group(3))
    return out
