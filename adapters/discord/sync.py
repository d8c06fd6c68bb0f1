"""Sync the app commands only when they changed since the last successful sync.

Discord rate-limits command syncs (bulk overwrites) per application, and a restart loop
(deploys, a crash, the supervisor) would spend them on nothing. We keep a fingerprint of
what was last synced in the store's meta table: the application id, the scope (global or
one guild) and every command's payload as JSON, sorted. Start-up compares and skips the
PUT when it matches. A failed sync stores nothing, so the next start tries again.

Commands edited by hand outside this bot (another deployment of the same application) are
not seen here; delete the `discord:app_commands` meta row (or change the scope) to force it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

import discord
from discord import app_commands

log = logging.getLogger(__name__)

META_KEY = "discord:app_commands"


class MetaStore(Protocol):
    """The two Store methods this module needs."""

    async def get_meta(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    async def set_meta(self, key: str, value: str) -> None:
        """Store a value."""
        ...


def fingerprint(
    tree: app_commands.CommandTree[Any], *, guild: discord.Object | None, application_id: int | None
) -> str:
    """sha256 of the application, the scope and the commands' payloads (order-free)."""
    payloads = sorted(
        json.dumps(command.to_dict(tree), sort_keys=True, default=str)
        for command in tree.get_commands(guild=guild)
    )
    doc = {
        "application": application_id,
        "scope": f"guild:{guild.id}" if guild is not None else "global",
        "commands": payloads,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


async def sync_if_changed(
    tree: app_commands.CommandTree[Any],
    *,
    guild: discord.Object | None,
    application_id: int | None,
    meta: MetaStore,
) -> bool:
    """Sync (globally, or to `guild`) unless the same commands were synced before.

    True when a sync was made. Errors of the sync are the caller's to handle.
    """
    print_ = fingerprint(tree, guild=guild, application_id=application_id)
    try:
        if await meta.get_meta(META_KEY) == print_:
            log.info("discord: app commands unchanged since the last sync; not syncing")
            return False
    except Exception:
        log.exception("discord: could not read the last command sync; syncing")
    synced = await tree.sync(guild=guild)
    log.info("discord: %d app commands synced", len(synced))
    try:
        await meta.set_meta(META_KEY, print_)
    except Exception:
        # Harmless: the next start syncs once more.
        log.exception("discord: could not record the command sync")
    return True
