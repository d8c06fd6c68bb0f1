"""The fake Slack's workspaces, OAuth v2 install flow and tokens: further workspaces
beside the default one, the consent screen (/oauth/v2/authorize), oauth.v2.access,
which team each token belongs to, revocation and the uninstall events.

Facts followed (docs.slack.dev oauth.v2.access, auth.test, app_uninstalled and
tokens_revoked pages; slack-sdk's `oauth_v2_access` and `AuthorizeUrlGenerator`; slack-bolt's
`AsyncOAuthFlow.run_installation` and token revocation listeners):
1. The consent screen is reached with client_id, scope, user_scope, state and (optional)
   redirect_uri, plus `team` when the app asks for one; when the user allows, Slack
   redirects to `redirect_uri?code=...&state=...`, when they cancel to
   `redirect_uri?error=access_denied&state=...`. Here the test-only query parameters
   `team` (the workspace the simulated user installs into), `user` (the installer) and
   `deny=1` (the user cancels) stand for the user's clicks.
2. oauth.v2.access takes client_id/client_secret as HTTP Basic auth (what slack-sdk sends)
   or as form fields, the code (single use) and redirect_uri, which must match the one of
   the consent (if one was sent). Errors: invalid_client_id, bad_client_secret,
   invalid_code, bad_redirect_uri, invalid_grant_type. The answer: access_token (xoxb-),
   token_type "bot", scope (comma-separated), bot_user_id, app_id, team {id, name},
   enterprise (null outside Enterprise Grid), authed_user {id[, scope, access_token,
   token_type "user" when user scopes were granted]}, is_enterprise_install. No bot_id:
   Bolt calls auth.test with the new token for it.
3. auth.test with a bot token: url, team, user, team_id, user_id (the bot user), bot_id,
   is_enterprise_install; with a user token the same without bot_id. The granted scopes
   come in the `x-oauth-scopes` header.
4. A revoked token gets `token_revoked` from every method, auth.test included; a channel of
   another workspace does not exist for a token (`channel_not_found`).
5. On uninstall Slack sends `app_uninstalled` ({"type": "app_uninstalled"}) and
   `tokens_revoked` ({"type": "tokens_revoked", "tokens": {"oauth": [user ids], "bot":
   [bot user ids]}}) as Events API event_callbacks, in no guaranteed order; ids, not tokens.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.slack_history import api_err, api_ok

DEFAULT_TEAM = "T0TEAM"
DEFAULT_TEAM_NAME = "Test"
DEFAULT_BOT_USER = "U0BOT"
DEFAULT_BOT_ID = "B0BOT"
DEFAULT_BOT_TOKEN = "xoxb-fake-bot-token"
APP_ID = "A0APP"
OAUTH_CLIENT_ID = "1111.2222"
OAUTH_CLIENT_SECRET = "fake-client-secret"
INSTALLER = "U1ADA"


@dataclass
class Workspace:
    """A workspace the app can be installed into."""

    id: str
    name: str
    domain: str
    bot_user: str  # the app's bot user there
    bot_id: str

    @property
    def url(self) -> str:
        return f"https://{self.domain}.slack.com/"


@dataclass
class Token:
    """An access token the fake knows. `scopes` None: the fake's `scopes` (BOT_TOKEN)."""

    value: str
    team: str
    kind: str  # "bot" | "user"
    user: str  # the bot user of a bot token, the installer of a user token
    bot_id: str | None = None
    scopes: set[str] | None = None
    revoked: bool = False


@dataclass
class Grant:
    """A one-time code handed out by the consent screen."""

    code: str
    team: str
    user: str
    scopes: list[str]
    user_scopes: list[str]
    redirect_uri: str | None
    state: str
    used: bool = False


@dataclass
class Install:
    """One successful oauth.v2.access."""

    team: str
    code: str
    bot_token: str | None
    bot_user: str
    bot_id: str
    scopes: list[str]
    user: str
    user_token: str | None
    user_scopes: list[str]
    response: dict[str, Any] = field(default_factory=dict)


def _scope_list(raw: Any) -> list[str]:
    return [s.strip() for s in str(raw or "").split(",") if s.strip()]


