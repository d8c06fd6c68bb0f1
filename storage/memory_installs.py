"""MemoryStore's installations and OAuth states (a mixin over MemoryStore's dicts)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.types import Installation

if TYPE_CHECKING:
    from bot.types import Conversation, ThreadKey, Turn


class MemoryInstallations:
    """Installations and OAuth states in dicts."""

    if TYPE_CHECKING:
        _convs: dict[ThreadKey, Conversation]
        _turns: dict[int, list[Turn]]

    def __init__(self) -> None:
        self._installations: dict[tuple[str, str], Installation] = {}
        self._oauth_states: dict[str, datetime] = {}

    async def save_installation(self, installation: Installation) -> None:
        """Store (or replace) a workspace's installation."""
        at = installation.installed_at or datetime.now(UTC)
        key = (installation.platform, installation.workspace_id)
        self._installations[key] = replace(installation, installed_at=at)

    async def get_installation(self, platform: str, workspace_id: str) -> Installation | None:
        """A workspace's installation, if any."""
        return self._installations.get((platform, workspace_id))

    async def delete_installation(self, platform: str, workspace_id: str) -> bool:
        """Forget a workspace's installation."""
        return self._installations.pop((platform, workspace_id), None) is not None

    async def replace_token(self, platform: str, workspace_id: str, old: str, new: str) -> bool:
        """Swap the token if it is still `old`."""
        found = self._installations.get((platform, workspace_id))
        if found is None or found.token != old:
            return False
        self._installations[(platform, workspace_id)] = replace(found, token=new)
        return True

    async def forget_workspace(self, platform: str, workspace_id: str) -> int:
        """Delete every conversation of a workspace."""
        gone = [k for k in self._convs if (k.platform, k.workspace_id) == (platform, workspace_id)]
        for key in gone:
            self._turns.pop(self._convs.pop(key).id, None)
        return len(gone)

    async def issue_state(self, state: str, *, expires_at: datetime) -> None:
        """Record an OAuth state."""
        self._oauth_states[state] = expires_at

    async def consume_state(self, state: str) -> bool:
        """True once for a recorded, unexpired state."""
        expires = self._oauth_states.pop(state, None)
        return expires is not None and expires > datetime.now(UTC)
