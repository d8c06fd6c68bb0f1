"""CLI: `gemini-bot run | console | migrate | personas`. The only place concrete classes meet."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bot.access import AccessPolicy
from bot.commands import Commands
from bot.engine import ConversationEngine, Recovery
from bot.engine.recovery import targets_from
from bot.gemini import GeminiChatModel
from bot.http import HttpServer
from bot.logs import setup_logging
from bot.model_check import missing_models
from bot.personas import PersonaFileError, PersonaRegistry, load_personas
from bot.ports import Adapter, Store
from bot.settings import Settings, SettingsError, load_settings
from bot.streaming import EditScheduler
from bot.supervise import Backoff, Supervisor
from bot.types import PendingReply

log = logging.getLogger("gemini-bot")

# Slack retries within minutes and redelivers after outages within hours; three days of
# event ids is ample for de-duplication and keeps the table small.
EVENT_ID_RETENTION = timedelta(days=3)
MAINTENANCE_INTERVAL_S = 3600.0

NO_PLATFORM = (
    "no chat platform is enabled. Set SLACK_BOT_TOKEN (plus SLACK_APP_TOKEN for Socket Mode, "
    "or SLACK_SIGNING_SECRET for HTTP mode) to enable Slack, and/or DISCORD_TOKEN to enable "
    "Discord. To try the bot without either, run: gemini-bot console"
)


class StartupError(Exception):
    """A problem that stops start-up; printed as one line per problem."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(lines))


def build_store(settings: Settings) -> Store:
    """SqliteStore on DATABASE_URL (default under DATA_DIR), or MemoryStore for `memory:`."""
    path = settings.database_path
    if path is None:
        from storage.memory import MemoryStore

        return MemoryStore(max_blob_bytes=settings.ATTACHMENT_MAX_BYTES)
    from storage.sqlite import SqliteStore

    return SqliteStore(
        path, blob_dir=settings.blob_dir, max_blob_bytes=settings.ATTACHMENT_MAX_BYTES
    )


def build_model(settings: Settings) -> GeminiChatModel:
    """The Gemini client from settings (GEMINI_API_KEY must be set)."""
    settings.require_gemini()
    assert settings.GEMINI_API_KEY is not None
    return GeminiChatModel(
        api_key=settings.GEMINI_API_KEY.get_secret_value(),
        default_model=settings.GEMINI_MODEL,
        base_url=settings.GEMINI_BASE_URL,
        api_version=settings.GEMINI_API_VERSION,
        max_retries=settings.GEMINI_MAX_RETRIES,
        timeout_seconds=settings.GEMINI_TIMEOUT_SECONDS,
    )


def build_personas(settings: Settings) -> PersonaRegistry:
    """Personas from PERSONAS_FILE, ./personas.toml or the shipped file."""
    return load_personas(settings.PERSONAS_FILE, default=settings.DEFAULT_PERSONA)


def build_engine(settings: Settings, *, store: Store, model: GeminiChatModel) -> ConversationEngine:
    """The engine with settings applied."""
    return ConversationEngine(
        store=store,
        model=model,
        personas=build_personas(settings),
        scheduler=EditScheduler(),
        history_token_budget=settings.HISTORY_TOKEN_BUDGET,
        inline_max_bytes=settings.INLINE_MAX_BYTES,
        max_attachment_bytes=settings.ATTACHMENT_MAX_BYTES,
    )


def render_metrics(engine: ConversationEngine) -> str:
    """Prometheus text exposition of the engine's counters."""
    lines = [
        "# HELP gemini_bot_turns_total Turns handled, by outcome.",
        "# TYPE gemini_bot_turns_total counter",
    ]
    for status in ("complete", "partial", "failed"):
        lines.append(
            f'gemini_bot_turns_total{{status="{status}"}} {engine.counters[f"turns_{status}"]}'
        )
    lines += [
        "# HELP gemini_bot_turns_in_flight Turns being handled now.",
        "# TYPE gemini_bot_turns_in_flight gauge",
        f"gemini_bot_turns_in_flight {engine.in_flight}",
        "# HELP gemini_bot_files_uploaded_total Files uploaded to the Gemini Files API.",
        "# TYPE gemini_bot_files_uploaded_total counter",
        f"gemini_bot_files_uploaded_total {engine.counters['files_uploaded']}",
        "# HELP gemini_bot_turn_crashes_total Turn tasks that ended in an unexpected exception.",
        "# TYPE gemini_bot_turn_crashes_total counter",
        f"gemini_bot_turn_crashes_total {engine.counters['turn_crashes']}",
        "# HELP gemini_bot_recovered_total Replies left by a crash, by what start-up did.",
        "# TYPE gemini_bot_recovered_total counter",
        *(
            f'gemini_bot_recovered_total{{outcome="{o}"}} {engine.counters[f"recovered_{o}"]}'
            for o in ("resumed", "marked", "failed")
        ),
        "# HELP gemini_bot_platform_429_total Platform 429 answers received.",
        "# TYPE gemini_bot_platform_429_total counter",
        f"gemini_bot_platform_429_total {engine.scheduler.rate_limited}",
    ]
    return "\n".join(lines) + "\n"


