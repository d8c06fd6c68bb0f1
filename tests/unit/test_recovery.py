"""Checkpointed replies, start-up recovery, the failure envelope and forget during a reply.

Pure engine logic on both stores, with an in-process model and a recording target (the
real crash, SIGKILL of the service, is tested end to end in tests/e2e/).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bot.clock import SystemClock
from bot.commands import Commands
from bot.engine import ConversationEngine, Recovery
from bot.engine.core import FAILED
from bot.engine.recovery import MARKED, REGENERATED, SUPERSEDED
from bot.personas import load_personas
from bot.ports import Budget, ModelEvent, ReplyTarget, TextDelta
from bot.types import Author, IncomingMessage, NewTurn, TextPart, ThreadKey, TurnUpdate
from tests.conftest import ROOT
from tests.helpers import InstantModel, RecordingTarget, until

KEY = ThreadKey("test", "W", "C", "t1")
ADA = Author("U1", "Ada")


def engine_for(store, model) -> ConversationEngine:
    return ConversationEngine(
        store=store,
        model=model,
        personas=load_personas(ROOT / "personas.toml", default="assistant"),
    )


def target() -> RecordingTarget:
    return RecordingTarget(SystemClock(), budget=Budget("t", rate=float("inf"), burst=100))


def msg(text: str, key: ThreadKey = KEY, event_id: str | None = None) -> IncomingMessage:
    return IncomingMessage(key=key, author=ADA, text=text, event_id=event_id)


async def left_by_a_crash(store, *, text: str = "half an ans", ids: tuple[str, ...] = ("m0",)):
    """What a killed process leaves: a user turn and a pending, checkpointed reply."""
    got = await store.accept_turn(
        KEY,
        user=NewTurn("user", (TextPart("What is up?"),), author=ADA, token_estimate=3),
        reply=NewTurn("model", (), status="pending"),
        event=("test", "e1"),
    )
    conv, _user, model = got
    parts = (TextPart(text),) if text else ()
    await store.update_turn(conv.id, model.id, TurnUpdate(parts=parts, message_ids=ids))
    return conv, model


async def recover(engine, mode: str, tgt: ReplyTarget | None) -> Recovery:
    recovery = Recovery(engine, mode=mode)  # type: ignore[arg-type]
    pending = await recovery.find()

    async def target_for(key: ThreadKey, ids: tuple[str, ...]) -> ReplyTarget | None:
        return tgt

    tasks = await recovery.start(pending, target_for)
    await asyncio.gather(*tasks)
    return recovery


async def stored_reply(store, conv_id: int):
    history = await store.load_history(conv_id, token_budget=10**9)
    return history.turns[-1]


async def test_resume_answers_again_in_the_frozen_message_once(store) -> None:
    conv, _ = await left_by_a_crash(store)
    model = InstantModel("The full answer.")
    engine = engine_for(store, model)
    tgt = target()
    recovery = await recover(engine, "resume", tgt)
    assert recovery.done["resumed"] == 1
    assert tgt.visible() == [f"{REGENERATED}The full answer."]
    assert not tgt.started  # the frozen message is edited, no new placeholder
    _persona, history, message = model.calls[0]
    assert history == [] and message.parts == ("[Ada] What is up?",)
    reply = await stored_reply(store, conv.id)
    assert (reply.status, reply.text, reply.attempts) == ("complete", "The full answer.", 1)
    assert await store.pending_replies() == []


@pytest.mark.parametrize("mode", ["resume", "mark"])
async def test_a_reply_handed_off_by_a_draining_replica_is_answered_as_new(
    store, mode: str
) -> None:
    got = await store.accept_turn(
        KEY,
        user=NewTurn("user", (TextPart("What is up?"),), author=ADA, token_estimate=3),
        reply=NewTurn("model", (), status="pending"),
        event=("test", "e1"),
    )
    conv = got[0]
    [pending] = await store.pending_replies()
    model = InstantModel("A first answer.")
    engine = engine_for(store, model)
    recovery = Recovery(engine, mode=mode)  # type: ignore[arg-type]
    tgt = target()

    async def target_for(key: ThreadKey, ids: tuple[str, ...]) -> ReplyTarget | None:
        return tgt

    tasks = await recovery.start([replace(pending, handed_off=True)], target_for)
    await asyncio.gather(*tasks)
    assert recovery.done["answered"] == 1
    assert tgt.started and tgt.visible() == ["A first answer."]  # a sign, then no note
    reply = await stored_reply(store, conv.id)
    assert (reply.status, reply.text, reply.attempts) == ("complete", "A first answer.", 1)


async def test_a_reply_already_resumed_once_is_marked_not_answered_again(store) -> None:
    conv, model_turn = await left_by_a_crash(store)
    await store.update_turn(conv.id, model_turn.id, TurnUpdate(attempts=1))
    model = InstantModel("never")
    tgt = target()
    recovery = await recover(engine_for(store, model), "resume", tgt)
    assert recovery.done["marked"] == 1 and model.calls == []
    assert tgt.visible() == [f"half an ans\n\n{MARKED}"]
    reply = await stored_reply(store, conv.id)
    assert reply.status == "partial" and reply.text == "half an ans"


async def test_mark_mode_marks_and_a_reply_without_text_fails(store) -> None:
    conv, _ = await left_by_a_crash(store, text="")
    tgt = target()
    await recover(engine_for(store, InstantModel("never")), "mark", tgt)
    assert tgt.visible() == [MARKED]
    assert (await stored_reply(store, conv.id)).status == "failed"


async def test_no_platform_to_edit_still_closes_the_turn(store) -> None:
    conv, _ = await left_by_a_crash(store)
    await recover(engine_for(store, InstantModel("never")), "resume", None)
    assert (await stored_reply(store, conv.id)).status == "partial"
    assert await store.pending_replies() == []


async def test_old_messages_the_new_answer_does_not_need_are_superseded(store) -> None:
    await left_by_a_crash(store, ids=("m0", "m1", "m2"))
    tgt = target()
    await recover(engine_for(store, InstantModel("short")), "resume", tgt)
    assert tgt.visible() == [f"{REGENERATED}short", SUPERSEDED, SUPERSEDED]


async def test_recovery_holds_the_thread_until_it_answered(store) -> None:
    await left_by_a_crash(store)
    model = InstantModel("again", chunks=5, delay=0.02)
    engine = engine_for(store, model)
    recovery = Recovery(engine, mode="resume")
    pending = await recovery.find()
    gate = asyncio.Event()

    async def target_for(key: ThreadKey, ids: tuple[str, ...]) -> ReplyTarget | None:
        await gate.wait()  # the platform is still connecting
        return target()

    tasks = await recovery.start(pending, target_for)
    newer = engine.submit(msg("And now?", event_id="e2"), target())
    await until(lambda: engine.locks._locks[KEY][1] == 2)  # the new message queues behind
    assert model.calls == []
    gate.set()
    await asyncio.gather(*tasks, newer)
    _p, history, message = model.calls[1]
    assert [c.parts[0] for c in history] == ["[Ada] What is up?", "again"]
    assert message.parts == ("[Ada] And now?",)


class _SlowModel(InstantModel):
    def __init__(self) -> None:
        super().__init__("x" * 20, chunks=20, delay=0.02)


async def test_a_reply_in_flight_is_pending_with_its_message_ids_and_text(store) -> None:
    engine = engine_for(store, _SlowModel())
    task = engine.submit(msg("go"), target())
    conv = None

    async def checkpointed() -> bool:
        nonlocal conv
        conv = await store.get_conversation(KEY)
        if conv is None:
            return False
        pending = await store.pending_replies()
        return bool(pending) and pending[0].model_turn.message_ids == ("m0",)

    await until(checkpointed, limit=5)
    await task
    assert (await stored_reply(store, conv.id)).status == "complete"


class _Broken:
    """A store whose history read fails, as 'database is locked' would."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def load_history(self, conversation_id: int, *, token_budget: int):
        raise RuntimeError("database is locked")


