"""Terminal adapter: chat with the same engine and store from stdin/stdout.

Works interactively and piped: one line is one message; the process ends at end of input.
Commands: /attach PATH, /persona [NAME], /forget, /new, /usage, /summarize, /catchup
[SINCE], /help.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bot.catchup import Subject, parse_since
from bot.commands import Commands
from bot.errors import BotError
from bot.facade import Core
from bot.markup import PLAIN
from bot.ports import Budget, OutFile, TargetDefaults
from bot.types import Attachment, Author, IncomingMessage, ThreadKey

CONSOLE_BUDGET = Budget("console", rate=float("inf"), burst=1_000_000)
HELP = [
    ("/attach PATH", "attach a file to your next message"),
    ("/persona [NAME]", "list personas, or use NAME in this thread"),
    ("/tools [on|off TOOL]", "the Gemini tools here, or switch one"),
    ("/forget", "forget this thread's history"),
    ("/new", "start a new thread"),
    ("/usage", "your usage today"),
    ("/summarize", "summarise this thread"),
    ("/catchup [SINCE]", "summarise this thread's last 24h (or 3d, 12h, a date, my last message)"),
    ("/help", "this help"),
]


class ConsoleTarget(TargetDefaults):
    """Streams a reply to a text stream, printing only what is new."""

    max_chars = 10_000_000
    budget = CONSOLE_BUDGET
    markup = PLAIN  # a terminal shows URLs as they are

    def __init__(self, out: TextIO, number: int, files_dir: Path | None = None) -> None:
        self._out = out
        self._printed: dict[int, str] = {}
        self._number = number
        self._ids: list[str] = []
        self._files_dir = files_dir

    @property
    def message_ids(self) -> Sequence[str]:
        """Pseudo ids, one per printed part."""
        return self._ids

    async def start(self) -> None:
        """Nothing to show before the first text."""

    async def show(self, text: str, *, part: int) -> None:
        """Print the new suffix of `text`."""
        before = self._printed.get(part)
        if before is None:
            self._ids.append(f"console:{self._number}.{part}")
            before = ""
        if text.startswith(before):
            self._out.write(text[len(before) :])
        elif "\n" not in before and len(before) <= 80:  # a status line, now replaced
            self._out.write("\n" + text)
        else:  # the final text with source markers: printed again in full
            self._out.write("\n\n" + text)
        self._out.flush()
        self._printed[part] = text

    async def finish(self, text: str, *, part: int) -> None:
        """Print the rest and end the line."""
        await self.show(text, part=part)
        self._out.write("\n")
        self._out.flush()

    async def fail(self, user_message: str) -> None:
        """Print the failure note on its own line."""
        self._out.write(f"[!] {user_message}\n")
        self._out.flush()

    async def status(self, line: str) -> bool:
        """Shown in the reply itself."""
        return False

    async def attach(self, files: Sequence[OutFile]) -> None:
        """Save each file and print where it is (a terminal cannot show an image)."""
        folder = self._files_dir or Path(tempfile.gettempdir()) / "gemini-bot-files"
        for f in files:
            path = folder / f"{self._number}-{f.name}"
            await asyncio.to_thread(_save, path, f.data)
            self._out.write(f"[file] {f.name} ({f.mime_type}, {len(f.data):,} bytes): {path}\n")
        self._out.flush()


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def new_thread_name() -> str:
    """A fresh, readable thread name."""
    return datetime.now(UTC).strftime("t%Y%m%d-%H%M%S-") + os.urandom(2).hex()


async def read_lines(stream: TextIO) -> AsyncIterator[str]:
    """Lines of `stream` without blocking the loop (pipes natively, else a reader thread)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):
        mode = 0
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
        while raw := await reader.readline():
            yield raw.decode("utf-8", errors="replace")
        return
    # Terminals and regular files: a pipe transport would put a TTY in non-blocking mode
    # (breaking stdout), and files are not supported by it; a thread reads instead.
    while line := await asyncio.to_thread(stream.readline):
        yield line


