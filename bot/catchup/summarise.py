"""Summaries of many messages within the model's budget: map, then reduce.

A transcript that fits one request (HISTORY_TOKEN_BUDGET, less the instructions) is
summarised in one call. A longer one is cut into pieces (threads kept whole where they
fit), each piece summarised on its own (map), and the pieces' summaries combined (reduce;
again in groups, level by level, when even they do not fit). Every summary keeps the
`[mN]` references of the messages its points come from, so the final answer can link each
point to its message (bot/catchup/transcript.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from bot.attachments import estimate_tokens, sniff
from bot.catchup.transcript import EARLIER, ChannelMessage, Line, Transcript
from bot.errors import ModelTooLarge
from bot.personas import PersonaRegistry
from bot.ports import ChatModel, Finished, InlineData, ModelContent, ModelPart, TextDelta
from bot.types import Persona

log = logging.getLogger(__name__)

SUMMARIZER = "summarizer"
# Tokens each request keeps for its instructions (the transcript gets the rest).
INSTRUCTION_TOKENS = 600
# Output bound per request: a summary longer than this is not a summary (and it bounds the bill).
MAX_OUTPUT_TOKENS = 4096
PART_TOKENS = 25  # a summary's "Part 3 (span):" label in a reduce request
CONCURRENCY = 4  # piece requests in flight at once
MAX_LEVELS = 8  # reduce levels; each at least halves the summaries, so 2^8 pieces
# Files whose bytes go with a thread summary: small ones, a few per request.
FILE_MAX_BYTES = 512 * 1024
FILES_PER_REQUEST = 5

Progress = Callable[[str], Awaitable[None]]

CITE = (
    "Messages are numbered like [m12]. A line starting with ↳[m3] is a reply in the thread "
    f"that [m3] started; {EARLIER} marks a reply in a thread that started before this "
    "excerpt. End every point with the references of the messages it comes from, in square "
    "brackets, like [m3] or [m3, m17]. Use only references that appear in the material; "
    "never write links or URLs. Name people as the messages name them."
)
SHAPE = (
    "Give the key points as a short bulleted list, most important first: decisions, "
    "questions still open, action items with their owners, dates and numbers. "
    "Write only the summary, no preamble."
)


@dataclass(frozen=True, slots=True)
class Subject:
    """What is summarised, for the instructions and the answer's header."""

    kind: str  # "channel", "thread" or "conversation"
    name: str  # "#general", "the thread 'Release plan'"
    window: str = ""  # "the last 2 days"
    focus: str = ""

    def describe(self) -> str:
        """`the messages of #general from the last 2 days`."""
        what = f"the messages of {self.name}" if self.kind == "channel" else self.name
        return f"{what} from {self.window}" if self.window else what


@dataclass(slots=True)
class Tally:
    """What the summary cost."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cut_short: bool = False  # some request stopped at its output limit


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary with `[mN]` references, and what it took."""

    text: str
    transcript: Transcript
    pieces: int
    levels: int
    tally: Tally = field(default_factory=Tally)

    @property
    def messages(self) -> int:
        """How many messages were summarised."""
        return len(self.transcript)


