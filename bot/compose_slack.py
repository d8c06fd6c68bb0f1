"""Composition of the Slack adapter: one workspace (SLACK_BOT_TOKEN) or the OAuth install
for many (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, ENCRYPTION_KEYS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.access import AccessPolicy
from bot.commands import Commands
from bot.crypto import Cipher
from bot.engine import ConversationEngine
from bot.facade import Core
from bot.http import HttpServer
from bot.settings import Settings

if TYPE_CHECKING:
    from adapters.slack import SlackAdapter

SLACK_API = "https://slack.com/api/"


def build_slack(
    settings: Settings,
    *,
    engine: ConversationEngine,
    commands: Commands,
    access: AccessPolicy,
    http: HttpServer,
) -> SlackAdapter:
    """The Slack adapter, its routes mounted on the HTTP server in HTTP mode."""
    from adapters.slack import SlackAdapter
    from adapters.slack.installs import SlackInstalls
    from adapters.slack.oauth import oauth_settings

    problems = settings.oauth_problems()
    if not settings.SLACK_CLIENT_ID and not (
        settings.SLACK_APP_TOKEN or settings.SLACK_SIGNING_SECRET
    ):
        problems.append(
            "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
            "SLACK_SIGNING_SECRET (HTTP mode at /slack/events) is"
        )
    if problems:
        from bot.compose import StartupError

        raise StartupError(*problems)
    installs = oauth = None
    token = settings.SLACK_BOT_TOKEN.get_secret_value() if settings.SLACK_BOT_TOKEN else None
    if settings.SLACK_CLIENT_ID and settings.SLACK_CLIENT_SECRET:
        installs = SlackInstalls(engine.store, Cipher(settings.encryption_keys))
        oauth = oauth_settings(
            client_id=settings.SLACK_CLIENT_ID,
            client_secret=settings.SLACK_CLIENT_SECRET.get_secret_value(),
            installs=installs,
            api_url=settings.SLACK_API_URL or SLACK_API,
        )
        token = None  # every workspace's token comes from its install
    slack = SlackAdapter(
        core=Core(engine),
        commands=commands,
        access=access,
        bot_token=token,
        installs=installs,
        oauth=oauth,
        forget_on_uninstall=settings.SLACK_UNINSTALL_CONVERSATIONS == "delete",
        signing_secret=settings.SLACK_SIGNING_SECRET.get_secret_value()
        if settings.SLACK_SIGNING_SECRET
        else None,
        app_token=settings.SLACK_APP_TOKEN.get_secret_value() if settings.SLACK_APP_TOKEN else None,
        api_url=settings.SLACK_API_URL,
        native_streaming=settings.SLACK_STREAM_MODE == "native",
        require_mention=settings.SLACK_REQUIRE_MENTION,
        max_file_bytes=settings.ATTACHMENT_MAX_BYTES,
    )
    if not settings.SLACK_APP_TOKEN:
        slack.mount(http.app)
    return slack
