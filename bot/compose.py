"""Composition: settings in, concrete store, model, engine and adapters out.

The only place (with bot/service.py and the CLI) where concrete classes meet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bot.access import AccessPolicy
from bot.catchup import Summariser
from bot.commands import Commands
from bot.engine import ConversationEngine, Recovery
from bot.engine.recovery import TargetFor
from bot.facade import Core
from bot.gate import LocalGate, ThreadGate
from bot.gemini import GeminiChatModel
from bot.http import HttpServer
from bot.model_check import missing_models
from bot.personas import PersonaRegistry, load_personas
from bot.ports import Adapter, SharedLimits, Store
from bot.settings import Settings
from bot.streaming import EditScheduler
from bot.tools import ToolPolicy

log = logging.getLogger("gemini-bot")

# Slack retries within minutes and redelivers after outages within hours; three days of
# event ids is ample for de-duplication and keeps the table small.
EVENT_ID_RETENTION = timedelta(days=3)
MAINTENANCE_INTERVAL_S = 3600.0
# How often replicas look for replies a stopped replica left: the longest a reply of a
# killed replica waits before another takes it over.
FAILOVER_INTERVAL_S = 1.0

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


def replica_name() -> str:
    """This process's name among replicas (the owner of the replies it accepts, and the
    `replica` label of its metrics): host, pid and a random suffix, since a restarted
    container may reuse both host name and pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_store(settings: Settings, *, replica: str = "") -> Store:
    """PostgresStore for a postgresql:// DATABASE_URL, MemoryStore for `memory:`, else
    SqliteStore (by default under DATA_DIR)."""
    if settings.postgres_url:
        from storage.postgres import PostgresStore

        return PostgresStore(
            settings.postgres_url,
            max_blob_bytes=settings.ATTACHMENT_MAX_BYTES,
            replica=replica or replica_name(),
        )
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


def build_shared_limits(store: Store) -> SharedLimits | None:
    """Platform budgets shared by replicas (PostgreSQL), or None for one process."""
    from storage.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from storage.pg_limits import PgLimits

        return PgLimits(store)
    return None


def build_gate(store: Store, *, serves: bool = True) -> ThreadGate:
    """The thread gate: across replicas for the PostgreSQL store, in-process otherwise
    (`serves=False`: the console, which takes no other process's replies over)."""
    from storage.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from storage.pg_gate import PgGate

        return PgGate(store, serves=serves)
    return LocalGate(store)


def build_engine(
    settings: Settings, *, store: Store, model: GeminiChatModel, gate: ThreadGate | None = None
) -> ConversationEngine:
    """The engine with settings applied."""
    return ConversationEngine(
        gate=gate,
        store=store,
        model=model,
        personas=build_personas(settings),
        scheduler=EditScheduler(shared=build_shared_limits(store)),
        history_token_budget=settings.HISTORY_TOKEN_BUDGET,
        inline_max_bytes=settings.INLINE_MAX_BYTES,
        max_attachment_bytes=settings.ATTACHMENT_MAX_BYTES,
        tools=ToolPolicy(store, allowed=settings.tools_allowed),
    )


def build_commands(settings: Settings, engine: ConversationEngine) -> Commands:
    """The commands on the engine's store, personas and locks, with catch-up summaries
    (HISTORY_TOKEN_BUDGET per request, CATCHUP_MAX_MESSAGES per summary)."""
    summariser = Summariser(
        model=engine.model,
        personas=engine.personas,
        token_budget=settings.HISTORY_TOKEN_BUDGET,
        max_messages=settings.CATCHUP_MAX_MESSAGES,
    )
    return Commands(
        store=engine.store,
        personas=engine.personas,
        locks=engine.locks,
        summariser=summariser,
        tools=engine.tools,
    )