def envelope(
    team: str,
    bot_user: str,
    event: dict[str, Any],
    event_id: str,
    *,
    app_id: str = APP_ID,
) -> dict[str, Any]:
    """An Events API event_callback of `team` as Slack posts it."""
    return {
        "token": "legacy",
        "team_id": team,
        "api_app_id": app_id,
        "type": "event_callback",
        "event": event,
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": bot_user,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
    }


_CALLER: ContextVar[Token | None] = ContextVar("fake_slack_caller", default=None)


class OAuthMixin:
    """Workspaces, tokens and the OAuth v2 install flow of `FakeSlack`."""

    base_url: str
    channel_team: dict[str, str]
    scopes: set[str]

    def _init_oauth(self) -> None:
        self.workspaces: dict[str, Workspace] = {
            DEFAULT_TEAM: Workspace(
                DEFAULT_TEAM, DEFAULT_TEAM_NAME, "test", DEFAULT_BOT_USER, DEFAULT_BOT_ID
            )
        }
        self.tokens: dict[str, Token] = {
            DEFAULT_BOT_TOKEN: Token(
                DEFAULT_BOT_TOKEN, DEFAULT_TEAM, "bot", DEFAULT_BOT_USER, DEFAULT_BOT_ID
            )
        }
        self.oauth_client_id = OAUTH_CLIENT_ID
        self.oauth_client_secret = OAUTH_CLIENT_SECRET
        self.oauth_app_id = APP_ID
        # Redirect URLs of the app's config: empty, any is accepted; else the consent's
        # redirect_uri must start with one of them (Slack allows sub-paths).
        self.oauth_redirect_uris: list[str] = []
        self.grants: dict[str, Grant] = {}
        self.installs: list[Install] = []
        self.consents: list[dict[str, str]] = []  # every consent screen request's query
        self._token_seq = itertools.count(1)
        self._uninstall_events = itertools.count(1)

    # -- workspaces ------------------------------------------------------------

    def add_workspace(self, team_id: str, name: str) -> None:
        """Register a further workspace: its bot user is "U0BOT" + the team id without
        its leading T, its bot id "B0" + the same ("T2ACME" -> U0BOT2ACME, B02ACME)."""
        if team_id in self.workspaces:
            raise ValueError(f"workspace {team_id} exists already")
        suffix = team_id[1:] if team_id.startswith("T") else team_id
        domain = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or team_id.lower()
        self.workspaces[team_id] = Workspace(
            team_id, name, domain, f"{DEFAULT_BOT_USER}{suffix}", f"B0{suffix}"
        )

    def team_of(self, channel: str) -> str:
        """The workspace a channel belongs to (`channel_team`, else the default one)."""
        return self.channel_team.get(channel, DEFAULT_TEAM)

    def bot_user_of(self, team: str) -> str:
        """The app's bot user in `team` (the default one for a team only named in
        `channel_team`)."""
        ws = self.workspaces.get(team)
        return ws.bot_user if ws is not None else DEFAULT_BOT_USER

    def bot_id_of(self, team: str) -> str:
        ws = self.workspaces.get(team)
        return ws.bot_id if ws is not None else DEFAULT_BOT_ID

    def bot_in(self, channel: str) -> str:
        """The bot user that speaks in `channel`."""
        return self.bot_user_of(self.team_of(channel))

    def bot_id_in(self, channel: str) -> str:
        return self.bot_id_of(self.team_of(channel))

    def bot_users(self) -> set[str]:
        return {ws.bot_user for ws in self.workspaces.values()}

    # -- tokens ----------------------------------------------------------------

    def tokens_of(self, team: str, *, live: bool = True) -> list[Token]:
        return [t for t in self.tokens.values() if t.team == team and not (live and t.revoked)]

    def token_for(self, team: str) -> str:
        """The newest live bot token of `team` (KeyError when there is none)."""
        bots = [t for t in self.tokens_of(team) if t.kind == "bot"]
        if not bots:
            raise KeyError(team)
        return bots[-1].value

    def scopes_of(self, token: Token) -> set[str]:
        return self.scopes if token.scopes is None else token.scopes

    def caller(self) -> Token:
        """The token of the Web API call being answered (the default bot token outside one)."""
        return _CALLER.get() or self.tokens[DEFAULT_BOT_TOKEN]

    def reaches(self, token: Token, channel: str) -> bool:
        """Whether `token` sees `channel`: same workspace. Teams only named in
        `channel_team` (never added with `add_workspace`) are the old shorthand for
        per-team limits and stay reachable with the default workspace's tokens."""
        owner = self.team_of(channel)
        if owner == token.team:
            return True
        return token.team == DEFAULT_TEAM and owner not in self.workspaces

    def authenticate(self, header: str | None, args: dict[str, Any]) -> Token | str:
        """The token of a Web API call (Authorization: Bearer, or a `token` argument), or
        the error Slack gives."""
        raw = ""
        if header and header.startswith("Bearer "):
            raw = header[len("Bearer ") :]
        elif args.get("token"):
            raw = str(args["token"])
        token = self.tokens.get(raw)
        if token is None:
            return "not_authed" if not raw else "invalid_auth"
        if token.revoked:
            return "token_revoked"
        return token

    def live_token(self, header: str | None) -> Token | None:
        """The live token of an `Authorization: Bearer` header (file downloads)."""
        if not header or not header.startswith("Bearer "):
            return None
        token = self.tokens.get(header[len("Bearer ") :])
        return None if token is None or token.revoked else token

    def _revoke(self, tokens: list[Token]) -> dict[str, list[str]]:
        oauth: list[str] = []
        bot: list[str] = []
        for t in tokens:
            t.revoked = True
            into = bot if t.kind == "bot" else oauth
            if t.user not in into:
                into.append(t.user)
        return {"oauth": oauth, "bot": bot}

    def _uninstall_envelope(self, team: str, event: dict[str, Any]) -> dict[str, Any]:
        eid = f"EvUN{next(self._uninstall_events):06d}"  # not to collide with the driver's
        return envelope(team, self.bot_user_of(team), event, eid, app_id=self.oauth_app_id)

    def revoke(self, token: str) -> dict[str, Any]:
        """Revoke one token (as auth.revoke or an admin would); returns the tokens_revoked
        event_callback Slack sends for it."""
        t = self.tokens[token]
        tokens = self._revoke([t])
        return self._uninstall_envelope(t.team, {"type": "tokens_revoked", "tokens": tokens})

    def uninstall(self, team_id: str) -> list[dict[str, Any]]:
        """Uninstall the app from `team_id`: every token of it is revoked. Returns what Slack
        sends the app: an `app_uninstalled` and a `tokens_revoked` event_callback (full
        envelopes of that team, ready for `SlackDriver.post_envelope`)."""
        tokens = self._revoke(self.tokens_of(team_id))
        return [
            self._uninstall_envelope(team_id, {"type": "app_uninstalled"}),
            self._uninstall_envelope(team_id, {"type": "tokens_revoked", "tokens": tokens}),
        ]

    # -- the consent screen ------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        """The consent screen: what Bolt's `authorization_url` must be set to."""
        return f"{self.base_url}/oauth/v2/authorize"

    def _redirect_allowed(self, uri: str) -> bool:
        return not self.oauth_redirect_uris or any(
            uri.startswith(u) for u in self.oauth_redirect_uris
        )

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        q = {k: request.query.get(k, "") for k in request.query}
        self.consents.append(q)
        if q.get("client_id") != self.oauth_client_id:
            return web.Response(status=400, text="invalid_client_id", content_type="text/plain")
        redirect_uri = q.get("redirect_uri") or None
        target = redirect_uri or (self.oauth_redirect_uris[0] if self.oauth_redirect_uris else "")
        if not target or not self._redirect_allowed(target):
            return web.Response(status=400, text="bad_redirect_uri", content_type="text/plain")
        team = q.get("team") or DEFAULT_TEAM
        if team not in self.workspaces:
            return web.Response(status=400, text="unknown team", content_type="text/plain")
        state = q.get("state", "")
        sep = "&" if "?" in target else "?"
        if q.get("deny") in ("1", "true"):
            query = urlencode({"error": "access_denied", "state": state})
            raise web.HTTPFound(f"{target}{sep}{query}")
        code = f"{next(self._token_seq)}.{team}.{secrets.token_hex(8)}"
        self.grants[code] = Grant(
            code,
            team,
            q.get("user") or INSTALLER,
            _scope_list(q.get("scope")),
            _scope_list(q.get("user_scope")),
            redirect_uri,
            state,
        )
        raise web.HTTPFound(f"{target}{sep}{urlencode({'code': code, 'state': state})}")

    # -- oauth.v2.access -----------------------------------------------------------

    def _client_credentials(
        self, header: str | None, args: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        if header and header.startswith("Basic "):
            try:
                raw = base64.b64decode(header[len("Basic ") :], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            login, sep, password = raw.partition(":")
            return (login, password) if sep else (None, None)
        cid, secret = args.get("client_id"), args.get("client_secret")
        return (str(cid) if cid else None), (str(secret) if secret else None)

    def oauth_v2_access(self, header: str | None, args: dict[str, Any]) -> web.Response:
        """oauth.v2.access (no bearer token: the app's client id and secret)."""
        client_id, client_secret = self._client_credentials(header, args)
        if client_id != self.oauth_client_id:
            return api_err("invalid_client_id")
        if client_secret != self.oauth_client_secret:
            return api_err("bad_client_secret")
        if args.get("grant_type") not in (None, "", "authorization_code"):
            return api_err("invalid_grant_type")
        grant = self.grants.get(str(args.get("code") or ""))
        if grant is None or grant.used:
            return api_err("invalid_code")
        if grant.redirect_uri is not None and args.get("redirect_uri") != grant.redirect_uri:
            return api_err("bad_redirect_uri")
        grant.used = True
        ws = self.workspaces[grant.team]
        n = next(self._token_seq)
        body: dict[str, Any] = {}
        bot_token: str | None = None
        if grant.scopes:
            bot_token = f"xoxb-{ws.id}-{n}"
            self.tokens[bot_token] = Token(
                bot_token, ws.id, "bot", ws.bot_user, ws.bot_id, set(grant.scopes)
            )
            body.update(
                access_token=bot_token,
                token_type="bot",
                scope=",".join(grant.scopes),
                bot_user_id=ws.bot_user,
            )
        authed_user: dict[str, Any] = {"id": grant.user}
        user_token: str | None = None
        if grant.user_scopes:
            user_token = f"xoxp-{ws.id}-{grant.user}-{n}"
            self.tokens[user_token] = Token(
                user_token, ws.id, "user", grant.user, None, set(grant.user_scopes)
            )
            authed_user.update(
                scope=",".join(grant.user_scopes), access_token=user_token, token_type="user"
            )
        body.update(
            app_id=self.oauth_app_id,
            team={"id": ws.id, "name": ws.name},
            enterprise=None,
            authed_user=authed_user,
            is_enterprise_install=False,
        )
        self.installs.append(
            Install(
                ws.id,
                grant.code,
                bot_token,
                ws.bot_user,
                ws.bot_id,
                list(grant.scopes),
                grant.user,
                user_token,
                list(grant.user_scopes),
                {"ok": True, **body},
            )
        )
        return api_ok(**body)

    # -- Web API methods about tokens ------------------------------------------------

    async def _auth_test(self, args: dict[str, Any]) -> web.Response:
        token = self.caller()
        ws = self.workspaces.get(token.team) or self.workspaces[DEFAULT_TEAM]
        body: dict[str, Any] = {
            "url": ws.url,
            "team": ws.name,
            "user": "gemini" if token.kind == "bot" else token.user.lower(),
            "team_id": token.team,
            "user_id": token.user,
        }
        if token.kind == "bot":
            body["bot_id"] = token.bot_id
        body["is_enterprise_install"] = False
        return web.json_response(
            {"ok": True, **body},
            headers={"x-oauth-scopes": ",".join(sorted(self.scopes_of(token)))},
        )

    async def _auth_revoke(self, args: dict[str, Any]) -> web.Response:
        token = self.caller()
        if str(args.get("test", "")).lower() not in ("1", "true"):
            self._revoke([token])
        return api_ok(revoked=True)


__all__ = [
    "APP_ID",
    "INSTALLER",
    "OAUTH_CLIENT_ID",
    "OAUTH_CLIENT_SECRET",
    "_CALLER",
    "Grant",
    "Install",
    "OAuthMixin",
    "Token",
    "Workspace",
    "envelope",
]
