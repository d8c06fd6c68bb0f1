"""A real PostgreSQL server for the tests: Debian's server binaries, a fresh cluster in a
temp directory, on a free port of 127.0.0.1, stopped (and its files removed) at the end.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user
that Debian's package creates. Where no server binaries exist, `find_bindir()` is None:
the fixture then skips with one line on how to get them, except in CI (CI set), where a
missing server is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

HOW_TO_GET = (
    "PostgreSQL server binaries not found: `apt-get install postgresql` (Debian) or set "
    "PG_BINDIR to the directory holding initdb and postgres"
)
START_LIMIT_S = 30.0
T = TypeVar("T")


def find_bindir() -> Path | None:
    """The directory of initdb and postgres: PG_BINDIR, else the newest Debian one."""
    given = os.environ.get("PG_BINDIR")
    if given:
        return Path(given) if (Path(given) / "initdb").exists() else None

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def run_apart(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end on an event loop of its own thread: these fixtures may be asked
    for from inside a running loop (an async fixture choosing its store), where
    asyncio.run() is refused."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def admin(server_url: str, sql: str) -> None:
    """Run one administrative statement (CREATE/DROP DATABASE) on the server."""

    async def run() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_apart(run())


def create_database(server_url: str) -> str:
    """A new, empty database on the server at `server_url`; returns its URL."""
    name = f"t_{uuid.uuid4().hex}"
    admin(server_url, f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(server_url: str, url: str) -> None:
    """Drop the database at `url` (made by create_database), closing its connections."""
    admin(server_url, f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throwaway PostgreSQL cluster; `url` is its DSN (user postgres, database
    postgres, trust authentication on 127.0.0.1 only)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _as_owner(self) -> tuple[int, int] | None:
        """The uid/gid to run the server as: `postgres` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        user = pwd.getpwnam("postgres")
        return user.pw_uid, user.pw_gid

    def _run(self, *args: str, owner: tuple[int, int] | None) -> subprocess.Popen[bytes]:
        assert self._dir is not None
        with (self._dir / "server.log").open("ab") as out:
            if owner is None:
                return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=owner[0],
                group=owner[1],
                extra_groups=[],
            )

    def start(self) -> None:
        """initdb, then postgres; returns once it accepts connections."""
        owner = self._as_owner()
        self._dir = Path(tempfile.mkdtemp(prefix="gemini-bot-pg-"))
        data = self._dir / "data"
        if owner is not None:
            os.chown(self._dir, *owner)
        init = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            owner=owner,
        )
        if init.wait() != 0:
            raise RuntimeError(f"initdb failed: see {self._dir / 'server.log'}")
        self._proc = self._run(
            str(self.bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self._dir}",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
            owner=owner,
        )
        run_apart(self._until_ready())

    async def _until_ready(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + START_LIMIT_S
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: see {self._dir}/server.log")
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
                await conn.close()
                return
            except (OSError, asyncpg.PostgresError):
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.05)  # a deadline bounds this wait for a process

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, unlike SIGTERM's smart one),
        then remove the cluster's files."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
