"""Installations and OAuth states: the SQL both engines share (SQLite's `?` placeholders;
PostgreSQL's stores number them with `numbered()`), and the row conversion."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Any

from bot.types import Installation

INSTALL_COLS = (
    "platform, workspace_id, enterprise_id, bot_user_id, bot_id, token, scopes, "
    "installer_id, installed_at"
)
SAVE_INSTALLATION = (
    f"INSERT INTO installations ({INSTALL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (platform, workspace_id) DO UPDATE SET enterprise_id=excluded.enterprise_id, "
    "bot_user_id=excluded.bot_user_id, bot_id=excluded.bot_id, token=excluded.token, "
    "scopes=excluded.scopes, installer_id=excluded.installer_id, "
    "installed_at=excluded.installed_at"
)
GET_INSTALLATION = f"SELECT {INSTALL_COLS} FROM installations WHERE platform=? AND workspace_id=?"
DELETE_INSTALLATION = (
    "DELETE FROM installations WHERE platform=? AND workspace_id=? RETURNING workspace_id"
)
REPLACE_TOKEN = (
    "UPDATE installations SET token=? WHERE platform=? AND workspace_id=? AND token=? "
    "RETURNING workspace_id"
)
FORGET_WORKSPACE = "DELETE FROM conversations WHERE platform=? AND workspace_id=? RETURNING id"
ISSUE_STATE = (
    "INSERT INTO oauth_states (state, expires_at) VALUES (?, ?) "
    "ON CONFLICT (state) DO UPDATE SET expires_at=excluded.expires_at"
)
CONSUME_STATE = "DELETE FROM oauth_states WHERE state=? RETURNING expires_at"
PRUNE_STATES = "DELETE FROM oauth_states WHERE expires_at < ?"


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, ..."""
    n = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)


def install_params(i: Installation, installed_at: Any) -> tuple[Any, ...]:
    """SAVE_INSTALLATION's parameters (`installed_at` in the engine's form)."""
    return (
        i.platform,
        i.workspace_id,
        i.enterprise_id,
        i.bot_user_id,
        i.bot_id,
        i.token,
        i.scopes,
        i.installer_id,
        installed_at,
    )


def installation_from_row(row: Any) -> Installation:
    """An Installation from a row of INSTALL_COLS."""
    platform, ws, ent, user, bot, token, scopes, installer, at = tuple(row)
    when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    return Installation(platform, ws, user, bot, token, scopes, ent, installer, when)
