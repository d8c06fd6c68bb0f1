"""A workspace that removes the app: Slack sends app_uninstalled and tokens_revoked, and the
workspace's installation (and token) is forgotten, with its conversations if
SLACK_UNINSTALL_CONVERSATIONS=delete."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.slack.workspaces import installation_team

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

log = logging.getLogger(__name__)

REINSTALL_MARGIN = timedelta(seconds=5)


def _event_time(body: dict[str, Any]) -> datetime | None:
    """When Slack says the event happened (whole seconds), if it says so."""
    raw = body.get("event_time")
    if isinstance(raw, int | float) and raw > 0:
        return datetime.fromtimestamp(raw, UTC)
    return None


class Uninstalls:
    """The adapter's uninstall listeners."""

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter

    def register(self) -> None:
        """Listen for both events on the adapter's Bolt app."""
        self.adapter.app.event("app_uninstalled")(self._on_uninstalled)
        self.adapter.app.event("tokens_revoked")(self._on_tokens_revoked)

    async def _on_uninstalled(self, body: dict[str, Any]) -> None:
        team = installation_team(body)
        at = _event_time(body)
        self.adapter.inbox.spawn(self.uninstall(team, at), what="app_uninstalled")

    async def _on_tokens_revoked(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        tokens = event.get("tokens")
        if isinstance(tokens, dict) and tokens.get("bot"):  # the bot's token: it is gone
            team = installation_team(body)
            at = _event_time(body)
            self.adapter.inbox.spawn(self.uninstall(team, at), what="tokens_revoked")

    async def uninstall(self, team: str, at: datetime | None = None) -> None:
        """Forget a workspace that removed the app: its installation and token, and (if
        SLACK_UNINSTALL_CONVERSATIONS=delete) its conversations. Idempotent: Slack sends
        both app_uninstalled and tokens_revoked, maybe to two replicas. An event older
        than the installation (`at`: a late delivery, after a reinstall) is ignored."""
        adapter = self.adapter
        adapter.workspaces.forget(team)
        installs = adapter.workspaces.installs
        if installs is None:
            log.warning("slack: the app was uninstalled from %s (SLACK_BOT_TOKEN is dead)", team)
            return
        current = await installs.store.get_installation("slack", team)
        installed = current.installed_at if current is not None else None
        # Slack's event_time has whole seconds, and clocks differ: a margin, so only an
        # event clearly older than the install is ignored.
        if at is not None and installed is not None and installed > at + REINSTALL_MARGIN:
            log.info("slack: an uninstall of %s older than its reinstall: ignored", team)
            return
        removed = await installs.store.delete_installation("slack", team)
        forgotten = 0
        if adapter.forget_on_uninstall:
            forgotten = await adapter.core.forget_workspace("slack", team)
        if removed or forgotten:
            log.info(
                "slack: uninstalled from %s: token deleted, %d conversation(s) deleted",
                team,
                forgotten,
            )
