"""Slack's OAuth installs in our database: Bolt's installation and OAuth state stores over
the store's InstallationStore part, with bot tokens encrypted (bot/crypto.py) before they
reach it and re-encrypted under the newest key when read under an older one."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.crypto import Cipher, UnreadableSecret
from bot.store import InstallationStore
from bot.types import Installation as Stored

log = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class BotToken:
    """A workspace's bot: its token (plaintext, in memory only) and identity."""

    team: str
    token: str = field(repr=False)  # never in a log line or a traceback's locals
    bot_user: str = ""
    bot_id: str = ""


def _workspace(enterprise_id: str | None, team_id: str | None) -> str:
    # An org-wide install (Enterprise Grid) has no team: the org stands for it.
    return team_id or enterprise_id or ""


class SlackInstalls(AsyncInstallationStore, AsyncOAuthStateStore):
    """Bolt's installation store and OAuth state store, in our database."""

    def __init__(self, store: InstallationStore, cipher: Cipher) -> None:
        self.store = store
        self.cipher = cipher
        self._unreadable: set[str] = set()

    @property
    def logger(self) -> logging.Logger:
        """Bolt's stores must name a logger."""
        return log

    # -- our side ----------------------------------------------------------------

    async def bot(self, team: str) -> BotToken | None:
        """The bot installed in `team`, token decrypted; None when not installed."""
        found = await self.store.get_installation("slack", team)
        if found is None:
            return None
        try:
            token = self.cipher.decrypt(found.token)
        except UnreadableSecret:
            # Its key left ENCRYPTION_KEYS too soon: as if not installed (it must install
            # again), logged once per workspace rather than failing every event.
            if team not in self._unreadable:
                self._unreadable.add(team)
                log.error("slack: no key in ENCRYPTION_KEYS opens the token of %s", team)
            return None
        if not self.cipher.is_current(found.token):
            # Read under an older key: store it under the newest, so the old key can go.
            new = self.cipher.encrypt(token)
            if await self.store.replace_token("slack", team, found.token, new):
                log.info("slack: re-encrypted the token of %s under the newest key", team)
        return BotToken(team, token, found.bot_user_id, found.bot_id)

    async def _save(self, team: str, enterprise: str | None, token: str, **kw: Any) -> None:
        await self.store.save_installation(
            Stored(
                platform="slack",
                workspace_id=team,
                bot_user_id=kw["bot_user_id"],
                bot_id=kw["bot_id"] or "",
                token=self.cipher.encrypt(token),
                scopes=",".join(kw["bot_scopes"] or []),
                enterprise_id=enterprise,
                installer_id=kw.get("user_id"),
                installed_at=datetime.now(UTC),
            )
        )
        log.info("slack: installed in %s", team)

    # -- Bolt's installation store -----------------------------------------------

    async def async_save(self, installation: Installation) -> None:
        """Keep the bot of a completed install (user tokens are not asked for)."""
        if not installation.bot_token or not installation.bot_user_id:
            raise ValueError("an install without a bot token: check the app's bot scopes")
        await self._save(
            _workspace(installation.enterprise_id, installation.team_id),
            installation.enterprise_id,
            installation.bot_token,
            bot_user_id=installation.bot_user_id,
            bot_id=installation.bot_id,
            bot_scopes=installation.bot_scopes,
            user_id=installation.user_id,
        )

    async def async_save_bot(self, bot: Bot) -> None:
        """Keep a bot."""
        await self._save(
            _workspace(bot.enterprise_id, bot.team_id),
            bot.enterprise_id,
            bot.bot_token,
            bot_user_id=bot.bot_user_id,
            bot_id=bot.bot_id,
            bot_scopes=bot.bot_scopes,
        )

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        """The bot of a workspace."""
        found = await self.bot(_workspace(enterprise_id, team_id))
        if found is None:
            return None
        return Bot(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=found.token,
            bot_id=found.bot_id,
            bot_user_id=found.bot_user,
            installed_at=datetime.now(UTC),
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        """The installation of a workspace (bot only)."""
        found = await self.bot(_workspace(enterprise_id, team_id))
        if found is None:
            return None
        return Installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=found.token,
            bot_id=found.bot_id,
            bot_user_id=found.bot_user,
            user_id=user_id or "",
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget a workspace's bot and token."""
        await self.store.delete_installation("slack", _workspace(enterprise_id, team_id))

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """Forget a workspace's installation (there are no user installs to keep)."""
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    # -- Bolt's OAuth state store ------------------------------------------------

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """A new state for one install, good for STATE_LIFETIME, on any replica."""
        state = secrets.token_urlsafe(24)
        await self.store.issue_state(state, expires_at=datetime.now(UTC) + STATE_LIFETIME)
        return state

    async def async_consume(self, state: str) -> bool:
        """True once for a state this app issued and that has not expired."""
        return await self.store.consume_state(state)
