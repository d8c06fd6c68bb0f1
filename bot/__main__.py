"""CLI: `gemini-bot run | console | migrate | personas`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from bot.compose import (
    StartupError,
    build_commands,
    build_engine,
    build_gate,
    build_model,
    build_personas,
    build_store,
    check_models,
)
from bot.errors import SchemaTooNew
from bot.facade import Core
from bot.logs import setup_logging
from bot.personas import PersonaFileError
from bot.service import Service
from bot.settings import Settings, SettingsError, load_settings

__all__ = ["Service", "main"]


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
    # With PostgreSQL, the console is a replica too: it holds its replica lock (or running
    # replicas would take its replies over) and waits its turn on shared threads.
    gate = build_gate(store, serves=False)
    model = build_model(settings)
    engine = build_engine(settings, store=store, model=model, gate=gate)
    await store.open()
    await gate.open()
    try:
        adapter = ConsoleAdapter(
            core=Core(engine),
            commands=build_commands(settings, engine),
            thread=args.thread,
            persona=args.persona,
            files_dir=settings.DATA_DIR / "files",
        )
        await adapter.run()
    finally:
        await engine.scheduler.aclose()
        await model.aclose()
        await gate.close()
        await store.close()
    return 0


async def migrate(settings: Settings) -> int:
    """`gemini-bot migrate`: open the store, applying pending migrations."""
    store = build_store(settings)
    await store.open()
    try:
        names = await store.applied_migrations()
    finally:
        await store.close()
    print(f"database {settings.database_label}: up to date ({', '.join(names) or 'in memory'})")
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
    if settings.database_password:
        secrets.append(settings.database_password)
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
    except (PersonaFileError, SchemaTooNew) as exc:
        print(f"gemini-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
