"""The answer a catch-up or thread summary shows: a header, the linked summary, notes.

Adapters give the markup (how a list of linked references looks on their platform) and
say how the read went (cut by CATCHUP_MAX_MESSAGES, stopped by a rate limit); the words
are the same on every platform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.catchup.summarise import Subject, Summary
from bot.catchup.transcript import Render, link_references
from bot.splitting import split_message

# Which end of the window a cut kept: the newest messages (a channel catch-up, read from
# now backwards) or the first ones (a thread, read from its start).
Kept = Literal["newest", "first"]


@dataclass(frozen=True, slots=True)
class Read:
    """How reading the platform's history went."""

    capped: Kept | None = None  # CATCHUP_MAX_MESSAGES stopped the read
    cap: int = 0
    stopped: str = ""  # why the read stopped early otherwise (e.g. the platform's limits)
    threads: int = 0  # threads read besides the channel itself


@dataclass(frozen=True, slots=True)
class Answer:
    """What the requester sees, before platform markup."""

    header: str
    body: str
    notes: tuple[str, ...]


def _same(text: str) -> str:
    return text


def compose(
    summary: Summary,
    *,
    subject: Subject,
    read: Read,
    render: Render,
    clean: Callable[[str], str] = _same,
) -> Answer:
    """The answer for `summary`: the model's text made safe for the platform by `clean`
    (escaping any markup of its own), then its references replaced by `render`ed links."""
    n = summary.messages
    if subject.kind == "channel":
        header = f"Catch-up on {subject.name}, {subject.window}"
    else:
        header = f"Summary of {subject.name}"
    if n:
        header += f": {n:,} message{'' if n == 1 else 's'}"
        if read.threads:
            header += f", {read.threads} thread{'' if read.threads == 1 else 's'}"
    if not n:
        where = subject.name + (f" in {subject.window}" if subject.window else "")
        return Answer(header, f"Nothing was said in {where}.", _read_notes(read))
    body = link_references(
        clean(summary.text), links=summary.transcript.links(), render=render
    ).strip()
    notes = list(_read_notes(read))
    if summary.tally.cut_short:
        notes.append("Gemini stopped at its output limit, so the summary may be incomplete.")
    t = summary.tally
    parts = f" in {summary.pieces} parts" if summary.pieces > 1 else ""
    notes.append(
        f"Read{parts} with {t.requests} Gemini request{'' if t.requests == 1 else 's'}: "
        f"{t.input_tokens:,} input and {t.output_tokens:,} output tokens."
    )
    return Answer(header, body or "(Gemini returned an empty summary.)", tuple(notes))


def _read_notes(read: Read) -> tuple[str, ...]:
    notes = []
    if read.capped == "newest":
        notes.append(
            f"Only the newest {read.cap:,} messages of this window were read (the limit "
            "per catch-up, CATCHUP_MAX_MESSAGES); earlier ones are not in this summary."
        )
    elif read.capped == "first":
        notes.append(
            f"Only the first {read.cap:,} messages were read (the limit per summary, "
            "CATCHUP_MAX_MESSAGES); later ones are not in this summary."
        )
    if read.stopped:
        notes.append(read.stopped)
    return tuple(notes)


def chunks(text: str, limit: int) -> list[str]:
    """`text` in messages of at most `limit` characters, split at paragraphs or lines."""
    out = []
    while text:
        head, text = split_message(text, limit)
        out.append(head)
    return out
