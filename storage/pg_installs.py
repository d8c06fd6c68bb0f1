"""PostgresStore's installations and OAuth states (a mixin: PostgresStore provides the
pool). The SQL is SQLite's (storage/installs.py), numbered for PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.types import Installation
from storage.installs import (
    CONSUME_STATE,
    DELETE_INSTALLATION,
    FORGET_WORKSPACE,
    GET_INSTALLATION,
    ISSUE_STATE,
    PRUNE_STATES,
    REPLACE_TOKEN,
    SAVE_INSTALLATION,
    install_params,
    installation_from_row,
    numbered,
)

if TYPE_CHECKING:
    import asyncpg


class PgInstallations:
    """Installations and OAuth states in PostgreSQL."""

    if TYPE_CHECKING:

        @property
        def pool(self) -> asyncpg.Pool:
            """The open connection pool."""

    async def save_installation(self, installation: Installation) -> None:
        """Store (or replace) a workspace's installation."""
        at = installation.installed_at or datetime.now(UTC)
        await self.pool.execute(numbered(SAVE_INSTALLATION), *install_params(installation, at))

    async def get_installation(self, platform: str, workspace_id: str) -> Installation | None:
        """A workspace's installation, if any."""
        row = await self.pool.fetchrow(numbered(GET_INSTALLATION), platform, workspace_id)
        return installation_from_row(row) if row else None

    async def delete_installation(self, platform: str, workspace_id: str) -> bool:
        """Forget a workspace's installation and its token."""
        return bool(await self.pool.fetch(numbered(DELETE_INSTALLATION), platform, workspace_id))

    async def replace_token(self, platform: str, workspace_id: str, old: str, new: str) -> bool:
        """Swap the token if it is still `old`."""
        rows = await self.pool.fetch(numbered(REPLACE_TOKEN), new, platform, workspace_id, old)
        return bool(rows)

    async def forget_workspace(self, platform: str, workspace_id: str) -> int:
        """Delete every conversation of a workspace (turns by cascade)."""
        return len(await self.pool.fetch(numbered(FORGET_WORKSPACE), platform, workspace_id))

    async def issue_state(self, state: str, *, expires_at: datetime) -> None:
        """Record an OAuth state (and drop expired ones)."""
        await self.pool.execute(numbered(PRUNE_STATES), datetime.now(UTC))
        await self.pool.execute(numbered(ISSUE_STATE), state, expires_at)

    async def consume_state(self, state: str) -> bool:
        """True once for a recorded, unexpired state (any replica may consume it)."""
        expires = await self.pool.fetchval(numbered(CONSUME_STATE), state)
        return expires is not None and expires > datetime.now(UTC)
