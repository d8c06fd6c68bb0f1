"""Platform-neutral commands: summarize (files, threads, catch-ups), persona, forget, usage,
help.

Adapters parse their platform's command syntax and call these; each returns the text to
show the user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bot.catchup import (
    Answer,
    ChannelMessage,
    FileRef,
    Progress,
    Read,
    Render,
    Subject,
    Summariser,
    Window,
    compose,
)
from bot.engine.locks import ThreadLocks
from bot.errors import AccessDenied, BotError
from bot.gate import ThreadGate
from bot.personas import PersonaRegistry
from bot.ports import Store
from bot.tools import ToolPolicy
from bot.types import FilePart, ThreadKey, Usage

SUMMARIZE_PERSONA = "summarizer"


def summarize_prompt(focus: str = "") -> str:
    """The user message sent with files to summarise."""
    text = "Summarise the attached file(s)."
    if focus.strip():
        text += f" Focus on: {focus.strip()}"
    return text


class Commands:
    """The commands every adapter offers, on one store and persona registry."""

    def __init__(
        self,
        *,
        store: Store,
        personas: PersonaRegistry,
        locks: ThreadGate | ThreadLocks | None = None,
        summariser: Summariser | None = None,
        tools: ToolPolicy | None = None,
    ) -> None:
        self.store = store
        # The engine's tool policy: what a channel switches off here, its turns stop sending.
        self.tools = tools or ToolPolicy(store)
        self.personas = personas
        # The engine's thread locks: a command that changes a thread waits for the reply in
        # flight there, so it can never write into a thread that was just forgotten.
        self.locks = locks if locks is not None else ThreadLocks()
        self._summariser = summariser

    @property
    def summariser(self) -> Summariser:
        """Catch-up and thread summaries (BotError when the service was built without)."""
        if self._summariser is None:
            raise BotError("no summariser", user_message="Summaries are not enabled here.")
        return self._summariser

    @property
    def max_messages(self) -> int:
        """CATCHUP_MAX_MESSAGES: most messages one catch-up or thread summary reads."""
        return self.summariser.max_messages

    def summarize_persona(self) -> str | None:
        """The persona /summarize uses: `summarizer` when defined, else the thread's own."""
        return SUMMARIZE_PERSONA if self.personas.has(SUMMARIZE_PERSONA) else None

    def busy(self, key: ThreadKey) -> bool:
        """True while a reply holds the thread here (a command on it will wait)."""
        return self.locks.busy(key)

    def persona_names(self) -> list[str]:
        """Every persona's name, in the operators' order."""
        return [p.name for p in self.personas.all()]

    async def list_personas(self, key: ThreadKey | None = None) -> str:
        """All personas, marking the thread's and the channel's choice."""
        thread = channel = None
        if key is not None:
            conv = await self.store.get_conversation(key)
            thread = conv.persona if conv else None
            channel = await self.store.get_channel_persona(
                key.platform, key.workspace_id, key.channel_id
            )
        current = self.personas.resolve(thread=thread, channel=channel).name
        lines = ["Personas:"]
        for p in self.personas.all():
            tags = []
            if p.name == current:
                tags.append("this thread")
            if p.name == channel:
                tags.append("channel default")
            if p.name == self.personas.default:
                tags.append("default")
            tag = f" ({', '.join(tags)})" if tags else ""
            lines.append(f"• {p.name}{tag}: {p.description}")
        return "\n".join(lines)

    async def set_thread_persona(self, key: ThreadKey, name: str) -> str:
        """Pick a persona for one thread (anyone in it may)."""
        persona = self.personas.get(name)
        async with self.locks.hold(key):
            await self.store.set_thread_persona(key, persona.name)
        return f"This thread now uses the {persona.name} persona."

    async def set_channel_persona(
        self, *, platform: str, workspace_id: str, channel_id: str, name: str, is_admin: bool
    ) -> str:
        """Set the channel default (admins only); `name` "default" clears it."""
        if not is_admin:
            raise AccessDenied(user_message="Only admins can set a channel's default persona.")
        if name.lower() in ("default", "none", "reset"):
            await self.store.set_channel_persona(platform, workspace_id, channel_id, None)
            return f"This channel now uses the default persona ({self.personas.default})."
        persona = self.personas.get(name)
        await self.store.set_channel_persona(platform, workspace_id, channel_id, persona.name)
        return f"New threads in this channel now use the {persona.name} persona."

    async def forget(self, key: ThreadKey) -> str:
        """Delete a thread's stored conversation; the thread stays joined, starting afresh."""
        async with self.locks.hold(key):
            if await self.store.forget(key):
                # An empty conversation remains, so the bot does not re-read the platform's
                # copy of the thread as context for an "unjoined" thread: forgotten is
                # forgotten.
                await self.store.get_or_create_conversation(key)
                return "Forgotten. The next message here starts a fresh conversation."
        return "There was nothing stored for this thread."

    async def usage(self, platform: str, user_id: str) -> str:
        """Today's usage for one user."""
        day = datetime.now(UTC).date().isoformat()
        u = await self.store.get_usage(platform, user_id, day=day)
        text = (
            f"Today ({day} UTC): {u.turns} repl{'y' if u.turns == 1 else 'ies'}, "
            f"{u.prompt_tokens:,} input tokens, {u.output_tokens:,} output tokens"
        )
        # Gemini counts tool results apart from the prompt; cached tokens are part of it.
        if u.tool_tokens:
            text += f", {u.tool_tokens:,} tokens of tool results (search, links, code)"
        if u.cached_tokens:
            text += f"; {u.cached_tokens:,} of the input tokens came from Gemini's cache"
        return text + "."

    async def summarise(
        self,
        messages: Sequence[ChannelMessage],
        *,
        platform: str,
        user_id: str,
        subject: Subject,
        read: Read,
        render: Render,
        progress: Progress | None = None,
        with_files: bool = False,
        clean: Callable[[str], str] | None = None,
    ) -> Answer:
        """Summarise messages a platform read (a channel's window or a thread) for one
        user; the Gemini tokens count toward that user's usage. `render` and `clean`: see
        bot.catchup.compose."""
        summary = await self.summariser.summarise(
            messages, subject=subject, progress=progress, with_files=with_files
        )
        t = summary.tally
        if t.requests:
            day = datetime.now(UTC).date().isoformat()
            usage = Usage(prompt_tokens=t.input_tokens, output_tokens=t.output_tokens)
            await self.store.add_usage(platform, user_id, day=day, usage=usage)
        if clean is None:
            return compose(summary, subject=subject, read=read, render=render)
        return compose(summary, subject=subject, read=read, render=render, clean=clean)

    async def stored_messages(
        self, key: ThreadKey, *, window: Window | None = None, user_id: str = ""
    ) -> tuple[list[ChannelMessage], Read]:
        """A stored conversation's turns as messages (newest CATCHUP_MAX_MESSAGES), from
        `window` on: for a place with no platform history to read (the console)."""
        conv = await self.store.get_conversation(key)
        if conv is None:
            return [], Read()
        history = await self.store.load_history(conv.id, token_budget=10**9)
        turns = [t for t in history.turns if t.status != "pending" and t.parts]
        if window is not None and window.since_own:
            own = [t for t in turns if t.role == "user" and t.author and t.author.id == user_id]
            turns = [t for t in turns if t.seq > own[-1].seq] if own else turns
        elif window is not None and window.start is not None:
            turns = [t for t in turns if t.created_at >= window.start]
        cap = self.max_messages
        read = Read(capped="newest", cap=cap) if len(turns) > cap else Read()
        messages = [
            ChannelMessage(
                id=str(t.seq),
                author=t.author.name if t.author else "Gemini",
                text=t.text,
                at=t.created_at,
                files=tuple(
                    FileRef(p.name, p.size, p.mime_type) for p in t.parts if isinstance(p, FilePart)
                ),
                bot=t.role == "model",
            )
            for t in turns[-cap:]
        ]
        return messages, read

    def help(self, *, commands: list[tuple[str, str]]) -> str:
        """Help text; `commands` lists the platform's own syntax and what each does."""
        lines = [
            "I answer with Gemini. Mention me to start a thread; reply in the thread to go on.",
            "Attach images, PDFs, audio, video or text files and I will read them.",
            "",
        ]
        lines += [f"{syntax}: {what}" for syntax, what in commands]
        lines.append("")
        lines.append(f"Personas: {', '.join(self.personas.names)}")
        return "\n".join(lines)