def build_adapters(
    settings: Settings,
    *,
    engine: ConversationEngine,
    commands: Commands,
    http: HttpServer,
) -> list[Adapter]:
    """One adapter per platform whose token is set."""
    adapters: list[Adapter] = []
    access = AccessPolicy.from_settings(settings)
    if settings.SLACK_BOT_TOKEN:
        if not settings.SLACK_APP_TOKEN and not settings.SLACK_SIGNING_SECRET:
            raise StartupError(
                "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
                "SLACK_SIGNING_SECRET (HTTP mode at /slack/events) is"
            )
        from adapters.slack import SlackAdapter

        slack = SlackAdapter(
            engine=engine,
            commands=commands,
            access=access,
            bot_token=settings.SLACK_BOT_TOKEN.get_secret_value(),
            signing_secret=_secret(settings.SLACK_SIGNING_SECRET),
            app_token=_secret(settings.SLACK_APP_TOKEN),
            api_url=settings.SLACK_API_URL,
            native_streaming=settings.SLACK_STREAM_MODE == "native",
            require_mention=settings.SLACK_REQUIRE_MENTION,
            max_file_bytes=settings.ATTACHMENT_MAX_BYTES,
        )
        if not settings.SLACK_APP_TOKEN:
            slack.mount(http.app)
        adapters.append(slack)
    if settings.DISCORD_TOKEN:
        from adapters.discord import DiscordAdapter

        adapters.append(
            DiscordAdapter(
                engine=engine,
                commands=commands,
                access=access,
                token=settings.DISCORD_TOKEN.get_secret_value(),
                api_url=settings.DISCORD_API_URL,
                gateway_url=settings.DISCORD_GATEWAY_URL,
                sync_guild=settings.DISCORD_SYNC_GUILD,
                global_per_second=settings.DISCORD_GLOBAL_RATE,
                max_file_bytes=settings.ATTACHMENT_MAX_BYTES,
            )
        )
    return adapters


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def maintain(store: Store) -> None:
    """Hourly housekeeping: prune old processed event ids."""
    while True:
        try:
            pruned = await store.prune_events(older_than=datetime.now(UTC) - EVENT_ID_RETENTION)
            if pruned:
                log.info("pruned %d old event ids", pruned)
        except Exception:
            log.exception("maintenance failed")
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)