class Summariser:
    """Map/reduce summaries of platform messages on a ChatModel."""

    def __init__(
        self,
        *,
        model: ChatModel,
        personas: PersonaRegistry,
        token_budget: int,
        max_messages: int,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.model = model
        self.personas = personas
        self.token_budget = token_budget
        self.max_messages = max_messages
        self.concurrency = concurrency

    @property
    def capacity(self) -> int:
        """Tokens of material one request may carry."""
        return max(200, self.token_budget - INSTRUCTION_TOKENS)

    def persona(self) -> Persona:
        """`summarizer` when defined, else the default persona; no tools, bounded output."""
        if self.personas.has(SUMMARIZER):
            base = self.personas.get(SUMMARIZER)
        else:
            base = self.personas.resolve(thread=None, channel=None)
        cap = base.generation.max_output_tokens
        bounded = min(cap, MAX_OUTPUT_TOKENS) if cap else MAX_OUTPUT_TOKENS
        generation = replace(base.generation, max_output_tokens=bounded)
        return replace(base, generation=generation, tools=(), output=("text",))

    async def summarise(
        self,
        messages: Sequence[ChannelMessage],
        *,
        subject: Subject,
        progress: Progress | None = None,
        with_files: bool = False,
    ) -> Summary:
        """Summarise `messages` (already bounded by the caller to `max_messages`)."""
        transcript = Transcript(messages)
        if not len(transcript):
            return Summary("", transcript, pieces=0, levels=0)
        run = _Run(self, subject, progress, with_files)
        pieces = transcript.pieces(self.capacity)
        if len(pieces) == 1:
            text = await run.piece(pieces[0], index=0, total=1)
            return Summary(text, transcript, pieces=1, levels=0, tally=run.tally)
        if progress is not None:
            await progress(f"Summarising {len(transcript):,} messages in {len(pieces)} parts…")
        parts = await run.map(pieces)
        text, levels = await run.reduce(parts)
        return Summary(text, transcript, pieces=len(pieces), levels=levels, tally=run.tally)


@dataclass(frozen=True, slots=True)
class _Part:
    """A summary of consecutive messages, for the reduce step."""

    start: datetime
    end: datetime
    count: int
    text: str

    def span(self) -> str:
        fmt = "%Y-%m-%d %H:%M"
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        return f"{start.strftime(fmt)} to {end.strftime(fmt)} UTC, {self.count:,} messages"


class _Run:
    """One summary's requests, sharing a tally and a concurrency bound."""

    def __init__(
        self, owner: Summariser, subject: Subject, progress: Progress | None, with_files: bool
    ) -> None:
        self.owner = owner
        self.subject = subject
        self.progress = progress
        self.with_files = with_files
        self.persona = owner.persona()
        self.tally = Tally()
        self.gate = asyncio.Semaphore(max(1, owner.concurrency))
        self.done = 0

    async def map(self, pieces: list[list[Line]]) -> list[_Part]:
        """The summary of each piece, in order."""

        async def one(i: int, piece: list[Line]) -> _Part:
            text = await self.piece(piece, index=i, total=len(pieces))
            self.done += 1
            if self.progress is not None:
                await self.progress(f"Summarised part {self.done} of {len(pieces)}…")
            times = sorted(line.message.at for line in piece)
            return _Part(times[0], times[-1], len(piece), text)

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(pieces))))

    async def piece(self, lines: list[Line], *, index: int, total: int) -> str:
        """The summary of one piece; split in two if the model finds it too large."""
        parts: list[ModelPart] = [_map_prompt(self.subject, index, total), _joined(lines)]
        if self.with_files:
            parts += await _files(lines, room=self.owner.capacity - sum(x.tokens for x in lines))
        try:
            return await self.ask(parts)
        except ModelTooLarge:
            if len(lines) < 2:
                raise
            half = len(lines) // 2
            log.info("catch-up: a piece of %d messages was too large; halving it", len(lines))
            first = await self.piece(lines[:half], index=index, total=total)
            second = await self.piece(lines[half:], index=index, total=total)
            return f"{first}\n{second}"

    async def reduce(self, parts: list[_Part]) -> tuple[str, int]:
        """Combine the pieces' summaries into one, level by level when they do not fit."""
        capacity = self.owner.capacity
        level = 0
        while True:
            level += 1
            last = level >= MAX_LEVELS
            # Each summary at most half a request, so every group holds two or more and each
            # level at least halves them; at the last level all must share one request.
            share = capacity // (len(parts) if last else 2) - PART_TOKENS
            parts = [replace(p, text=_clip(p.text, share)) for p in parts]
            groups = [parts] if last else _groups(parts, capacity)
            if last and level > 1:
                log.warning("catch-up: reduce reached level %d; combining the rest", level)
            final = len(groups) == 1
            done = await asyncio.gather(*(self.combine(g, final=final) for g in groups))
            if final:
                return done[0], level
            parts = [
                _Part(g[0].start, g[-1].end, sum(p.count for p in g), text)
                for g, text in zip(groups, done, strict=True)
            ]

    async def combine(self, group: list[_Part], *, final: bool) -> str:
        """One reduce request."""
        body = "\n\n".join(f"Part {i} ({p.span()}):\n{p.text}" for i, p in enumerate(group, 1))
        return await self.ask([_reduce_prompt(self.subject, len(group), final=final), body])

    async def ask(self, parts: list[ModelPart]) -> str:
        """One request: the text it wrote (other events, such as tool activity, ignored)."""
        async with self.gate:
            out: list[str] = []
            message = ModelContent("user", tuple(parts))
            self.tally.requests += 1
            async for event in self.owner.model.stream(
                persona=self.persona, history=[], message=message
            ):
                if isinstance(event, TextDelta):
                    out.append(event.text)
                elif isinstance(event, Finished):
                    self.tally.input_tokens += event.usage.prompt_tokens
                    self.tally.output_tokens += event.usage.output_tokens
                    if event.finish_reason.lower() in ("max_tokens", "length"):
                        self.tally.cut_short = True
            return "".join(out).strip()


