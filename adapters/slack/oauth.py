"""The multi-workspace install: Bolt's OAuth flow on our HTTP server and database.

`/slack/install` gives the browser an "Add to Slack" page whose link carries a one-time
state (stored in the database, so any replica can check it, and in a cookie);
`/slack/oauth_redirect` exchanges Slack's code for the workspace's bot token
(oauth.v2.access), which SlackInstalls encrypts and stores. The consent page is Slack's
own, on the host of SLACK_API_URL (slack.com, or GovSlack's).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.slack.installs import SlackInstalls

# The bot scopes of slack-manifest.yml (a test keeps the two the same).
BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "channels:read",
    "groups:read",
    "im:read",
    "mpim:read",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "users:read",
)
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


def authorization_url(api_url: str) -> str:
    """Slack's consent page beside its Web API: https://slack.com/api/ gives
    https://slack.com/oauth/v2/authorize."""
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}/oauth/v2/authorize"


def oauth_settings(
    *, client_id: str, client_secret: str, installs: SlackInstalls, api_url: str
) -> AsyncOAuthSettings:
    """Bolt's OAuth settings on our stores."""
    return AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorization_url(api_url),
        installation_store=installs,
        installation_store_bot_only=True,
        state_store=installs,
    )


def mount_oauth(app: web.Application, flow: AsyncOAuthFlow) -> None:
    """Serve the install page and the redirect on the service's HTTP server."""

    def bolt(request: web.Request) -> AsyncBoltRequest:
        return AsyncBoltRequest(body="", query=request.query_string, headers=dict(request.headers))

    async def install(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_installation(bolt(request)))

    async def redirect(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_callback(bolt(request)))

    app.router.add_get(flow.install_path, install)
    app.router.add_get(flow.redirect_uri_path, redirect)