class Service:
    """Everything `gemini-bot run` runs: store, engine, HTTP server and adapters."""

    def __init__(self, settings: Settings) -> None:
        if not settings.platforms_enabled():
            raise StartupError(NO_PLATFORM)
        self.settings = settings
        self.store = build_store(settings)
        self.model = build_model(settings)
        self.engine = build_engine(settings, store=self.store, model=self.model)
        self.commands = Commands(
            store=self.store, personas=self.engine.personas, locks=self.engine.locks
        )
        self._store_open = False
        self.http = HttpServer(
            host=settings.HTTP_HOST,
            port=settings.HTTP_PORT,
            health=self.health,
            metrics=lambda: render_metrics(self.engine),
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
        """Per-component status for /healthz; an adapter down or restarting is unhealthy."""
        ok = self._store_open and await self.store.ping()
        out = {"store": "ok" if ok else "unavailable"}
        supervised = {id(s.adapter): s.status for s in self.supervisors}
        for a in self.adapters:
            out[a.name] = supervised.get(id(a)) or ("connected" if a.connected else "disconnected")
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
        maintenance = asyncio.create_task(maintain(self.store), name="maintenance")
        self._tasks.append(maintenance)
        stack.push_async_callback(_cancel, maintenance)

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
        log.info("shutting down: finishing replies in flight (up to %ss)", grace)
        await self.engine.shutdown(grace=grace)

    async def _close_store(self) -> None:
        self._store_open = False
        await self.store.close()

    async def wait(self, stop: asyncio.Event) -> bool:
        """Until `stop` is set. A failing adapter is restarted by its Supervisor; True
        only if a supervisor or the maintenance task itself died (a bug)."""
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
        for t in failed:
            log.error("%s stopped: %r", t.get_name(), t.exception())
        return bool(failed)

    async def stop(self) -> None:
        """No new work; replies in flight finish within the grace period; then everything
        start() opened is closed in reverse order (adapters, HTTP, store, scheduler, model)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def check_models(settings: Settings, personas: PersonaRegistry) -> None:
    """Stop start-up if Gemini does not know a configured model (see bot/model_check.py)."""
    model = build_model(settings)  # its own client, closed here whatever happens
    try:
        problems = await missing_models(
            model,
            default_model=settings.GEMINI_MODEL,
            personas=personas.all(),
            source=str(personas.source),
        )
    finally:
        await model.aclose()
    if problems:
        raise StartupError(*problems)


async def serve(settings: Settings) -> int:
    """`gemini-bot run`: the service until SIGTERM/SIGINT."""
    # Checked before the service builds its own client, so a bad model leaks nothing.
    await check_models(settings, build_personas(settings))
    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        failed = await service.wait(stop)
    finally:
        await service.stop()
    return 1 if failed else 0


async def console(settings: Settings, args: argparse.Namespace) -> int:
    """`gemini-bot console`: the engine in the terminal."""
    from adapters.console import ConsoleAdapter

    personas = build_personas(settings)
    if args.persona and not personas.has(args.persona):
        raise StartupError(
            f"--persona: unknown persona '{args.persona}' (defined: {', '.join(personas.names)})"
        )
    await check_models(settings, personas)
    store = build_store(settings)
    model = build_model(settings)
    engine = build_engine(settings, store=store, model=model)
    await store.open()
    try:
        adapter = ConsoleAdapter(
            engine=engine,
            commands=Commands(store=store, personas=engine.personas, locks=engine.locks),
            thread=args.thread,
            persona=args.persona,
        )
        await adapter.run()
    finally:
        await engine.scheduler.aclose()
        await model.aclose()
        await store.close()
    return 0


async def migrate(settings: Settings) -> int:
    """`gemini-bot migrate`: open the store, applying pending migrations."""
    from storage.sqlite import SqliteStore

    store = build_store(settings)
    await store.open()
    try:
        names = await store.applied_migrations() if isinstance(store, SqliteStore) else []
    finally:
        await store.close()
    print(f"database {settings.database_path}: up to date ({', '.join(names) or 'in memory'})")
    return 0


def list_personas(settings: Settings) -> int:
    """`gemini-bot personas`: validate and list the personas."""
    registry = build_personas(settings)
    print(f"{len(registry.names)} personas from {registry.source}:")
    for p in registry.all():
        default = " (default)" if p.name == registry.default else ""
        model = p.model or settings.GEMINI_MODEL
        print(f"  {p.name}{default}: {p.description} [model {model}]")
    return 0


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="gemini-bot", description="Gemini in Slack and Discord threads."
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start every adapter whose token is set, plus the HTTP server")
    c = sub.add_parser("console", help="chat in the terminal through the same engine and store")
    c.add_argument("--thread", help="thread name to start or resume")
    c.add_argument("--persona", help="persona for this thread")
    sub.add_parser("migrate", help="create or upgrade the database")
    sub.add_parser("personas", help="validate and list the personas")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gemini-bot` console script."""
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        for line in exc.problems:
            print(f"gemini-bot: {line}", file=sys.stderr)
        return 2
    secrets = [
        s.get_secret_value()
        for s in (
            settings.GEMINI_API_KEY,
            settings.SLACK_BOT_TOKEN,
            settings.SLACK_APP_TOKEN,
            settings.SLACK_SIGNING_SECRET,
            settings.DISCORD_TOKEN,
        )
        if s is not None
    ]
    setup_logging(settings.LOG_LEVEL, secrets)
    try:
        if args.command == "run":
            return asyncio.run(serve(settings))
        if args.command == "console":
            return asyncio.run(console(settings, args))
        if args.command == "migrate":
            return asyncio.run(migrate(settings))
        return list_personas(settings)
    except (SettingsError, StartupError) as exc:
        lines = exc.problems if isinstance(exc, SettingsError) else exc.lines
        for line in lines:
            print(f"gemini-bot: {line}", file=sys.stderr)
        return 2
    except PersonaFileError as exc:
        print(f"gemini-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
