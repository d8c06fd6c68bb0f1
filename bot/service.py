"""Service: everything `gemini-bot run` runs, owned by one AsyncExitStack."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from bot.compose import (
    NO_PLATFORM,
    StartupError,
    build_adapters,
    build_commands,
    build_engine,
    build_gate,
    build_model,
    build_store,
    fail_over,
    labelled,
    maintain,
    render_metrics,
    replica_name,
)
from bot.engine import Recovery
from bot.engine.drain import announce_draining
from bot.engine.recovery import targets_from
from bot.http import HttpServer
from bot.ports import HealthParts
from bot.settings import Settings
from bot.supervise import Backoff, Supervisor
from bot.types import PendingReply

log = logging.getLogger("gemini-bot")


class Service:
    """Everything `gemini-bot run` runs: store, engine, HTTP server and adapters."""

    def __init__(self, settings: Settings) -> None:
        if not settings.platforms_enabled():
            raise StartupError(NO_PLATFORM)
        self.settings = settings
        self.replica = replica_name()
        self.store = build_store(settings, replica=self.replica)
        self.gate = build_gate(self.store)
        self.model = build_model(settings)
        self.engine = build_engine(settings, store=self.store, model=self.model, gate=self.gate)
        self.commands = build_commands(settings, self.engine)
        self._store_open = False
        self.http = HttpServer(
            host=settings.HTTP_HOST,
            port=settings.HTTP_PORT,
            health=self.health,
            metrics=lambda: labelled(render_metrics(self.engine), self.replica),
        )
        self.adapters = build_adapters(
            settings, engine=self.engine, commands=self.commands, http=self.http
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.backoff = Backoff()  # adapter restarts: 1 s doubling to 60 s
        self.supervisors: list[Supervisor] = []
        self._stack: AsyncExitStack | None = None
        self.recovery = Recovery(self.engine, mode=settings.RECOVERY)
        self._pending: list[PendingReply] = []

    async def health(self) -> dict[str, str]:
        """Per-component status for /healthz; an adapter down or restarting is unhealthy,
        and so is one whose part is down (Discord: "discord:shard:N", each shard it runs)."""
        ok = self._store_open and await self.store.ping()
        out = {"store": "ok" if ok else "unavailable"}
        if self.gate.shared:  # the replica's lock connection: its turns' order and lease
            out["store:locks"] = "unavailable" if self.gate.lost.is_set() else "ok"
        supervised = {id(s.adapter): s.status for s in self.supervisors}
        for a in self.adapters:
            out[a.name] = supervised.get(id(a)) or ("connected" if a.connected else "disconnected")
            if isinstance(a, HealthParts):
                for part, up in a.health_parts().items():
                    out[part] = "connected" if up else "disconnected"
        return out

    async def start(self) -> None:
        """Open every resource in order; if one fails, close the ones opened, in reverse."""
        async with AsyncExitStack() as stack:
            await self._open(stack)
            self._stack = stack.pop_all()

    async def _open(self, stack: AsyncExitStack) -> None:
        # The model and the scheduler exist since __init__: registered first, closed last.
        stack.push_async_callback(self.model.aclose)
        stack.push_async_callback(self.engine.scheduler.aclose)
        await self.store.open()
        self._store_open = True
        stack.push_async_callback(self._close_store)
        await self.gate.open()
        stack.push_async_callback(self.gate.close)
        # Found before the HTTP server and the adapters take any event.
        self._pending = await self.recovery.find()
        await self.http.start()
        stack.push_async_callback(self.http.stop)
        log.info("HTTP server on %s:%s", self.settings.HTTP_HOST, self.http.port)
        self._start_adapters(stack)
        # Closed before the adapters: replies in flight finish (and new messages are told the
        # bot is restarting) while the platform sessions they need are still open.
        stack.push_async_callback(self._drain)
        await self.recover()
        shared = self.engine.scheduler.shared
        maintenance = asyncio.create_task(
            maintain(self.store, shared.limits if shared else None), name="maintenance"
        )
        self._tasks.append(maintenance)
        stack.push_async_callback(_cancel, maintenance)
        if self.gate.shared:
            failover = asyncio.create_task(
                fail_over(self.recovery, targets_from(self.adapters)), name="failover"
            )
            stack.push_async_callback(_cancel, failover)
            # Before this replica stops taking others' replies over (the callbacks run in
            # reverse), it stops counting as one that would answer a hand-off.
            stack.push_async_callback(announce_draining, self.engine)

    def _start_adapters(self, stack: AsyncExitStack) -> None:
        """Each adapter under a Supervisor: a crash restarts it, never stops the others."""
        self.supervisors = [Supervisor(a, backoff=self.backoff) for a in self.adapters]
        self._tasks = [
            asyncio.create_task(s.run(), name=f"adapter:{s.adapter.name}") for s in self.supervisors
        ]
        stack.push_async_callback(self._stop_adapters, list(self._tasks))

    async def recover(self) -> None:
        """Recover replies a crashed process left unfinished (RECOVERY). Runs once the
        store is open and the adapters are constructed and started, before start() returns:
        each recovery holds its thread's lock from now on, and edits once its platform is
        connected."""
        pending, self._pending = self._pending, []
        await self.recovery.start(pending, targets_from(self.adapters))

    async def _stop_adapters(self, tasks: list[asyncio.Task[None]]) -> None:
        for s in self.supervisors:
            await s.stop()
        _, pending = await asyncio.wait(tasks, timeout=5) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self) -> None:
        grace = self.settings.SHUTDOWN_GRACE_SECONDS
        if self.gate.lost.is_set():
            # Other replicas are taking this one's replies over: stop answering at once.
            grace = 0.0
        log.info("shutting down: finishing replies in flight (up to %ss)", grace)
        await self.engine.shutdown(grace=grace)

    async def _close_store(self) -> None:
        self._store_open = False
        await self.store.close()

    async def wait(self, stop: asyncio.Event) -> bool:
        """Until `stop` is set. A failing adapter is restarted by its Supervisor; True
        only if a supervisor or the maintenance task itself died (a bug), or the gate lost
        its database session (other replicas now answer this one's threads)."""
        stopper = asyncio.create_task(stop.wait())
        lost = asyncio.create_task(self.gate.lost.wait(), name="the thread gate's session")
        done, _ = await asyncio.wait(
            [stopper, lost, *self._tasks], return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        lost.cancel()
        failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
        for t in failed:
            log.error("%s stopped: %r", t.get_name(), t.exception())
        if lost in done:
            log.error("stopping: %s was lost", lost.get_name())
        return bool(failed) or lost in done

    async def stop(self) -> None:
        """No new work; replies in flight finish within the grace period; then everything
        start() opened is closed in reverse order (adapters, HTTP, store, scheduler, model)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
