"""PostgresStore's tables beside the conversations: attachment bytes and provider files,
handled event ids, usage, service state and channel settings."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.types import DailyUsage, RemoteFile, Usage
from storage.blobs import check_size
from storage.installs import numbered
from storage.usage_sql import ADD_USAGE, GET_USAGE, usage_params

if TYPE_CHECKING:
    import asyncpg

_CHANNEL = "platform=$1 AND workspace_id=$2 AND channel_id=$3"


class PgSideTables:
    """Blobs, events, usage, meta and channel settings (a mixin: PostgresStore provides the
    pool and the attachment cap)."""

    if TYPE_CHECKING:
        max_blob_bytes: int

        @property
        def pool(self) -> asyncpg.Pool:
            """The open connection pool."""

    # -- attachments -------------------------------------------------------

    async def put_blob(self, data: bytes, *, mime_type: str) -> str:
        """Store bytes in the database (once) and return their sha256."""
        check_size(data, self.max_blob_bytes)
        sha = hashlib.sha256(data).hexdigest()
        await self.pool.execute(
            "INSERT INTO blobs (sha256, mime_type, size, data, created_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            sha,
            mime_type,
            len(data),
            data,
            datetime.now(UTC),
        )
        return sha

    async def get_blob(self, sha256: str) -> bytes:
        """Stored bytes; KeyError when missing."""
        data = await self.pool.fetchval("SELECT data FROM blobs WHERE sha256=$1", sha256)
        if data is None:
            raise KeyError(sha256)
        return bytes(data)

    async def get_remote_file(self, sha256: str) -> RemoteFile | None:
        """The provider file recorded for these bytes."""
        row = await self.pool.fetchrow(
            "SELECT uri, mime_type, expires_at, name FROM remote_files WHERE sha256=$1", sha256
        )
        if row is None:
            return None
        return RemoteFile(row["uri"], row["mime_type"], row["expires_at"], row["name"])

    async def put_remote_file(self, sha256: str, remote: RemoteFile) -> None:
        """Record (or replace) the provider file for these bytes."""
        await self.pool.execute(
            "INSERT INTO remote_files (sha256, uri, name, mime_type, expires_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO UPDATE SET uri=EXCLUDED.uri, "
            "name=EXCLUDED.name, mime_type=EXCLUDED.mime_type, expires_at=EXCLUDED.expires_at",
            sha256,
            remote.uri,
            remote.name,
            remote.mime_type,
            remote.expires_at,
        )

    # -- events ------------------------------------------------------------

    async def event_seen(self, platform: str, event_id: str) -> bool:
        """True when the event id was recorded before (by any replica)."""
        return bool(
            await self.pool.fetchval(
                "SELECT 1 FROM processed_events WHERE platform=$1 AND event_id=$2",
                platform,
                event_id,
            )
        )

    async def mark_event(self, platform: str, event_id: str) -> bool:
        """Record an event id; False when it was already there."""
        return bool(
            await self.pool.fetchval(
                "INSERT INTO processed_events (platform, event_id, seen_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                platform,
                event_id,
                datetime.now(UTC),
            )
        )

    async def prune_events(self, *, older_than: datetime) -> int:
        """Forget event ids seen before `older_than`."""
        rows = await self.pool.fetch(
            "DELETE FROM processed_events WHERE seen_at < $1 RETURNING 1", older_than
        )
        return len(rows)

    # -- usage -------------------------------------------------------------

    async def add_usage(self, platform: str, user_id: str, *, day: str, usage: Usage) -> None:
        """Add one turn to a user's day."""
        await self.pool.execute(numbered(ADD_USAGE), *usage_params(platform, user_id, day, usage))

    async def get_usage(self, platform: str, user_id: str, *, day: str) -> DailyUsage:
        """A user's usage on a day."""
        row = await self.pool.fetchrow(numbered(GET_USAGE), platform, user_id, day)
        return DailyUsage(*row) if row else DailyUsage(0, 0, 0)

    # -- service state and channel settings --------------------------------

    async def get_meta(self, key: str) -> str | None:
        """A value stored under `key`."""
        value = await self.pool.fetchval("SELECT value FROM meta WHERE key=$1", key)
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`."""
        await self.pool.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value",
            key,
            value,
        )

    async def get_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> str | None:
        """The channel's default persona."""
        value = await self.pool.fetchval(
            f"SELECT default_persona FROM channel_settings WHERE {_CHANNEL}",
            platform,
            workspace_id,
            channel_id,
        )
        return None if value is None else str(value)

    async def set_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str, persona: str | None
    ) -> None:
        """Set or clear the channel's default persona."""
        await self.pool.execute(
            "INSERT INTO channel_settings (platform, workspace_id, channel_id, default_persona) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, workspace_id, channel_id) "
            "DO UPDATE SET default_persona=EXCLUDED.default_persona",
            platform,
            workspace_id,
            channel_id,
            persona,
        )

    async def get_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> frozenset[str]:
        """Tools a channel admin switched off in this channel."""
        raw = await self.pool.fetchval(
            f"SELECT tools_off FROM channel_settings WHERE {_CHANNEL}",
            platform,
            workspace_id,
            channel_id,
        )
        return frozenset(t for t in str(raw or "").split(",") if t)

    async def set_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str, tools: frozenset[str]
    ) -> None:
        """Replace the set of tools switched off in a channel."""
        await self.pool.execute(
            "INSERT INTO channel_settings (platform, workspace_id, channel_id, tools_off) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, workspace_id, channel_id) "
            "DO UPDATE SET tools_off=EXCLUDED.tools_off",
            platform,
            workspace_id,
            channel_id,
            ",".join(sorted(tools)),
        )
