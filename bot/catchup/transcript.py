"""Platform messages as the model reads them: numbered transcript lines, cut into pieces
that fit a token budget, and the model's `[mN]` references turned back into links.

The model never writes a URL we show: it cites `[m12]`, and `link_references` swaps each
reference it knows for the platform's link to that message (unknown ones are dropped).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.attachments import estimate_tokens

# One message alone never takes more than this many tokens of a request (a pasted log
# would otherwise crowd out everything else in its piece).
MAX_MESSAGE_TOKENS = 4000
EARLIER = "↳[earlier]"


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file on a message: its name always; `fetch` when its bytes may be sent too."""

    name: str
    size: int = 0
    mime_type: str | None = None
    fetch: Callable[[], Awaitable[bytes]] | None = None


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """One platform message, neutral: who, what, when, where it links to, which thread."""

    id: str
    author: str
    text: str
    at: datetime
    link: str = ""
    # The id of the thread's first message when this is a reply in a thread; None for a
    # top-level message (which may itself start a thread).
    thread_id: str | None = None
    files: tuple[FileRef, ...] = ()
    bot: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    """A message as one transcript entry."""

    ref: str  # "m12"
    text: str
    tokens: int
    message: ChannelMessage


class Transcript:
    """Messages grouped by thread (each thread right after its first message, threads in
    the order they started), numbered `[m1]`, `[m2]`... in that order."""

    def __init__(self, messages: Iterable[ChannelMessage]) -> None:
        unique: dict[str, ChannelMessage] = {}
        for m in messages:
            unique.setdefault(m.id, m)
        self.groups: list[list[Line]] = []
        self.refs: dict[str, ChannelMessage] = {}
        ids: dict[str, str] = {}  # message id -> ref
        for group in _grouped(unique.values()):
            lines = []
            for m in group:
                ref = f"m{len(self.refs) + 1}"
                ids[m.id] = ref
                self.refs[ref] = m
                text = _render(ref, m, parent=ids.get(m.thread_id or ""))
                lines.append(Line(ref, text, estimate_tokens(text=text) + 1, m))
            self.groups.append(lines)

    @property
    def lines(self) -> list[Line]:
        """Every line, in order."""
        return [line for group in self.groups for line in group]

    @property
    def tokens(self) -> int:
        """Estimated tokens of the whole transcript."""
        return sum(line.tokens for group in self.groups for line in group)

    def __len__(self) -> int:
        return len(self.refs)

    def pieces(self, capacity: int) -> list[list[Line]]:
        """The lines in consecutive pieces of at most `capacity` tokens each; a thread is
        kept in one piece whenever it fits in one."""
        capacity = max(1, capacity)
        pieces: list[list[Line]] = []
        current: list[Line] = []
        used = 0
        for group in self.groups:
            size = sum(line.tokens for line in group)
            if used + size <= capacity:
                current += group
                used += size
                continue
            if current and size <= capacity:
                pieces.append(current)
                current, used = list(group), size
                continue
            for line in group:  # a thread larger than a piece: split at messages
                if current and used + line.tokens > capacity:
                    pieces.append(current)
                    current, used = [], 0
                current.append(line)
                used += line.tokens
        if current:
            pieces.append(current)
        return pieces

    def links(self) -> dict[str, str]:
        """Reference -> link (empty where the platform gave none)."""
        return {ref: m.link for ref, m in self.refs.items()}


def _grouped(messages: Iterable[ChannelMessage]) -> list[list[ChannelMessage]]:
    """Messages by thread: a thread's first message, then its replies by time; threads
    ordered by when they started (a thread whose first message is absent: its first reply)."""
    groups: dict[str, list[ChannelMessage]] = {}
    for m in sorted(messages, key=lambda m: (m.at, m.id)):
        groups.setdefault(m.thread_id or m.id, []).append(m)
    ordered = []
    for key, group in groups.items():
        roots = [m for m in group if m.id == key]
        rest = [m for m in group if m.id != key]
        ordered.append(roots + rest)
    ordered.sort(key=lambda g: (g[0].at, g[0].id))
    return ordered


def _render(ref: str, m: ChannelMessage, *, parent: str | None) -> str:
    when = m.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    who = f"{m.author} (bot)" if m.bot else m.author
    # One line per message: line breaks and runs of spaces cost tokens and say little here.
    text = " ".join(m.text.split())
    limit = MAX_MESSAGE_TOKENS * 4
    if len(text) > limit:
        text = text[:limit] + " … (message cut here)"
    if m.files:
        names = ", ".join(f.name for f in m.files)
        text = f"{text} [files: {names}]" if text else f"[files: {names}]"
    thread = ""
    if m.thread_id is not None and m.thread_id != m.id:
        thread = f"↳[{parent}] " if parent else f"{EARLIER} "
    return f"[{ref}] {thread}{when} {who}: {text}"


# `[m3]`, `[m3, m7]`, `(m3)`, `[m3][m7]`: a run of reference groups.
_GROUP = r"[\[(]\s*m\d+(?:\s*[,;]?\s*m\d+)*\s*[\])]"
_RUN = re.compile(rf"[ \t]?{_GROUP}(?:[ \t]*{_GROUP})*")
_REF = re.compile(r"m\d+")

Render = Callable[[Sequence[tuple[str, str]]], str]


def cited(text: str) -> list[str]:
    """The references `text` cites, in order, once each."""
    out: dict[str, None] = {}
    for run in _RUN.finditer(text):
        for ref in _REF.findall(run.group(0)):
            out.setdefault(ref, None)
    return list(out)


def link_references(text: str, *, links: Mapping[str, str], render: Render) -> str:
    """Replace each run of references by `render([(label, url), ...])`: label is the
    reference's number, url the link from `links`. References not in `links` are dropped
    (a model inventing `[m999]` links nowhere); a run left empty disappears."""

    def swap(match: re.Match[str]) -> str:
        refs = list(dict.fromkeys(_REF.findall(match.group(0))))
        known = [(ref[1:], links[ref]) for ref in refs if ref in links]
        if not known:
            return ""
        lead = " " if match.group(0)[:1] in (" ", "\t") else ""
        return lead + render(known)

    return _RUN.sub(swap, text)
