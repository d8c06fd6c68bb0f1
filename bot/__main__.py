"""CLI: `gemini-bot run | console | migrate | personas`. The only place concrete classes meet."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.commands import Commands
from bot.engine import ConversationEngine
from bot.gemini import GeminiChatModel
from bot.http import HttpServer
from bot.logs import setup_logging
from bot.personas import PersonaFileError, PersonaRegistry, load_personas
from bot.ports import Adapter, Store
from bot.settings import Settings, SettingsError, load_settings
from bot.streaming import EditScheduler

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
        "# HELP gemini_bot_platform_429_total Platform 429 answers received.",
        "# TYPE gemini_bot_platform_429_total counter",
        f"gemini_bot_platform_429_total {engine.scheduler.rate_limited}",
    ]
    return "\n".join(lines) + "\n"


def build_adapters(
    settings: Settings, *, engine: ConversationEngine, commands: Commands, http: HttpServer
) -> list[Adapter]:
    """One adapter per platform whose token is set."""
    adapters: list[Adapter] = []
    missing = settings.platforms_enabled()
    if missing:
        raise StartupError(
            *(
                f"{p.upper()}: the {p.capitalize()} adapter is not in this build yet; "
                f"unset its token or use 'gemini-bot console'"
                for p in missing
            )
        )
    return adapters


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


async def serve(settings: Settings) -> int:
    """`gemini-bot run`: HTTP server plus every enabled adapter until SIGTERM/SIGINT."""
    if not settings.platforms_enabled():
        raise StartupError(NO_PLATFORM)
    store = build_store(settings)
    model = build_model(settings)
    engine = build_engine(settings, store=store, model=model)
    commands = Commands(store=store, personas=engine.personas)
    adapters: list[Adapter] = []
    store_open = False

    async def health() -> dict[str, str]:
        out = {"store": "ok" if store_open and await store.ping() else "unavailable"}
        for a in adapters:
            out[a.name] = "connected" if a.connected else "disconnected"
        return out

    http = HttpServer(
        host=settings.HTTP_HOST,
        port=settings.HTTP_PORT,
        health=health,
        metrics=lambda: render_metrics(engine),
    )
    adapters = build_adapters(settings, engine=engine, commands=commands, http=http)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await http.start()
    log.info("HTTP server on %s:%s", settings.HTTP_HOST, http.port)
    await store.open()
    store_open = True
    tasks = [asyncio.create_task(a.run(), name=f"adapter:{a.name}") for a in adapters]
    housekeeping = asyncio.create_task(maintain(store), name="maintenance")
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopper and t.exception() is not None]
        for t in failed:
            log.error("adapter %s stopped: %r", t.get_name(), t.exception())
    finally:
        log.info(
            "shutting down: finishing replies in flight (up to %ss)",
            settings.SHUTDOWN_GRACE_SECONDS,
        )
        for a in adapters:
            with contextlib.suppress(Exception):
                await a.aclose()
        await engine.shutdown(grace=settings.SHUTDOWN_GRACE_SECONDS)
        for t in [*tasks, stopper, housekeeping]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, housekeeping, return_exceptions=True)
        await engine.scheduler.aclose()
        await http.stop()
        await model.aclose()
        await store.close()
    return 1 if failed else 0


async def console(settings: Settings, args: argparse.Namespace) -> int:
    """`gemini-bot console`: the engine in the terminal."""
    from adapters.console import ConsoleAdapter

    store = build_store(settings)
    model = build_model(settings)
    engine = build_engine(settings, store=store, model=model)
    if args.persona and not engine.personas.has(args.persona):
        raise StartupError(
            f"--persona: unknown persona '{args.persona}' "
            f"(defined: {', '.join(engine.personas.names)})"
        )
    await store.open()
    try:
        adapter = ConsoleAdapter(
            engine=engine,
            commands=Commands(store=store, personas=engine.personas),
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
    names = await store.applied_migrations() if isinstance(store, SqliteStore) else []
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
