"""Settings from the environment and .env (the environment wins); names are public."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.crypto import check_keys
from bot.shards import ShardCount, check_shard_ids, parse_shard_count, parse_shard_ids

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
# The Gemini tools the bot knows how to use and show.
TOOLS = ("google_search", "url_context", "code_execution")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def tool_list(raw: str) -> list[str]:
    """A comma-separated tool list (blanks dropped, lower-cased)."""
    return [t.strip().lower() for t in raw.split(",") if t.strip()]


class SettingsError(Exception):
    """Settings are missing or invalid; `problems` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Settings(BaseSettings):
    """Every setting of the service. See README for what each one does."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    GEMINI_API_KEY: SecretStr | None = None
    GEMINI_MODEL: str = "gemini-3.8-flash"
    GEMINI_BASE_URL: str | None = None
    GEMINI_API_VERSION: str = "v1beta"
    GEMINI_MAX_RETRIES: int = Field(default=3, ge=0, le=10)
    GEMINI_TIMEOUT_SECONDS: float = Field(default=120, gt=0)

    SLACK_BOT_TOKEN: SecretStr | None = None
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_SIGNING_SECRET: SecretStr | None = None
    SLACK_API_URL: str | None = None
    SLACK_STREAM_MODE: Literal["edit", "native"] = "edit"
    SLACK_REQUIRE_MENTION: bool = False
    # Many workspaces: the OAuth install (/slack/install); tokens then come from installs.
    SLACK_CLIENT_ID: str | None = None
    SLACK_CLIENT_SECRET: SecretStr | None = None
    # What uninstalling the app from a workspace does to its stored conversations.
    SLACK_UNINSTALL_CONVERSATIONS: Literal["keep", "delete"] = "keep"
    # Keys for tokens stored at rest: the first encrypts, all decrypt (rotation).
    ENCRYPTION_KEYS: SecretStr | None = None

    DISCORD_TOKEN: SecretStr | None = None
    DISCORD_API_URL: str | None = None
    DISCORD_GATEWAY_URL: str | None = None
    # Sync app commands to this guild only (instant, for development) instead of globally.
    DISCORD_SYNC_GUILD: str | None = None
    # Discord's global REST limit for this bot (50/s unless Discord raised it).
    DISCORD_GLOBAL_RATE: int = Field(50, ge=1, le=10_000)
    # Sharding (bot/shards.py): the total number of shards or `auto`, and the ones this
    # process runs (default: all). Neither set: one gateway connection, no sharding.
    DISCORD_SHARD_COUNT: ShardCount | None = None
    DISCORD_SHARD_IDS: Annotated[tuple[int, ...] | None, NoDecode] = None

    DATA_DIR: Path = Path("./data")
    DATABASE_URL: str | None = None
    HTTP_HOST: str = "127.0.0.1"
    HTTP_PORT: int = Field(default=8080, ge=0, le=65535)

    PERSONAS_FILE: Path | None = None
    DEFAULT_PERSONA: str = "assistant"

    ADMIN_USERS: str = ""
    ALLOWED_USERS: str = ""
    ALLOWED_CHANNELS: str = ""

    LOG_LEVEL: LogLevel = "INFO"

    HISTORY_TOKEN_BUDGET: int = Field(default=200_000, ge=1_000)
    ATTACHMENT_MAX_BYTES: int = Field(default=50 * 1024 * 1024, ge=1)
    INLINE_MAX_BYTES: int = Field(default=1024 * 1024, ge=0)
    SHUTDOWN_GRACE_SECONDS: float = Field(default=20, ge=0)
    # What start-up does with replies a crashed process left unfinished: answer again in the
    # same message (at most once), or mark the message as interrupted.
    RECOVERY: Literal["resume", "mark"] = "resume"
    # Gemini tools operators permit; a persona uses those it names in `tools` and a channel
    # admin may switch one off for a channel.
    GEMINI_TOOLS_ALLOWED: str = "google_search,url_context,code_execution"
    # Most platform messages one catch-up or thread summary reads (bounds its Gemini bill).
    CATCHUP_MAX_MESSAGES: int = Field(default=2000, ge=1, le=100_000)

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("DATABASE_URL")
    @classmethod
    def _db_url(cls, v: str | None) -> str | None:
        pg = urlsplit(v) if v and v.startswith(POSTGRES_SCHEMES) else None
        if pg is not None and pg.hostname and pg.path.strip("/"):
            return v
        if v and not (v.startswith("sqlite:///") or v == "memory:"):
            raise ValueError(
                "must look like sqlite:///path/to/file.db, "
                "postgresql://user:password@host:5432/dbname (or memory: for tests)"
            )
        return v

    @field_validator("GEMINI_BASE_URL", "SLACK_API_URL", "DISCORD_API_URL", "DISCORD_GATEWAY_URL")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v and v.split("://", 1)[0] not in ("http", "https", "ws", "wss"):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return v or None

    @field_validator("ENCRYPTION_KEYS")
    @classmethod
    def _keys(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            check_keys(v.get_secret_value())
        return v

    @field_validator("GEMINI_TOOLS_ALLOWED")
    @classmethod
    def _tools(cls, v: str) -> str:
        unknown = sorted(set(tool_list(v)) - set(TOOLS))
        if unknown:
            raise ValueError(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
        return v

    @field_validator("DISCORD_SHARD_COUNT", mode="before")
    @classmethod
    def _shard_count(cls, v: object) -> object:
        return parse_shard_count(v)

    @field_validator("DISCORD_SHARD_IDS", mode="before")
    @classmethod
    def _shard_ids(cls, v: object, info: ValidationInfo) -> object:
        ids = parse_shard_ids(v)
        # An invalid count is missing from info.data: its own line reports it.
        if ids is not None and "DISCORD_SHARD_COUNT" in info.data:
            check_shard_ids(ids, info.data["DISCORD_SHARD_COUNT"])
        return ids

    @property
    def tools_allowed(self) -> frozenset[str]:
        """GEMINI_TOOLS_ALLOWED as a set."""
        return frozenset(tool_list(self.GEMINI_TOOLS_ALLOWED))

    @property
    def postgres_url(self) -> str | None:
        """DATABASE_URL when it names a PostgreSQL database."""
        url = self.DATABASE_URL
        return url if url and url.startswith(POSTGRES_SCHEMES) else None

    @property
    def database_label(self) -> str:
        """Where the store lives, for logs: a path, or the URL without its password."""
        url = self.postgres_url
        if url is None:
            return str(self.database_path or "memory")
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"

    @property
    def database_password(self) -> str | None:
        """The password inside a PostgreSQL DATABASE_URL (kept out of every log line)."""
        url = self.postgres_url
        return urlsplit(url).password if url else None

    @property
    def database_path(self) -> Path | None:
        """The SQLite file, or None for the in-memory store (and for PostgreSQL)."""
        if self.DATABASE_URL == "memory:" or self.postgres_url:
            return None
        if self.DATABASE_URL:
            return Path(self.DATABASE_URL.removeprefix("sqlite:///"))
        return self.DATA_DIR / "gemini-bot.db"

    @property
    def blob_dir(self) -> Path:
        """Where attachment bytes are kept, content-addressed."""
        return self.DATA_DIR / "blobs"

    @property
    def encryption_keys(self) -> list[str]:
        """ENCRYPTION_KEYS as a list (empty when unset)."""
        raw = self.ENCRYPTION_KEYS.get_secret_value() if self.ENCRYPTION_KEYS else ""
        return [k.strip() for k in raw.split(",") if k.strip()]

    def oauth_problems(self) -> list[str]:
        """What the Slack OAuth install still needs (empty when off or complete)."""
        if not (self.SLACK_CLIENT_ID or self.SLACK_CLIENT_SECRET):
            return []
        needs = {
            "SLACK_CLIENT_ID": self.SLACK_CLIENT_ID,
            "SLACK_CLIENT_SECRET": self.SLACK_CLIENT_SECRET,
            "SLACK_SIGNING_SECRET": self.SLACK_SIGNING_SECRET,
            "ENCRYPTION_KEYS": self.ENCRYPTION_KEYS,
        }
        problems = [
            f"{name}: required for the Slack OAuth install (SLACK_CLIENT_ID is set)"
            for name, value in needs.items()
            if not value
        ]
        if self.SLACK_APP_TOKEN:
            problems.append(
                "SLACK_APP_TOKEN: the OAuth install needs HTTP mode (its pages are served at "
                "/slack/install); unset it"
            )
        if self.SLACK_BOT_TOKEN:
            problems.append(
                "SLACK_BOT_TOKEN: unset it with the OAuth install, where each workspace's "
                "token comes from its install (install the app again in that workspace)"
            )
        return problems

    def platforms_enabled(self) -> list[str]:
        """Adapters whose tokens are set."""
        out = []
        if self.SLACK_BOT_TOKEN or self.SLACK_CLIENT_ID:
            out.append("slack")
        if self.DISCORD_TOKEN:
            out.append("discord")
        return out

    def require_gemini(self) -> None:
        """Raise SettingsError when Gemini cannot be reached with these settings."""
        if not self.GEMINI_API_KEY or not self.GEMINI_API_KEY.get_secret_value().strip():
            raise SettingsError(
                ["GEMINI_API_KEY: required: set it to a Gemini API key (aistudio.google.com)"]
            )


def id_set(raw: str) -> frozenset[str]:
    """Parse a comma- or semicolon-separated list of platform-qualified ids."""
    return frozenset(p.strip() for p in raw.replace(";", ",").split(",") if p.strip())


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one line per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            value = err.get("input")
            shown = (
                "" if "KEY" in name or "TOKEN" in name or "SECRET" in name else f" (got {value!r})"
            )
            problems.append(f"{name}: {err['msg']}{shown}")
        raise SettingsError(problems) from None