def _map_prompt(subject: Subject, index: int, total: int) -> str:
    where = f"part {index + 1} of {total} of " if total > 1 else ""
    ask = f"Summarise {where}{subject.describe()} for someone catching up."
    if total > 1:
        ask += " The other parts are summarised separately; summarise only this one."
    focus = f" Pay most attention to: {subject.focus}." if subject.focus else ""
    return f"{ask}{focus}\n{CITE}\n{SHAPE}\n\nMessages:"


def _reduce_prompt(subject: Subject, count: int, *, final: bool) -> str:
    ask = (
        f"Below are summaries of {count} consecutive parts of {subject.describe()}, oldest "
        "first. Combine them into one summary"
        + (" for someone catching up." if final else ", keeping every important point.")
    )
    focus = f" Pay most attention to: {subject.focus}." if subject.focus else ""
    keep = (
        "Keep the message references exactly as they appear ([m12]); a point drawn from "
        "several parts keeps all their references. Never write links or URLs."
    )
    return f"{ask}{focus}\n{keep}\n{SHAPE}\n\nSummaries:"


def _joined(lines: list[Line]) -> str:
    return "\n".join(line.text for line in lines)


def _clip(text: str, tokens: int) -> str:
    chars = max(40, tokens * 4)
    return text if len(text) <= chars else text[:chars] + " …"


def _groups(parts: list[_Part], capacity: int) -> list[list[_Part]]:
    groups: list[list[_Part]] = []
    used = 0
    for part in parts:
        size = estimate_tokens(text=part.text) + PART_TOKENS
        if groups and used + size <= capacity:
            groups[-1].append(part)
            used += size
        else:
            groups.append([part])
            used = size
    return groups


async def _files(lines: list[Line], *, room: int) -> list[ModelPart]:
    """Small readable files of these messages, as labelled inline parts within `room`."""
    out: list[ModelPart] = []
    sent = 0
    for line in lines:
        for f in line.message.files:
            if sent >= FILES_PER_REQUEST or f.fetch is None or not 0 < f.size <= FILE_MAX_BYTES:
                continue
            try:
                data = await f.fetch()
            except Exception as exc:  # the name is in the transcript; the bytes are a bonus
                log.info("catch-up: could not read %s: %r", f.name, exc)
                continue
            kind = sniff(data, name=f.name, declared=f.mime_type)
            cost = estimate_tokens(mime_type=kind.mime_type, size=len(data))
            if not kind.supported or len(data) > FILE_MAX_BYTES or cost > room:
                continue
            out += [f"[file {f.name} from [{line.ref}]]", InlineData(kind.mime_type, data)]
            room -= cost
            sent += 1
    return out
