"""Platform-neutral commands: summarize, persona, forget, usage, help.

Adapters parse their platform's command syntax and call these; each returns the text to
show the user.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.engine.locks import ThreadLocks
from bot.errors import AccessDenied
from bot.personas import PersonaRegistry
from bot.ports import Store
from bot.types import ThreadKey

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
        self, *, store: Store, personas: PersonaRegistry, locks: ThreadLocks | None = None
    ) -> None:
        self.store = store
        self.personas = personas
        # The engine's thread locks: a command that changes a thread waits for the reply in
        # flight there, so it can never write into a thread that was just forgotten.
        self.locks = locks if locks is not None else ThreadLocks()

    def summarize_persona(self) -> str | None:
        """The persona /summarize uses: `summarizer` when defined, else the thread's own."""
        return SUMMARIZE_PERSONA if self.personas.has(SUMMARIZE_PERSONA) else None

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
        return (
            f"Today ({day} UTC): {u.turns} repl{'y' if u.turns == 1 else 'ies'}, "
            f"{u.prompt_tokens:,} input tokens, {u.output_tokens:,} output tokens."
        )

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
