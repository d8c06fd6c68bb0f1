"""PgGate on a real PostgreSQL server, with two or three "replicas" (a store and a gate
each) in this process: one turn per thread across replicas, replies in message order
whoever accepted them, and the replies of a replica that died claimed by exactly one other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest

from bot.types import Author, NewTurn, TextPart, ThreadKey, TurnUpdate
from storage import pg_gate
from storage.pg_gate import POLL_S, SERVING, PgGate, app_name
from storage.postgres import PostgresStore
from tests.helpers import until

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
ADA = Author("U1", "Ada")
Replica = tuple[PostgresStore, PgGate]


@pytest.fixture
async def replicas(
    pg_stores: Callable[[], Awaitable[PostgresStore]],
) -> AsyncIterator[Callable[[], Awaitable[Replica]]]:
    """A factory of replicas (a store and a gate each) on one database."""
    async with AsyncExitStack() as stack:

        async def make() -> Replica:
            store = await pg_stores()
            gate = PgGate(store)
            await gate.open()
            stack.push_async_callback(gate.close)
            return store, gate

        yield make


async def accept(store: PostgresStore, text: str, event: str) -> tuple[int, int]:
    got = await store.accept_turn(
        KEY,
        user=NewTurn("user", (TextPart(text),), author=ADA),
        reply=NewTurn("model", (), status="pending"),
        event=("slack", event),
    )
    assert got is not None
    conv, _, model = got
    return conv.id, model.seq


async def test_one_holder_per_thread_across_replicas_and_the_next_wakes_at_once(
    replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long poll, so that waking on the notice stands out from waking on the poll even
    # on a loaded machine (CI runs four workers on two cores).
    poll = 4.0
    monkeypatch.setattr(pg_gate, "POLL_S", poll)
    (_, a), (_, b) = await replicas(), await replicas()
    order: list[str] = []
    released = asyncio.Event()

    async def first() -> None:
        async with a.hold(KEY):
            order.append("a in")
            await released.wait()
            order.append("a out")

    task = asyncio.create_task(first())
    await until(lambda: order == ["a in"])
    # Keep the context manager: were it collected, its generator's finaliser would let
    # the thread go before the checks below.
    b_hold = b.hold(KEY)
    waiting = asyncio.create_task(b_hold.__aenter__())
    # b must still be waiting a while later (a deadline, not a sleep): a holds the thread.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), 0.5)
    loop = asyncio.get_running_loop()
    released.set()
    freed_at = loop.time()
    await task
    await waiting
    assert loop.time() - freed_at < poll / 2  # woken by the notice, not by its poll
    assert order == ["a in", "a out"]
    assert b.busy(KEY) and not a.busy(KEY)
    await b_hold.__aexit__(None, None, None)
    assert not b.busy(KEY)
    other = ThreadKey("slack", "T1", "C1", "other")
    async with a.hold(other):  # another thread is not held up
        pass


async def test_a_release_between_a_failed_try_and_the_wait_is_heard(
    replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    poll = 4.0  # long: a missed notice would cost all of it
    monkeypatch.setattr(pg_gate, "POLL_S", poll)
    (_, a), (_, b) = await replicas(), await replicas()
    released = asyncio.Event()

    async def first() -> None:
        async with a.hold(KEY):
            await released.wait()

    holder = asyncio.create_task(first())
    await until(lambda: a.busy(KEY))
    real_try = b._try

    async def try_then_release(k: int, conversation_id: int | None, seq: int | None) -> bool:
        got = await real_try(k, conversation_id, seq)
        if not got and not released.is_set():  # a lets go right after b's try failed
            released.set()
            await holder
            await until(lambda: k not in b._freed)  # the notice has reached b
        return got

    monkeypatch.setattr(b, "_try", try_then_release)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with b.hold(KEY):
        assert loop.time() - began < poll / 2  # woken by the notice, not by the poll


async def test_two_tasks_of_one_replica_take_turns(replicas) -> None:
    (_, a) = await replicas()
    inside = 0
    most = 0

    async def turn() -> None:
        nonlocal inside, most
        async with a.hold(KEY):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(turn() for _ in range(5)))
    assert most == 1


async def test_a_reply_waits_for_an_earlier_one_accepted_by_another_replica(replicas) -> None:
    (sa, a), (sb, b) = await replicas(), await replicas()
    conv, first_seq = await accept(sa, "one", "Ev1")
    _, second_seq = await accept(sb, "two", "Ev2")
    ran: list[str] = []

    async def second() -> None:
        async with b.hold(KEY, conversation_id=conv, seq=second_seq):
            ran.append("two")

    later = asyncio.create_task(second())
    # The thread is free, but "one" is still pending: "two" waits past two polls.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(later), POLL_S * 2)
    assert ran == []
    async with a.hold(KEY, conversation_id=conv, seq=first_seq):
        ran.append("one")
        first_turn = (await sa.pending_replies())[0].model_turn
        await sa.update_turn(conv, first_turn.id, TurnUpdate(status="complete"))
    await later
    assert ran == ["one", "two"]


async def test_the_replies_of_a_dead_replica_are_claimed_by_exactly_one_other(
    replicas, database: str
) -> None:
    (sa, a), (_, b), (_, c) = await replicas(), await replicas(), await replicas()
    conv, seq = await accept(sa, "hello", "Ev1")
    assert await b.orphans() == [] and await c.orphans() == []  # a is alive
    await a.close()  # its session ends, as when its process is killed
    found_b, found_c = await asyncio.gather(b.orphans(), c.orphans())
    claimed = found_b + found_c
    assert len(claimed) == 1
    reply = claimed[0]
    assert (reply.conversation.id, reply.model_turn.seq, reply.user_turn.text) == (
        conv,
        seq,
        "hello",
    )
    assert await b.orphans() == [] and await c.orphans() == []  # claimed once, for good
    winner = b if found_b else c
    async with winner.hold(KEY, conversation_id=conv, seq=seq):
        pass  # the orphan is the earliest pending reply: its thread lets it in


async def test_a_reply_taken_over_is_no_longer_written_by_its_old_owner(replicas) -> None:
    (sa, a), (sb, b) = await replicas(), await replicas()
    conv, _ = await accept(sa, "hello", "Ev1")
    [mine] = await a.own_pending()
    assert await b.own_pending() == []
    await a.close()  # a is cut off (its lock is free) but its pool still writes
    [taken] = await b.orphans()
    late = await sa.update_turn(conv, taken.model_turn.id, TurnUpdate(status="complete"))
    assert late is None  # fenced: the reply is b's now
    done = await sb.update_turn(conv, taken.model_turn.id, TurnUpdate(status="complete"))
    assert done is not None and done.status == "complete"
    assert mine.model_turn.id == taken.model_turn.id
    assert await sa.update_turn(conv, taken.user_turn.id, TurnUpdate(error="x")) is not None


async def test_a_reply_handed_off_is_claimed_at_once_by_exactly_one_other(replicas) -> None:
    (sa, a), (_, b), (_, c) = await replicas(), await replicas(), await replicas()
    _, seq = await accept(sa, "hello", "Ev1")
    _, other_seq = await accept(sa, "still mine", "Ev2")
    [first] = [p for p in await a.own_pending() if p.model_turn.seq == seq]
    await a.hand_off(first.model_turn.id)  # a is draining, and alive
    assert [p.model_turn.seq for p in await a.own_pending()] == [other_seq]
    found_b, found_c = await asyncio.gather(b.orphans(), c.orphans())
    [taken] = found_b + found_c
    assert (taken.model_turn.seq, taken.handed_off) == (seq, True)
    assert await b.orphans() == [] and await c.orphans() == []  # a's other reply stays a's
    # A reply someone else owns already is not a's to hand off.
    await a.hand_off(first.model_turn.id)
    assert await b.orphans() == [] and await c.orphans() == []


async def test_peers_are_the_other_replicas_that_serve(
    replicas, pg_stores: Callable[[], Awaitable[PostgresStore]]
) -> None:
    (_, a) = await replicas()
    assert not await a.peers()  # alone
    console = PgGate(await pg_stores(), serves=False)
    await console.open()
    try:
        assert not await a.peers()  # a console takes nothing over
        (_, b) = await replicas()
        assert await a.peers() and await b.peers()
        await a.draining()
        assert not await b.peers() and await a.peers()  # b serves; a drains
    finally:
        await console.close()


def test_application_names_keep_what_tells_replicas_apart() -> None:
    host = "a-very-long-kubernetes-pod-name-for-the-gemini-bot-deployment-7d9f8c6b5-abcde"
    one, two = app_name(SERVING, f"{host}:1:aa11bb"), app_name(SERVING, f"{host}:1:cc22dd")
    assert len(one.encode()) == 63 and one.startswith(SERVING + "aa11bb:1:a-very")
    assert one != two  # the random suffix survives PostgreSQL's cut


async def test_a_lost_lock_connection_is_noticed(replicas) -> None:
    (sa, a) = await replicas()
    assert not a.lost.is_set()
    pid = await a._fetchval("SELECT pg_backend_pid()")
    await sa.pool.execute("SELECT pg_terminate_backend($1)", pid)
    await until(a.lost.is_set)
