"""The workspaces one Slack app serves: each one's bot identity, and a Web API client and
file downloader with that workspace's token.

Two sources: a single SLACK_BOT_TOKEN (one workspace, identified by auth.test once), or
the OAuth installs in the database (SlackInstalls), read when a workspace is first seen
and kept CACHE_S seconds: another replica may have handled an uninstall meanwhile, and
then the calls of those seconds fail with the revoked token, harmlessly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.files import SlackFiles
from adapters.slack.installs import SlackInstalls

CACHE_S = 30.0
DOWNLOAD_TIMEOUT_S = 120.0


class NotInstalled(LookupError):
    """The app is not installed in that workspace (or was uninstalled)."""


@dataclass(frozen=True, slots=True)
class Workspace:
    """One workspace: the bot's ids there, a client and a downloader with its token."""

    team: str
    bot_user: str
    bot_id: str
    client: AsyncWebClient
    files: SlackFiles


class Workspaces:
    """Workspace by team id, from one token or from the OAuth installs."""

    def __init__(
        self,
        *,
        api_url: str,
        max_file_bytes: int,
        token: str | None = None,
        installs: SlackInstalls | None = None,
    ) -> None:
        if (token is None) == (installs is None):
            raise ValueError("one of token and installs")
        self.api_url = api_url
        self.max_file_bytes = max_file_bytes
        self.token = token
        self.installs = installs
        self._api: aiohttp.ClientSession | None = None
        self._downloads: aiohttp.ClientSession | None = None
        self._single: asyncio.Future[Workspace] | None = None
        self._cache: dict[str, tuple[float, Workspace]] = {}

    @property
    def many(self) -> bool:
        """True when workspaces come from OAuth installs."""
        return self.installs is not None

    def client(self, token: str | None) -> AsyncWebClient:
        """A Web API client with `token`, on the shared connection pool (without one,
        slack_sdk opens a connection and a TLS handshake per call)."""
        client = AsyncWebClient(token=token, base_url=self.api_url)
        if self._api is None or self._api.closed:
            self._api = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout))
        client.session = self._api
        return client

    def _workspace(self, team: str, bot_user: str, bot_id: str, token: str) -> Workspace:
        if self._downloads is None or self._downloads.closed:
            self._downloads = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        client = self.client(token)
        files = SlackFiles(
            client=client, token=token, max_bytes=self.max_file_bytes, session=self._downloads
        )
        return Workspace(team, bot_user, bot_id, client, files)

    async def single(self) -> Workspace:
        """The one workspace of SLACK_BOT_TOKEN (auth.test once; callers share it)."""
        assert self.token is not None
        if self._single is None:
            token = self.token

            async def identify() -> Workspace:
                probe = self.client(token)
                auth = await probe.auth_test()
                user, bot = str(auth["user_id"]), str(auth.get("bot_id") or "")
                return self._workspace(str(auth["team_id"]), user, bot, token)

            self._single = asyncio.ensure_future(identify())
        try:
            return await asyncio.shield(self._single)
        except Exception:
            self._single = None  # let the next caller try again
            raise

    async def get(self, team: str) -> Workspace:
        """The workspace `team` (with one token: that token's, whatever `team` is, since
        Slack Connect events may name the other organisation); NotInstalled if none."""
        if self.installs is None:
            return await self.single()
        now = time.monotonic()
        hit = self._cache.get(team)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        bot = await self.installs.bot(team)
        if bot is None:
            self._cache.pop(team, None)
            raise NotInstalled(team)
        ws = self._workspace(team, bot.bot_user, bot.bot_id, bot.token)
        self._cache[team] = (now, ws)
        return ws

    def forget(self, team: str) -> None:
        """Drop a workspace (uninstalled here)."""
        self._cache.pop(team, None)

    async def aclose(self) -> None:
        """Close the connection pools."""
        for session in (self._api, self._downloads):
            if session is not None and not session.closed:
                await session.close()


class HasAuthorize(Protocol):
    """What WorkspaceAuthorize asks of the adapter."""

    async def _authorize(self, team: str) -> AuthorizeResult | None: ...


def installation_team(body: dict[str, Any]) -> str:
    """The workspace whose installation an event was sent to: in a Slack Connect channel
    the envelope's team_id may be the other organisation's, so `authorizations` first (as
    Bolt reads it)."""
    auths = body.get("authorizations")
    if isinstance(auths, list) and auths and isinstance(auths[0], dict):
        team = auths[0].get("team_id")
        if isinstance(team, str) and team:
            return team
    return str(body.get("team_id") or "")


class WorkspaceAuthorize(AsyncAuthorize):
    """Bolt's authorize step from our Workspaces: None for a workspace without the app."""

    def __init__(self, adapter: HasAuthorize) -> None:
        self.adapter = adapter

    async def __call__(
        self,
        *,
        context: Any,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        """The workspace's bot and token (None: the app is not installed there)."""
        return await self.adapter._authorize(team_id or enterprise_id or "")