class ConsoleAdapter:
    """The engine in a terminal."""

    name = "console"

    def __init__(
        self,
        *,
        core: Core,
        commands: Commands,
        thread: str | None = None,
        persona: str | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.core = core
        self.files_dir = files_dir
        self.commands = commands
        self.thread = thread or new_thread_name()
        self._persona = persona
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        user = getpass.getuser()
        self.author = Author(id=user, name=user)
        self._pending: list[Attachment] = []
        self._count = 0
        self._closed = False
        self._tty: bool | None = None

    @property
    def connected(self) -> bool:
        """The terminal is always connected."""
        return not self._closed

    @property
    def key(self) -> ThreadKey:
        """The current thread."""
        return ThreadKey("console", "local", "console", self.thread)

    def _info(self, text: str) -> None:
        self._err.write(text + "\n")
        self._err.flush()

    def _interactive(self) -> bool:
        # Asked once: a pipe transport closes stdin at end of input.
        if self._tty is None:
            try:
                self._tty = self._in.isatty()
            except ValueError:
                self._tty = False
        return self._tty

    async def run(self) -> None:
        """Read messages until end of input."""
        self._interactive()
        self._info(f"thread: {self.thread}  (resume later with --thread {self.thread}; /help)")
        if self._persona:
            await self._command(f"/persona {self._persona}")
        if self._interactive():
            self._err.write("> ")
            self._err.flush()
        async for raw in read_lines(self._in):
            if self._closed:
                break
            line = raw.rstrip("\r\n")
            if line.startswith("/"):
                await self._command(line)
            elif line.strip() or self._pending:
                await self._send(line)
            if self._interactive():
                self._err.write("> ")
                self._err.flush()

    async def aclose(self) -> None:
        """Stop reading."""
        self._closed = True

    async def _send(self, text: str) -> None:
        self._count += 1
        message = IncomingMessage(
            key=self.key,
            author=self.author,
            text=text,
            attachments=tuple(self._pending),
            event_id=None,
        )
        self._pending = []
        await self.core.handle(message, ConsoleTarget(self._out, self._count, self.files_dir))

    async def _command(self, line: str) -> None:
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        try:
            if name == "attach":
                self._attach(arg)
            elif name == "persona":
                if arg:
                    self._info(await self.commands.set_thread_persona(self.key, arg))
                else:
                    self._info(await self.commands.list_personas(self.key))
            elif name == "tools":  # the console's operator is its admin
                self._info(
                    await self.commands.tools.command(
                        platform="console",
                        workspace_id=self.key.workspace_id,
                        channel_id=self.key.channel_id,
                        args=arg,
                        is_admin=True,
                    )
                )
            elif name == "forget":
                self._info(await self.commands.forget(self.key))
            elif name == "new":
                self.thread = new_thread_name()
                self._pending = []
                self._info(f"thread: {self.thread}")
            elif name in ("summarize", "catchup"):
                await self._summarise(catchup=name == "catchup", arg=arg)
            elif name == "usage":
                self._info(await self.commands.usage("console", self.author.id))
            elif name == "help":
                self._info(self.commands.help(commands=HELP))
            else:
                self._info(f"Unknown command /{name}. Try /help.")
        except BotError as exc:
            self._info(exc.user_message)

    async def _summarise(self, *, catchup: bool, arg: str) -> None:
        """/summarize and /catchup: the console has no channel history, so they summarise
        this thread's stored conversation (for /catchup, its window); [N] cites turn N."""
        window = parse_since(arg, now=datetime.now(UTC)) if catchup else None
        messages, read = await self.commands.stored_messages(
            self.key, window=window, user_id=self.author.id
        )
        name = f"the thread {self.thread}"
        subject = Subject(
            "channel" if catchup else "conversation", name, window.label if window else ""
        )
        self._info(f"Summarising {len(messages):,} message{'' if len(messages) == 1 else 's'}…")
        answer = await self.commands.summarise(
            messages,
            platform="console",
            user_id=self.author.id,
            subject=subject,
            read=read,
            render=lambda refs: "[" + ", ".join(label for label, _ in refs) + "]",
        )
        body = "\n\n".join([answer.header, answer.body, *answer.notes])
        self._out.write(body + "\n")
        self._out.flush()

    def _attach(self, arg: str) -> None:
        if not arg:
            self._info("Usage: /attach PATH")
            return
        path = Path(arg).expanduser()
        try:
            size = path.stat().st_size
        except OSError as exc:
            self._info(f"Cannot attach {arg}: {exc.strerror}.")
            return
        if not path.is_file():
            self._info(f"Cannot attach {arg}: not a file.")
            return

        async def fetch() -> bytes:
            return await asyncio.to_thread(path.read_bytes)

        self._pending.append(Attachment(name=path.name, fetch=fetch, size=size))
        self._info(f"Attached {path.name} ({size:,} bytes); it goes with your next message.")
