"""SqliteStore's installations and OAuth states (a mixin: SqliteStore provides the
statement helpers and the caches a deleted workspace must leave)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
)

if TYPE_CHECKING:
    from storage.cache import LRU, Tail


class SqliteInstallations:
    """Installations and OAuth states on SqliteStore's connection."""

    if TYPE_CHECKING:
        _convs: LRU[Any, Any]
        _tails: LRU[int, Tail]

        async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

        async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    async def save_installation(self, installation: Installation) -> None:
        """Store (or replace) a workspace's installation."""
        at = installation.installed_at or datetime.now(UTC)
        await self._write(SAVE_INSTALLATION, install_params(installation, at.isoformat()))

    async def get_installation(self, platform: str, workspace_id: str) -> Installation | None:
        """A workspace's installation, if any."""
        rows = await self._rows(GET_INSTALLATION, (platform, workspace_id))
        return installation_from_row(rows[0]) if rows else None

    async def delete_installation(self, platform: str, workspace_id: str) -> bool:
        """Forget a workspace's installation and its token."""
        return bool(await self._write(DELETE_INSTALLATION, (platform, workspace_id)))

    async def replace_token(self, platform: str, workspace_id: str, old: str, new: str) -> bool:
        """Swap the token if it is still `old`."""
        return bool(await self._write(REPLACE_TOKEN, (new, platform, workspace_id, old)))

    async def forget_workspace(self, platform: str, workspace_id: str) -> int:
        """Delete every conversation of a workspace (turns by cascade)."""
        rows = await self._write(FORGET_WORKSPACE, (platform, workspace_id))
        if rows:
            # Rare (an uninstall): emptying the caches is simpler than picking entries out.
            self._convs.clear()
            self._tails.clear()
        return len(rows)

    async def issue_state(self, state: str, *, expires_at: datetime) -> None:
        """Record an OAuth state (and drop expired ones)."""
        await self._write(PRUNE_STATES, (datetime.now(UTC).isoformat(),))
        await self._write(ISSUE_STATE, (state, expires_at.isoformat()))

    async def consume_state(self, state: str) -> bool:
        """True once for a recorded, unexpired state."""
        rows = await self._write(CONSUME_STATE, (state,))
        return bool(rows) and datetime.fromisoformat(rows[0][0]) > datetime.now(UTC)
