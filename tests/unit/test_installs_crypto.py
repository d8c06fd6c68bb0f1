"""Bot tokens at rest: encrypted before the store sees them, readable under any listed key,
re-encrypted under the newest on read, and refused once their key is dropped."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Installation

from adapters.slack.installs import SlackInstalls
from bot.crypto import Cipher, UnreadableSecret, check_keys
from bot.settings import SettingsError, load_settings
from storage.memory import MemoryStore

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
TOKEN = "xoxb-1234-secret-token"


def install(team: str = "T1") -> Installation:
    return Installation(
        team_id=team,
        bot_token=TOKEN,
        bot_id="B1",
        bot_user_id="U0BOT",
        bot_scopes=["chat:write", "commands"],
        user_id="U1ADA",
    )


async def test_the_store_never_sees_the_token_in_plaintext() -> None:
    store = MemoryStore()
    installs = SlackInstalls(store, Cipher([OLD]))
    await installs.async_save(install())
    kept = await store.get_installation("slack", "T1")
    assert kept is not None and TOKEN not in kept.token and kept.token.startswith("gAAAAA")
    assert kept.scopes == "chat:write,commands" and kept.installer_id == "U1ADA"
    bot = await installs.bot("T1")
    assert bot is not None and (bot.token, bot.bot_user, bot.bot_id) == (TOKEN, "U0BOT", "B1")
    found = await installs.async_find_bot(enterprise_id=None, team_id="T1")
    assert found is not None and found.bot_token == TOKEN


async def test_rotation_reads_under_the_old_key_and_rewrites_under_the_new() -> None:
    store = MemoryStore()
    await SlackInstalls(store, Cipher([OLD])).async_save(install())
    before = await store.get_installation("slack", "T1")
    rotating = SlackInstalls(store, Cipher([NEW, OLD]))  # new key first, old still listed
    bot = await rotating.bot("T1")
    assert bot is not None and bot.token == TOKEN
    after = await store.get_installation("slack", "T1")
    assert before is not None and after is not None and after.token != before.token
    rotated = SlackInstalls(store, Cipher([NEW]))  # the old key dropped: still readable
    assert (await rotated.bot("T1")) is not None
    # A key dropped too soon: the workspace reads as not installed, logged once.
    stranger = SlackInstalls(store, Cipher([Fernet.generate_key().decode()]))
    assert await stranger.bot("T1") is None
    assert await stranger.bot("T1") is None
    with pytest.raises(UnreadableSecret):
        Cipher([NEW]).decrypt(Cipher([OLD]).encrypt(TOKEN))


async def test_delete_and_states() -> None:
    store = MemoryStore()
    installs = SlackInstalls(store, Cipher([OLD]))
    await installs.async_save(install())
    await installs.async_delete_all(enterprise_id=None, team_id="T1")
    assert await installs.bot("T1") is None
    state = await installs.async_issue()
    assert await installs.async_consume(state)
    assert not await installs.async_consume(state)


def test_keys_are_checked_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_keys(f" {NEW} , {OLD} ") == [NEW, OLD]
    with pytest.raises(ValueError, match="key 2 is not a Fernet key"):
        check_keys(f"{NEW},not-a-key")
    monkeypatch.setenv("ENCRYPTION_KEYS", "hunter2")
    with pytest.raises(SettingsError) as err:
        load_settings()
    [line] = err.value.problems
    assert line.startswith("ENCRYPTION_KEYS:") and "Fernet.generate_key" in line
    assert "hunter2" not in line  # a key is never echoed


def test_the_oauth_install_names_what_it_still_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET", "ENCRYPTION_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_CLIENT_ID", "1111.2222")
    problems = load_settings().oauth_problems()
    assert [p.split(":")[0] for p in problems] == [
        "SLACK_CLIENT_SECRET",
        "SLACK_SIGNING_SECRET",
        "ENCRYPTION_KEYS",
    ]
    assert load_settings().platforms_enabled()[0] == "slack"
