"""Summariser: one request when it fits, map/reduce (recursively) when not, references kept,
usage counted; through the real Gemini client and the fake Gemini."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.catchup import ChannelMessage, FileRef, Read, Subject, Summariser
from bot.commands import Commands
from bot.gemini import GeminiChatModel
from bot.personas import PersonaRegistry, load_personas, parse_personas
from bot.ports import Finished, ModelContent, TextDelta
from bot.types import Author, NewTurn, Persona, RemoteFile, TextPart, ThreadKey, Usage
from storage.memory import MemoryStore
from tests.fakes.gemini import FakeGemini, Fault, Recorded, Reply

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
SUBJECT = Subject("channel", "#general", "the last 2 days")
REF = re.compile(r"\[(m\d+)\]")


def messages(n: int, *, text: str = "we talked about item") -> list[ChannelMessage]:
    return [
        ChannelMessage(
            id=str(i),
            author=("Ada", "Bob")[i % 2],
            text=f"{text} {i}",
            at=T0 + timedelta(minutes=i),
            link=f"https://chat.test/{i}",
        )
        for i in range(n)
    ]


def citing(rec: Recorded) -> Reply:
    """A model that cites every message (or summary reference) it was given."""
    refs = list(dict.fromkeys(re.findall(r"m\d+", rec.texts()[-1])))
    kind = "combined" if "Summaries:" in rec.texts()[0] else "piece"
    return Reply([f"- {kind} point [{', '.join(refs)}]"])


def summariser(model: GeminiChatModel, budget: int, personas: PersonaRegistry | None = None):
    return Summariser(
        model=model,
        personas=personas or load_personas(None, default="assistant"),
        token_budget=budget,
        max_messages=10_000,
    )


async def test_one_request_when_it_fits(gemini: GeminiChatModel, fake_gemini: FakeGemini) -> None:
    fake_gemini.responder = citing
    s = summariser(gemini, 200_000)
    summary = await s.summarise(messages(40), subject=SUBJECT)
    [req] = fake_gemini.generate_requests()
    assert "summarise material for busy colleagues" in req.system_instruction()
    assert req.generation_config().get("maxOutputTokens") == 4096
    prompt, transcript = req.texts()
    assert "Summarise the messages of #general from the last 2 days" in prompt
    assert "[m3] or [m3, m17]" in prompt and "never write links" in prompt
    assert transcript.splitlines()[0] == "[m1] 2026-11-29 08:00 Ada: we talked about item 0"
    assert len(transcript.splitlines()) == 40
    assert summary.pieces == 1 and summary.levels == 0
    assert summary.text == "- piece point [" + ", ".join(f"m{i}" for i in range(1, 41)) + "]"
    assert summary.tally.requests == 1
    assert summary.tally.input_tokens == sum(len(t) for t in req.texts()) // 4
    assert summary.tally.output_tokens > 0


async def test_map_then_reduce_keeps_every_reference(
    gemini: GeminiChatModel, fake_gemini: FakeGemini
) -> None:
    fake_gemini.responder = citing
    s = summariser(gemini, 2_000)  # ~1,400 tokens of material per request
    seen: list[str] = []

    async def progress(text: str) -> None:
        seen.append(text)

    summary = await s.summarise(messages(600), subject=SUBJECT, progress=progress)
    reqs = fake_gemini.generate_requests()
    maps = [r for r in reqs if "Messages:" in r.texts()[0]]
    reduces = [r for r in reqs if "Summaries:" in r.texts()[0]]
    assert summary.pieces == len(maps) >= 4
    assert len(reduces) >= 1 and summary.tally.requests == len(reqs)
    for r in maps:
        assert sum(len(t) for t in r.texts()) // 4 <= 2_000
        assert re.search(r"Summarise part \d+ of \d+ of the messages of #general", r.texts()[0])
    # Every message reached a map request exactly once.
    mapped = [line for r in maps for line in r.texts()[1].splitlines()]
    assert sorted(mapped) == sorted(line.text for line in summary.transcript.lines)
    # The last request combines; its output cites every message.
    assert "Summaries:" in reqs[-1].texts()[0]
    assert "Part 1 (2026-11-29 08:00 to" in reqs[-1].texts()[1]
    assert set(re.findall(r"m\d+", summary.text)) == {f"m{i}" for i in range(1, 601)}
    assert seen[0] == f"Summarising 600 messages in {summary.pieces} parts…"
    assert seen[-1] == f"Summarised part {summary.pieces} of {summary.pieces}…"


async def test_reduce_recurses_and_ends_when_summaries_do_not_shrink(
    gemini: GeminiChatModel, fake_gemini: FakeGemini
) -> None:
    # A model that answers at length: each summary is as long as a piece may be.
    fake_gemini.responder = lambda rec: Reply(["- long point " + "blah " * 600 + "[m1]"])
    s = summariser(gemini, 1_200)
    summary = await s.summarise(messages(400), subject=SUBJECT)
    assert summary.levels >= 2
    reqs = fake_gemini.generate_requests()
    assert all(sum(len(t) for t in r.texts()) // 4 <= 1_300 for r in reqs)
    assert summary.text.endswith("[m1]")


async def test_a_piece_gemini_finds_too_large_is_halved(
    gemini: GeminiChatModel, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(Fault.too_large())
    fake_gemini.responder = citing
    summary = await summariser(gemini, 200_000).summarise(messages(10), subject=SUBJECT)
    reqs = fake_gemini.generate_requests()
    assert len(reqs) == 3  # refused, then two halves
    assert [len(r.texts()[1].splitlines()) for r in reqs] == [10, 5, 5]
    assert summary.text.count("- piece point") == 2


async def test_small_files_go_with_a_thread_summary(
    gemini: GeminiChatModel, fake_gemini: FakeGemini
) -> None:
    async def notes() -> bytes:
        return b"meeting notes: ship it"

    async def broken() -> bytes:
        raise OSError("gone")

    msgs = messages(3)
    msgs[1] = ChannelMessage(
        "1",
        "Bob",
        "here",
        msgs[1].at,
        files=(
            FileRef("notes.txt", 22, "text/plain", notes),
            FileRef("big.pdf", 10_000_000, "application/pdf", notes),
            FileRef("lost.txt", 10, "text/plain", broken),
        ),
    )
    await summariser(gemini, 200_000).summarise(msgs, subject=SUBJECT, with_files=True)
    [req] = fake_gemini.generate_requests()
    assert req.inline_mimes() == ["text/plain"]
    assert "[file notes.txt from [m2]]" in req.texts()
    assert "[files: notes.txt, big.pdf, lost.txt]" in req.texts()[1]


class EventfulModel:
    """A model whose stream carries events other than text (tool activity and the like)."""

    def __init__(self) -> None:
        self.calls = 0

    async def stream(
        self, *, persona: Persona, history: Sequence[ModelContent], message: ModelContent
    ) -> AsyncIterator[object]:
        self.calls += 1
        yield object()  # an event kind this code does not know
        yield TextDelta("- a point [m1]")
        yield Finished("max_tokens", Usage(100, 7))

    async def upload(self, *, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


async def test_other_events_are_ignored_and_a_cut_is_noted() -> None:
    only = parse_personas(
        '[personas.plain]\ndescription = "d"\nsystem_instruction = "Be plain."\n', source="t"
    )
    personas = PersonaRegistry(only, default="plain", source="t")
    model = EventfulModel()
    s = Summariser(model=model, personas=personas, token_budget=10_000, max_messages=5)  # type: ignore[arg-type]
    assert s.persona().system_instruction == "Be plain."  # no summarizer: the default
    summary = await s.summarise(messages(2), subject=SUBJECT)
    assert summary.text == "- a point [m1]"
    assert summary.tally.cut_short and summary.tally.input_tokens == 100


async def test_commands_count_usage_and_read_the_console_store(
    gemini: GeminiChatModel, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake_gemini.responder = citing
    store = MemoryStore()
    await store.open()
    personas = load_personas(None, default="assistant")
    commands = Commands(store=store, personas=personas, summariser=summariser(gemini, 9_000))
    key = ThreadKey("console", "local", "console", "t1")
    conv = await store.get_or_create_conversation(key)
    me = Author("ada", "Ada")
    for i in range(6):
        role = "user" if i % 2 == 0 else "model"
        await store.append_turn(
            conv.id,
            NewTurn(role, (TextPart(f"turn {i}"),), author=me if role == "user" else None),
        )
    msgs, read = await commands.stored_messages(key)
    assert [m.text for m in msgs] == [f"turn {i}" for i in range(6)]
    assert msgs[1].bot and msgs[1].author == "Gemini" and read.capped is None
    from bot.catchup import parse_since

    own = parse_since("since my last message", now=datetime.now(UTC))
    later, _ = await commands.stored_messages(key, window=own, user_id="ada")
    assert [m.text for m in later] == ["turn 5"]
    answer = await commands.summarise(
        msgs,
        platform="console",
        user_id="ada",
        subject=Subject("conversation", "this conversation"),
        read=Read(),
        render=lambda refs: "(" + ", ".join(f"#{n}" for n, _ in refs) + ")",
    )
    assert answer.body == "- piece point (#1, #2, #3, #4, #5, #6)"
    usage = await store.get_usage("console", "ada", day=datetime.now(UTC).date().isoformat())
    assert usage.turns == 1 and usage.prompt_tokens > 0
    await store.close()
