"""PgGate: the thread gate of replicas sharing one PostgreSQL database.

- **One turn per thread at a time, across replicas**: a session-level advisory lock per
  thread, taken with pg_try_advisory_lock on this replica's lock connection (one connection
  holds every lock of the process, so a turn does not pin a pooled connection while it
  streams). In-process ThreadLocks come first, since a session's advisory locks are
  re-entrant: two tasks of one process would both get the same lock.
- **In message order**: holding the lock is not enough; a reply also waits until no earlier
  reply of its conversation is pending (accepted by another replica a moment before, or
  left by one that died). Releasing a lock notifies the waiters (LISTEN/NOTIFY); they also
  look again every POLL_S, as a lock freed by a dead session notifies nobody.
- **Failover**: each replica holds an advisory lock named after itself for as long as its
  lock connection lives, and writes its name as the owner of the replies it accepts. A
  replica whose lock can be taken is dead (PostgreSQL frees a session's locks when its
  process dies or its connection drops): its pending replies are claimed, each by exactly
  one replica (an UPDATE of the owner), and recovered as at start-up. The "lease" is the
  dead replica's session, so no clock is compared and nothing expires early.
- **Hand-off**: a draining replica (SIGTERM) still stores the messages it receives, and
  leaves their replies to the others under an owner no replica is (HANDED_OFF + its name):
  the next look for orphans claims them at once, and recovery answers them afresh. Only
  while another replica serves: lock connections say which in their application_name.
- **Losing the lock connection** frees this replica's locks and makes it look dead to the
  others, which will take its replies over: `lost` is set, and the service stops (to be
  restarted by its supervisor) rather than answer twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg

from bot.engine.locks import ThreadLocks
from bot.types import PendingReply, ThreadKey
from storage.postgres import PostgresStore

log = logging.getLogger(__name__)

CHANNEL = "gemini_bot_threads"
POLL_S = 0.25
# The lock connection is checked this often; a check or lock statement that takes longer
# than STATEMENT_S means the connection is lost (its locks may already be free).
HEARTBEAT_S = 5.0
STATEMENT_S = 10.0
# The owner prefix of replies a draining replica left to the others (see hand_off).
HANDED_OFF = "handed-off:"
# The lock connection's application_name (pg_stat_activity), then the replica's name: a
# replica that serves, and so takes over what others leave; one draining; a console (it
# takes nothing over). PostgreSQL keeps 63 bytes of it.
SERVING = "gemini-bot replica "
DRAINING = "gemini-bot draining "
CONSOLE = "gemini-bot console "


def app_name(role: str, replica: str) -> str:
    """A lock connection's application_name, cut as PostgreSQL cuts it: the replica's name
    backwards (suffix:pid:host), so that a long host name is what gets cut."""
    name = role + ":".join(reversed(replica.split(":")))
    return name.encode()[:63].decode(errors="ignore")


# A turn waiting this long for its thread is logged (once): something holds it up.
SLOW_WAIT_S = 60.0
# Dead connections are noticed by the server within about this long even without a FIN
# (a replica's host lost): TCP keepalives on the lock connection.
_KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name` (a collision only serialises two
    threads, never mixes them)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def thread_lock(key: ThreadKey) -> int:
    """The advisory lock key of a thread."""
    return lock_key(
        f"thread\0{key.platform}\0{key.workspace_id}\0{key.channel_id}\0{key.thread_id}"
    )


def replica_lock(replica: str) -> int:
    """The advisory lock key a live replica holds."""
    return lock_key(f"replica\0{replica}")


class PgGate:
    """Thread locks, reply order and failover over PostgreSQL advisory locks."""

    shared = True

    def __init__(self, store: PostgresStore, *, serves: bool = True) -> None:
        self.store = store
        self._app = app_name(SERVING if serves else CONSOLE, store.replica)
        self.replica = store.replica
        self.lost = asyncio.Event()
        self._local = ThreadLocks()
        self._conn: asyncpg.Connection | None = None
        self._use = asyncio.Lock()  # one statement at a time on the lock connection
        self._freed: dict[int, asyncio.Event] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._unlocking: set[asyncio.Future[None]] = set()

    async def open(self) -> None:
        """Connect the lock connection, hold this replica's lock, listen for freed threads."""
        conn = await asyncpg.connect(
            self.store.url, server_settings={**_KEEPALIVE, "application_name": self._app}
        )
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", replica_lock(self.replica))
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._heartbeat = asyncio.create_task(self._beat(), name="lock connection heartbeat")

    async def close(self) -> None:
        """Close the lock connection (which frees every lock this replica held)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._terminated)
            await conn.close()

    def _terminated(self, conn: Any) -> None:
        if self._conn is conn:
            self._lose("it closed")

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.critical("lost the database lock connection (%s): other replicas take over", why)
            self.lost.set()

    async def _beat(self) -> None:
        """A half-open connection (a network cut) closes nothing: ask it something."""
        while not self.lost.is_set():
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._fetchval("SELECT 1")
            except Exception as exc:
                self._lose(repr(exc))

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        freed = self._freed.pop(int(str(payload)), None)
        if freed is not None:
            freed.set()

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("gate is not open")
        async with self._use:
            try:
                return await self._conn.fetchval(sql, *args, timeout=STATEMENT_S)
            except TimeoutError:
                self._lose(f"no answer in {STATEMENT_S:.0f} s")
                raise

    # -- holding a thread ----------------------------------------------------

    def busy(self, key: ThreadKey) -> bool:
        """True while this replica holds or waits for the thread."""
        return self._local.busy(key)

    @contextlib.asynccontextmanager
    async def hold(
        self, key: ThreadKey, *, conversation_id: int | None = None, seq: int | None = None
    ) -> AsyncIterator[None]:
        """Hold the thread in every replica; with `seq`, once no earlier reply is pending."""
        k = thread_lock(key)
        slow_at = asyncio.get_running_loop().time() + SLOW_WAIT_S
        while True:
            local = self._local.hold(key)
            await local.__aenter__()
            # Listen before trying: a release between a failed try and the wait would
            # otherwise go unheard, and the turn would wait a whole poll.
            freed = self._freed.setdefault(k, asyncio.Event())
            try:
                ready = await self._try(k, conversation_id, seq)
            except BaseException:
                await local.__aexit__(None, None, None)
                raise
            if ready:
                break
            await local.__aexit__(None, None, None)
            await self._until_freed(freed)
            if asyncio.get_running_loop().time() > slow_at:
                slow_at = float("inf")
                log.warning("a turn on %s has waited %.0f s for its thread", key, SLOW_WAIT_S)
        try:
            yield
        finally:
            try:
                await self._release(k)
            finally:
                await local.__aexit__(None, None, None)

    async def _try(self, k: int, conversation_id: int | None, seq: int | None) -> bool:
        """Take the thread's lock without waiting; keep it only if no earlier reply is
        pending (that one goes first, whoever accepted it)."""
        try:
            got = await self._fetchval("SELECT pg_try_advisory_lock($1)", k)
        except BaseException:
            # Cancelled or failed after the server may have granted it: let go, or the
            # lock would stay on the session and hold the thread up for good.
            task = asyncio.ensure_future(self._unlock_quietly(k))
            self._unlocking.add(task)
            task.add_done_callback(self._unlocking.discard)
            raise
        if not got:
            return False
        if conversation_id is None or seq is None:
            return True
        try:
            earlier = await self.store.pool.fetchval(
                "SELECT 1 FROM turns WHERE conversation_id=$1 AND role='model' "
                "AND status='pending' AND seq < $2 LIMIT 1",
                conversation_id,
                seq,
            )
        except BaseException:
            await self._release(k)
            raise
        if earlier:
            await self._fetchval("SELECT pg_advisory_unlock($1)", k)
            return False
        return True

    async def _unlock_quietly(self, k: int) -> None:
        with contextlib.suppress(Exception):
            await self._fetchval("SELECT pg_advisory_unlock($1)", k)

    async def _release(self, k: int) -> None:
        """Unlock and tell every replica waiting for this thread."""
        if self._conn is None or self._conn.is_closed():
            return  # closed: the server freed it already
        await self._fetchval("SELECT pg_advisory_unlock($1), pg_notify($2, $1::text)", k, CHANNEL)

    async def _until_freed(self, freed: asyncio.Event) -> None:
        # Waking on the notice; POLL_S bounds the wait when none comes (a dead holder).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(freed.wait(), POLL_S)

    # -- failover --------------------------------------------------------------

    async def _alive(self, replica: str | None) -> bool:
        """True while `replica` holds its lock (its lock connection lives)."""
        if replica is None:
            return False  # written before replicas had names: its process is long gone
        if replica.startswith(HANDED_OFF):
            return False  # left to whoever looks first
        if replica == self.replica:
            return True
        k = replica_lock(replica)
        if not await self._fetchval("SELECT pg_try_advisory_lock($1)", k):
            return True
        await self._fetchval("SELECT pg_advisory_unlock($1)", k)
        return False

    async def orphans(self) -> list[PendingReply]:
        """Claim the pending replies of replicas that died (and of none); return them."""
        owners = await self.store.pool.fetch(
            "SELECT DISTINCT owner FROM turns WHERE status='pending' AND role='model'"
        )
        claimed: list[int] = []
        handed: set[int] = set()
        for row in owners:
            owner = row["owner"]
            if await self._alive(owner):
                continue
            # One UPDATE per dead owner: whichever replica runs it first gets the replies.
            rows = await self.store.pool.fetch(
                "UPDATE turns SET owner=$1 WHERE status='pending' AND role='model' "
                "AND owner IS NOT DISTINCT FROM $2 RETURNING id",
                self.replica,
                owner,
            )
            claimed.extend(int(r["id"]) for r in rows)
            if not rows:
                continue
            if owner is not None and owner.startswith(HANDED_OFF):
                handed.update(int(r["id"]) for r in rows)
                log.info("answering %d repl(ies) a draining %s left", len(rows), owner)
            else:
                log.warning("taking over %d unfinished repl(ies) of %s", len(rows), owner)
        if not claimed:
            return []
        found = await self.store.pending_replies_of(claimed)
        return [replace(p, handed_off=p.model_turn.id in handed) for p in found]

    async def own_pending(self) -> list[PendingReply]:
        """Pending replies this replica owns."""
        rows = await self.store.pool.fetch(
            "SELECT id FROM turns WHERE status='pending' AND role='model' AND owner=$1",
            self.replica,
        )
        if not rows:
            return []
        return await self.store.pending_replies_of([int(r["id"]) for r in rows])

    async def hand_off(self, turn_id: int) -> None:
        """Leave this replica's pending reply to the others (it is draining)."""
        await self.store.pool.execute(
            "UPDATE turns SET owner=$1 WHERE id=$2 AND owner=$3 AND status='pending'",
            HANDED_OFF + self.replica,
            turn_id,
            self.replica,
        )

    async def draining(self) -> None:
        """Tell the others this replica no longer serves (it takes nothing over now)."""
        self._app = app_name(DRAINING, self.replica)
        await self._fetchval("SELECT set_config('application_name', $1, false)", self._app)

    async def peers(self) -> bool:
        """True while another replica serves the database (it would answer a hand-off)."""
        # By name, not backend pid: behind a session-mode pooler the pid seen may not
        # be the server's.
        found = await self.store.pool.fetchval(
            "SELECT 1 FROM pg_stat_activity WHERE starts_with(application_name, $1) "
            "AND application_name <> $2 AND datname = current_database() LIMIT 1",
            SERVING,
            app_name(SERVING, self.replica),
        )
        return bool(found)