def labelled(text: str, replica: str) -> str:
    """Every sample of a Prometheus text exposition labelled replica="...": replicas are
    scraped one by one, and their series must not collide when summed."""
    value = replica.replace("\\", "\\\\").replace('"', '\\"')
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, rest = line.split(" ", 1)
            if "{" in name:
                name = name.replace("{", f'{{replica="{value}",', 1)
            else:
                name = f'{name}{{replica="{value}"}}'
            line = f"{name} {rest}"
        out.append(line)
    return "\n".join(out) + "\n"


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
        "# HELP gemini_bot_recovered_total Replies left by a crash, by what start-up did"
        " (answered: left by a draining replica before it began them).",
        "# TYPE gemini_bot_recovered_total counter",
        *(
            f'gemini_bot_recovered_total{{outcome="{o}"}} {engine.counters[f"recovered_{o}"]}'
            for o in ("resumed", "marked", "failed", "answered")
        ),
        "# HELP gemini_bot_handed_off_total Messages stored while draining and left to"
        " another replica to answer.",
        "# TYPE gemini_bot_handed_off_total counter",
        f"gemini_bot_handed_off_total {engine.counters['handed_off']}",
        "# HELP gemini_bot_hand_off_failures_total Messages stored while draining whose"
        " hand-off failed (taken over once this replica has stopped).",
        "# TYPE gemini_bot_hand_off_failures_total counter",
        f"gemini_bot_hand_off_failures_total {engine.counters['hand_off_failures']}",
        "# HELP gemini_bot_platform_429_total Platform 429 answers received.",
        "# TYPE gemini_bot_platform_429_total counter",
        f"gemini_bot_platform_429_total {engine.scheduler.rate_limited}",
    ]
    shared = engine.scheduler.shared
    if shared is not None:
        lines += [
            "# HELP gemini_bot_shared_budget_waits_total Calls that waited for other replicas'"
            " use of a shared platform budget.",
            "# TYPE gemini_bot_shared_budget_waits_total counter",
            f"gemini_bot_shared_budget_waits_total {shared.waits}",
            "# HELP gemini_bot_shared_budget_errors_total Shared budget claims that failed"
            " (the call went on the local limit).",
            "# TYPE gemini_bot_shared_budget_errors_total counter",
            f"gemini_bot_shared_budget_errors_total {shared.errors}",
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
    if settings.SLACK_BOT_TOKEN or settings.SLACK_CLIENT_ID:
        from bot.compose_slack import build_slack

        adapters.append(
            build_slack(settings, engine=engine, commands=commands, access=access, http=http)
        )
    if settings.DISCORD_TOKEN:
        from adapters.discord import DiscordAdapter

        adapters.append(
            DiscordAdapter(
                core=Core(engine),
                meta=engine.store,
                commands=commands,
                access=access,
                token=settings.DISCORD_TOKEN.get_secret_value(),
                api_url=settings.DISCORD_API_URL,
                gateway_url=settings.DISCORD_GATEWAY_URL,
                sync_guild=settings.DISCORD_SYNC_GUILD,
                global_per_second=settings.DISCORD_GLOBAL_RATE,
                max_file_bytes=settings.ATTACHMENT_MAX_BYTES,
                shard_count=settings.DISCORD_SHARD_COUNT,
                shard_ids=settings.DISCORD_SHARD_IDS,
            )
        )
    return adapters


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def fail_over(recovery: Recovery, targets: TargetFor) -> None:
    """With replicas: every FAILOVER_INTERVAL_S, recover the replies of replicas that died
    (the same recovery as at start-up; each orphan is claimed by exactly one replica), and
    this replica's own replies that a failure left with no task (seen so twice in a row)."""
    seen: set[int] = set()
    while True:
        await asyncio.sleep(FAILOVER_INTERVAL_S)
        try:
            orphans = await recovery.find()
            stranded, seen = await recovery.stranded(seen)
            if orphans or stranded:
                await recovery.start([*orphans, *stranded], targets)
        except Exception:
            log.exception("looking for replies of stopped replicas failed")


async def maintain(store: Store, limits: SharedLimits | None = None) -> None:
    """Hourly housekeeping: prune old processed event ids (and shared budgets long idle)."""
    while True:
        try:
            pruned = await store.prune_events(older_than=datetime.now(UTC) - EVENT_ID_RETENTION)
            if pruned:
                log.info("pruned %d old event ids", pruned)
            if limits is not None:
                await limits.prune(idle_for=timedelta(seconds=MAINTENANCE_INTERVAL_S))
        except Exception:
            log.exception("maintenance failed")
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)


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
