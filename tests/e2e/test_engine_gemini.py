"""The engine through the real google-genai client against the fake Gemini."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.clock import SystemClock
from bot.engine import INTERRUPTED, ConversationEngine
from bot.personas import load_personas
from bot.ports import Budget
from bot.types import Attachment, Author, IncomingMessage, RemoteFile, ThreadKey
from tests.conftest import ROOT
from tests.fakes.gemini import Fault, Reply
from tests.helpers import RecordingTarget, until

KEY = ThreadKey("test", "W", "C", "thread-1")
ADA = Author("U1", "Ada")
BOB = Author("U2", "Bob")
PDF = b"%PDF-1.4\n" + b"0" * 5000


@pytest.fixture
def engine(store, gemini) -> ConversationEngine:
    return ConversationEngine(
        store=store,
        model=gemini,
        personas=load_personas(ROOT / "personas.toml", default="assistant"),
        history_token_budget=100_000,
        inline_max_bytes=1000,
        max_attachment_bytes=100_000,
    )


def target() -> RecordingTarget:
    return RecordingTarget(SystemClock(), budget=Budget("t", rate=float("inf"), burst=100))


def msg(text: str, *, author: Author = ADA, key: ThreadKey = KEY, **kw) -> IncomingMessage:
    return IncomingMessage(key=key, author=author, text=text, **kw)


def attachment(name: str, data: bytes) -> Attachment:
    async def fetch() -> bytes:
        return data

    return Attachment(name=name, fetch=fetch, size=len(data))


async def turns(engine: ConversationEngine, key: ThreadKey = KEY):
    conv = await engine.store.get_conversation(key)
    assert conv is not None
    return (await engine.store.load_history(conv.id, token_budget=10**9)).turns


async def test_second_turn_carries_the_first_and_the_persona(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["Paris ", "is the capital."]))
    t1 = target()
    r1 = await engine.handle(msg("Capital of France?", persona="coder"), t1)
    assert r1.status == "complete" and r1.text == "Paris is the capital."
    assert t1.visible() == ["Paris is the capital."]
    await engine.handle(msg("And of Italy?"), target())
    req = fake_gemini.generate_requests()[-1]
    roles = [c["role"] for c in req.contents()]
    assert roles == ["user", "model", "user"]
    assert req.texts() == [
        "[Ada] Capital of France?",
        "Paris is the capital.",
        "[Ada] And of Italy?",
    ]
    assert "senior software engineer" in req.system_instruction()
    assert req.generation_config()["temperature"] == 0.2


async def test_people_are_attributed_by_name(engine, fake_gemini) -> None:
    await engine.handle(msg("I think it's 4", author=ADA), target())
    await engine.handle(msg("No, 5", author=BOB), target())
    req = fake_gemini.generate_requests()[-1]
    assert req.texts()[0] == "[Ada] I think it's 4"
    assert req.texts()[-1] == "[Bob] No, 5"
    assert "speaker's name in square brackets" in req.system_instruction()


async def test_channel_default_persona_applies_unless_thread_chose(engine, fake_gemini) -> None:
    await engine.store.set_channel_persona("test", "W", "C", "editor")
    await engine.handle(msg("fix this sentence"), target())
    assert "careful editor" in fake_gemini.generate_requests()[-1].system_instruction()
    await engine.handle(msg("now code", persona="coder"), target())
    await engine.handle(msg("more"), target())
    assert "software engineer" in fake_gemini.generate_requests()[-1].system_instruction()


async def test_unknown_persona_gets_a_clear_message(engine, fake_gemini) -> None:
    t = target()
    r = await engine.handle(msg("hi", persona="pirate"), t)
    assert r.status == "failed"
    assert t.calls[-1].kind == "fail" and "Unknown persona 'pirate'" in t.calls[-1].text
    assert fake_gemini.generate_requests() == []


async def test_small_file_inline_large_file_uploaded_once(engine, fake_gemini) -> None:
    small = b"\x89PNG\r\n\x1a\n" + b"1" * 100
    await engine.handle(
        msg(
            "what are these?", attachments=(attachment("a.png", small), attachment("doc.pdf", PDF))
        ),
        target(),
    )
    first = fake_gemini.generate_requests()[-1]
    assert first.inline_mimes() == ["image/png"]
    assert len(first.file_uris()) == 1
    assert len(fake_gemini.upload_starts()) == 1
    await engine.handle(msg("and now?"), target())
    second = fake_gemini.generate_requests()[-1]
    assert second.file_uris() == first.file_uris()
    assert second.inline_mimes() == ["image/png"]  # small files are re-sent inline
    assert len(fake_gemini.upload_starts()) == 1


async def test_expired_file_is_reuploaded_from_stored_bytes(engine, fake_gemini) -> None:
    await engine.handle(msg("read", attachments=(attachment("doc.pdf", PDF),)), target())
    uri1 = fake_gemini.generate_requests()[-1].file_uris()[0]
    # 48 h later: the provider forgot the file; our record says it has expired.
    fid = uri1.rsplit("/", 1)[-1]
    fake_gemini.files[fid]["expirationTime"] = (
        datetime.now(UTC) - timedelta(minutes=1)
    ).isoformat()
    sha = next(iter(await _file_shas(engine)))
    old = await engine.store.get_remote_file(sha)
    await engine.store.put_remote_file(
        sha, RemoteFile(old.uri, old.mime_type, datetime.now(UTC) - timedelta(minutes=1), old.name)
    )
    r = await engine.handle(msg("again"), target())
    assert r.status == "complete"
    uri2 = fake_gemini.generate_requests()[-1].file_uris()[0]
    assert uri2 != uri1
    assert fake_gemini.file_bytes[uri2.rsplit("/", 1)[-1]] == PDF
    assert len(fake_gemini.upload_starts()) == 2


async def _file_shas(engine):
    out = set()
    for t in await turns(engine):
        for p in t.parts:
            if hasattr(p, "sha256"):
                out.add(p.sha256)
    return out


async def test_unsupported_and_oversized_files_get_notes_and_text_is_answered(
    engine, fake_gemini
) -> None:
    t = target()
    zip_ = b"PK\x03\x04" + b"0" * 100
    big = attachment("huge.pdf", b"%PDF" + b"0" * 200_000)
    r = await engine.handle(msg("summarise", attachments=(attachment("a.zip", zip_), big)), t)
    assert r.status == "complete"
    shown = t.visible()[0]
    assert "Skipped a.zip: Gemini cannot read application/zip files." in shown
    assert "Skipped huge.pdf: it is 195.3 KB; the limit is 97.7 KB." in shown
    assert "echo: [Ada] summarise" in shown
    req = fake_gemini.generate_requests()[-1]
    assert req.inline_mimes() == [] and req.file_uris() == []


async def test_failed_download_is_a_note(engine, fake_gemini) -> None:
    async def broken() -> bytes:
        raise ConnectionError("reset")

    t = target()
    await engine.handle(msg("hi", attachments=(Attachment("x.png", broken),)), t)
    assert "Skipped x.png: it could not be downloaded." in t.visible()[0]


async def test_history_budget_keeps_first_turn_and_says_what_was_dropped(
    engine, fake_gemini
) -> None:
    engine.history_token_budget = 1000
    for i in range(30):
        await engine.handle(msg(f"message number {i} " + "x" * 200), target())
    r = await engine.handle(msg("last"), target())
    assert r.dropped > 0
    req = fake_gemini.generate_requests()[-1]
    assert req.texts()[0].startswith("[Ada] message number 0 ")
    assert req.texts()[-1] == "[Ada] last"
    assert f"{r.dropped} earlier message(s)" in req.system_instruction()


# -- faults ------------------------------------------------------------------


async def test_429_before_first_token_is_retried(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Fault.rate_limited(0.05), Fault.unavailable(), Reply(["fine"]))
    r = await engine.handle(msg("hi"), target())
    assert r.status == "complete" and r.text == "fine"
    assert len(fake_gemini.generate_requests()) == 3


async def test_quota_exhausted_says_when_to_retry(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Fault.rate_limited(45.0))
    t = target()
    r = await engine.handle(msg("hi"), t)
    assert r.status == "failed"
    assert t.calls[-1].text == "Gemini's quota is used up for now. Try again in about 45 seconds."
    assert len(fake_gemini.generate_requests()) == 1  # a 45 s wait is not worth blocking on
    hist = await turns(engine)
    assert [(x.role, x.status) for x in hist] == [("user", "complete"), ("model", "failed")]


async def test_unavailable_after_retries(engine, fake_gemini) -> None:
    fake_gemini.enqueue(*[Fault.unavailable()] * 4)
    t = target()
    await engine.handle(msg("hi"), t)
    assert "Gemini is unavailable right now" in t.calls[-1].text
    assert len(fake_gemini.generate_requests()) == 4  # 1 + GEMINI_MAX_RETRIES


async def test_error_mid_stream_keeps_partial_text(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Fault.mid_stream("The answer ", "is "))
    t = target()
    r = await engine.handle(msg("q"), t)
    assert r.status == "partial"
    assert [c.kind for c in t.calls][-2:] == ["finish", "fail"]
    assert t.visible() == ["The answer is "]
    assert t.calls[-1].text.startswith("The reply was cut short: Gemini is unavailable")
    hist = await turns(engine)
    assert hist[-1].status == "partial" and hist[-1].text == "The answer is "
    assert len(fake_gemini.generate_requests()) == 1  # never retried after the first token
    # The partial reply is part of the next turn's history.
    await engine.handle(msg("go on"), target())
    assert "The answer is " in fake_gemini.generate_requests()[-1].texts()


async def test_safety_block(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Fault.safety_block())
    t = target()
    r = await engine.handle(msg("bad"), t)
    assert r.status == "failed"
    assert t.calls[-1].text == "Gemini declined to answer this (safety). Try rephrasing."
    assert (await turns(engine))[-1].status == "failed"


async def test_safety_stop_after_some_text(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["Some text"], finish_reason="SAFETY"))
    t = target()
    r = await engine.handle(msg("q"), t)
    assert r.status == "partial" and r.finish_reason == "safety"
    assert t.calls[-1].text == "Gemini stopped this reply early (safety)."


async def test_max_tokens(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["long ", "answer"], finish_reason="MAX_TOKENS"))
    t = target()
    r = await engine.handle(msg("q"), t)
    assert r.status == "partial"
    assert t.visible() == ["long answer"]
    assert t.calls[-1].text == "The reply reached the maximum length and was cut off."
    assert (await turns(engine))[-1].finish_reason == "max_tokens"


async def test_too_large(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Fault.too_large())
    t = target()
    await engine.handle(msg("q"), t)
    assert t.calls[-1].text.startswith("That is more than Gemini can take")


async def test_bad_key(store, fake_gemini) -> None:
    from bot.gemini import GeminiChatModel

    model = GeminiChatModel(api_key="wrong", default_model="m", base_url=fake_gemini.base_url)
    engine = ConversationEngine(
        store=store,
        model=model,
        personas=load_personas(ROOT / "personas.toml", default="assistant"),
    )
    t = target()
    await engine.handle(msg("q"), t)
    await model.aclose()
    assert (
        t.calls[-1].text == "The bot's Gemini API key was refused. Please tell the bot's operator."
    )


async def test_usage_and_tokens_are_recorded(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["x" * 40]))
    await engine.handle(msg("y" * 400), target())
    model_turn = (await turns(engine))[-1]
    assert model_turn.usage.prompt_tokens > 100 and model_turn.usage.output_tokens == 10
    day = datetime.now(UTC).date().isoformat()
    u = await engine.store.get_usage("test", "U1", day=day)
    assert u.turns == 1 and u.output_tokens == 10


async def test_shutdown_marks_reply_in_flight_as_partial(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["one ", "two ", "three ", "four"], delay=0.3))
    t = target()
    task = engine.submit(msg("count"), t)
    await until(lambda: "two" in "".join(t.visible()))  # mid-reply
    await engine.shutdown(grace=0.1)
    assert task.cancelled()
    hist = await turns(engine)
    assert hist[-1].status == "partial" and hist[-1].text.startswith("one two")
    assert hist[-1].error == "interrupted"
    assert t.calls[-1].kind == "fail" and t.calls[-1].text == INTERRUPTED
    late = target()
    r = await engine.handle(msg("hello?"), late)
    assert r.status == "rejected" and "restarting" in late.calls[-1].text


async def test_shutdown_lets_quick_replies_finish(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["a", "b"], delay=0.05))
    task = engine.submit(msg("q"), target())
    await until(lambda: bool(fake_gemini.generate_requests()))  # the reply is in flight
    await engine.shutdown(grace=5)
    assert task.result().status == "complete"


async def test_shutdown_waits_for_messages_that_arrive_while_draining(engine, fake_gemini) -> None:
    hold = asyncio.Event()
    told = asyncio.Event()

    class SlowToTell(RecordingTarget):
        async def fail(self, user_message: str) -> None:
            await told.wait()  # a platform slow to take the "ask again" message
            await super().fail(user_message)

    fake_gemini.enqueue(Reply(["a", "b"], hold_after=1, hold=hold))
    first = engine.submit(msg("q"), target())
    await until(lambda: bool(fake_gemini.generate_requests()))
    draining = asyncio.create_task(engine.shutdown(grace=5))
    await until(lambda: not engine.accepting)
    late_target = SlowToTell(SystemClock(), budget=Budget("t", rate=float("inf"), burst=100))
    late = engine.submit(msg("hello?"), late_target)
    hold.set()
    await until(first.done)
    # Drained of what was in flight when it began, but not of the late message yet.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(draining), 0.3)
    told.set()
    await draining
    assert first.result().status == "complete"
    assert late.done() and late.result().status == "rejected"
    assert "restarting" in late_target.calls[-1].text


async def test_file_lost_early_by_provider_is_reuploaded_once(engine, fake_gemini) -> None:
    await engine.handle(msg("read", attachments=(attachment("doc.pdf", PDF),)), target())
    uri1 = fake_gemini.generate_requests()[-1].file_uris()[0]
    del fake_gemini.files[uri1.rsplit("/", 1)[-1]]  # gone, though our record says it is valid
    r = await engine.handle(msg("again"), target())
    assert r.status == "complete"
    uri2 = fake_gemini.generate_requests()[-1].file_uris()[0]
    assert uri2 != uri1
    assert len(fake_gemini.upload_starts()) == 2


async def test_an_empty_answer_after_a_file_note_still_says_so(engine, fake_gemini) -> None:
    fake_gemini.enqueue(Reply([]))
    t = target()
    zip_ = b"PK\x03\x04" + b"0" * 100
    await engine.handle(msg("look", attachments=(attachment("a.zip", zip_),)), t)
    (shown,) = t.visible()
    assert "Skipped a.zip" in shown and "(Gemini returned an empty answer.)" in shown
