"""`gemini-bot migrate` on PostgreSQL, as an operator runs it: a postgresql:// DATABASE_URL,
the password never printed, and a database written by a newer release refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from storage.pg_migrations import PG_MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]


def with_password(url: str, password: str) -> str:
    """`url` with a password (the test server trusts 127.0.0.1, so any password works)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


def migrate(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DISCORD_", "GEMINI_", "DATABASE_"))
    }
    env.update(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_migrate_applies_every_migration_and_hides_the_password(
    database: str, tmp_path: Path
) -> None:
    url = with_password(database, "s3cr3t-pw")
    done = migrate(url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert ", ".join(name for name, _ in PG_MIGRATIONS) in done.stdout
    assert "postgresql://postgres@127.0.0.1" in done.stdout
    assert "s3cr3t-pw" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()  # nothing on the local disk
    again = migrate(url, tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout


async def test_a_database_from_a_newer_release_is_refused_in_one_line(
    database: str, tmp_path: Path
) -> None:
    assert migrate(database, tmp_path).returncode == 0
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("INSERT INTO _migrations VALUES ('999_future', now())")
    finally:
        await conn.close()
    refused = migrate(database, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "gemini-bot: database has migrations this version does not know: 999_future "
        "(was it written by a newer gemini-bot?)"
    ]
