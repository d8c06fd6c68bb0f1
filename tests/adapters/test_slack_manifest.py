"""slack-manifest.yml names every command, shortcut, event and scope the code relies on."""

from __future__ import annotations

from adapters.slack.commands import COMMANDS, SHORTCUTS
from adapters.slack.oauth import BOT_SCOPES
from tests.conftest import ROOT

MANIFEST = (ROOT / "slack-manifest.yml").read_text()


def test_commands_and_shortcuts() -> None:
    commands, shortcuts = list(COMMANDS), list(SHORTCUTS)
    assert commands and shortcuts
    for c in commands:
        assert f"- command: {c}\n" in MANIFEST, c
    for s in shortcuts:
        assert f"callback_id: {s}\n" in MANIFEST, s


def test_the_oauth_install_asks_for_the_manifests_bot_scopes() -> None:
    bot = MANIFEST.split("    bot:\n", 1)[1].split("settings:", 1)[0]
    listed = [line.split("#")[0].strip()[2:].strip() for line in bot.splitlines() if "- " in line]
    assert sorted(listed) == sorted(BOT_SCOPES)
    assert "/slack/oauth_redirect" in MANIFEST


def test_events_and_scopes() -> None:
    for event in (
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "app_uninstalled",
        "tokens_revoked",
    ):
        assert f"- {event}\n" in MANIFEST, event
    for scope in (
        "app_mentions:read",
        "chat:write",
        "commands",
        "files:read",
        "files:write",  # generated images, charts and long code (files.getUploadURLExternal)
        "channels:read",  # catch-up: conversations.info / members
        "groups:read",
        "users:read",
        "channels:history",
        "im:history",
    ):
        assert f"- {scope} " in MANIFEST or f"- {scope}\n" in MANIFEST, scope