async def test_a_storage_error_mid_turn_becomes_a_note_a_log_and_a_counter(
    store, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(_Broken(store), InstantModel())
    tgt = target()
    with caplog.at_level(logging.ERROR):
        result = await engine.handle(msg("hi"), tgt)
    assert result.status == "failed"
    assert [c.text for c in tgt.calls if c.kind == "fail"] == [FAILED]
    assert engine.counters["turns_failed"] == 1
    assert any("database is locked" in (r.exc_text or "") for r in caplog.records)
    conv = await store.get_conversation(KEY)
    assert (await stored_reply(store, conv.id)).status == "failed"  # not left pending


async def test_a_storage_error_before_the_turn_is_stored_is_a_note_too(store) -> None:
    class NoAccept(_Broken):
        async def accept_turn(self, *a, **kw):
            raise RuntimeError("disk I/O error")

    engine = engine_for(NoAccept(store), InstantModel())
    tgt = target()
    assert (await engine.handle(msg("hi", event_id="e9"), tgt)).status == "failed"
    assert [c.kind for c in tgt.calls] == ["fail"]
    assert await engine.claim("test", "e9")  # the claim was released: a retry may come


async def test_claims_let_one_preparation_through(store) -> None:
    engine = engine_for(store, InstantModel())
    assert await engine.claim("test", "e1")
    assert not await engine.claim("test", "e1")
    await engine.handle(msg("hi", event_id="e1"), target())
    assert not await engine.claim("test", "e1")  # stored now


async def test_duplicate_event_is_answered_once(store) -> None:
    engine = engine_for(store, InstantModel())
    a, b = await asyncio.gather(
        engine.handle(msg("hi", event_id="e1"), target()),
        engine.handle(msg("hi", event_id="e1"), target()),
    )
    assert sorted([a.status, b.status]) == ["complete", "duplicate"]


async def test_forget_during_a_reply_waits_and_the_reply_never_lands_in_the_new_thread(
    store,
) -> None:
    model = InstantModel("slow answer", chunks=10, delay=0.03)
    engine = engine_for(store, model)
    commands = Commands(store=store, personas=engine.personas, locks=engine.locks)
    task = engine.submit(msg("first"), target())
    await until(lambda: model.active == 1)
    old = await store.get_conversation(KEY)
    note = await commands.forget(KEY)
    assert model.active == 0 and note.startswith("Forgotten.")  # forget waited for the reply
    assert (await task).status == "complete"
    new = await store.get_conversation(KEY)
    assert new.id != old.id and await store.count_turns(new.id) == 0


async def test_a_partial_reply_goes_back_to_the_model_marked(store) -> None:
    class CutModel(InstantModel):
        async def stream(self, **kw) -> AsyncIterator[ModelEvent]:
            self.calls.append((kw["persona"], kw["history"], kw["message"]))
            if len(self.calls) == 1:
                yield TextDelta("The answer is")
                from bot.errors import ModelUnavailable

                raise ModelUnavailable("gone")
            async for e in super().stream(**kw):
                yield e

    model = CutModel("fine")
    engine = engine_for(store, model)
    assert (await engine.handle(msg("one"), target())).status == "partial"
    await engine.handle(msg("two"), target())
    _p, history, _m = model.calls[1]
    assert history[1].role == "model" and history[1].parts[-1] == "\n\n[reply cut short]"


class _GivesUp(RecordingTarget):
    async def show(self, text: str, *, part: int) -> None:
        raise RuntimeError("platform down")

    async def finish(self, text: str, *, part: int) -> None:
        raise RuntimeError("platform down")


async def test_a_reply_whose_delivery_gave_up_is_not_stored_complete(store) -> None:
    engine = engine_for(store, InstantModel("text"))
    engine.scheduler.retry_delay = 0.0  # type: ignore[attr-defined]
    tgt = _GivesUp(SystemClock(), budget=Budget("t", rate=float("inf"), burst=100))
    result = await engine.handle(msg("hi"), tgt)
    conv = await store.get_conversation(KEY)
    stored = await stored_reply(store, conv.id)
    assert result.status == "partial" and stored.status == "partial"
    assert stored.error.startswith("delivery failed")


async def test_unexpected_task_failures_are_logged_and_counted(
    store, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(store, InstantModel())

    async def boom() -> None:
        raise ValueError("bug")

    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(boom())
        engine.track(task)
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert engine.counters["turn_crashes"] == 1
    assert any("failed" in r.getMessage() for r in caplog.records)


async def test_a_gate_that_fails_closes_the_reply_and_tells_the_user(store) -> None:
    """With replicas the thread's hold asks the database; when that fails the reply must
    not stay pending (it would hold the thread up): it fails like any turn."""
    engine = engine_for(store, InstantModel())

    class BrokenGate(type(engine.locks)):  # type: ignore[misc]
        def hold(self, key, *, conversation_id=None, seq=None):
            raise ConnectionResetError("database went away")

    engine.locks = BrokenGate(store)
    tgt = target()
    result = await engine.handle(msg("hi"), tgt)
    assert result.status == "failed"
    assert [c.text for c in tgt.calls if c.kind == "fail"] == [FAILED]
    conv = await store.get_conversation(KEY)
    assert (await stored_reply(store, conv.id)).status == "failed"
    assert engine.working == set()


async def test_a_stranded_reply_is_recovered_after_two_looks(store) -> None:
    """A pending reply of this process that no task answers (a failure left it) is taken
    up, but only when seen so twice, never at the moment its task is about to start."""
    engine = engine_for(store, InstantModel())
    _conv, model = await left_by_a_crash(store)
    recovery = Recovery(engine)
    engine.working.add(model.id)  # a task is on it: not stranded
    assert await recovery.stranded(set()) == ([], set())
    engine.working.clear()
    first, seen = await recovery.stranded(set())
    assert first == [] and seen == {model.id}
    second, seen = await recovery.stranded(seen)
    assert [p.model_turn.id for p in second] == [model.id] and seen == set()
