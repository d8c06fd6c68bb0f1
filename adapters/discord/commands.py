"""The bot's app commands: summaries and catch-up, persona and tools, forget, usage, help."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from adapters.discord.catchup import DiscordCatchup
from bot.errors import BotError
from bot.settings import TOOLS
from bot.types import ThreadKey

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

QUIET = discord.AllowedMentions.none()
HELP = [
    ("@mention", "start a thread (or, in a thread, a conversation) with a question"),
    ("+persona at the start", "pick a persona for the thread, e.g. `@Gemini +coder ...`"),
    ("/summarize file: [focus:]", "summarise an attached file in a new thread"),
    ("/summarize in a thread", "summarise the whole thread, just for you"),
    ("Apps → Summarize attachments", "summarise the files of any message"),
    ("Apps → Summarize thread", "summarise the thread a message is in, just for you"),
    ("/catchup [since:]", "what you missed here (24h; or 3d, 12h, 2026-11-28, 'my last message')"),
    ("/persona [name] [scope]", "list personas, pick one for this thread or the channel"),
    ("/tools [tool:] [state:]", "the Gemini tools here; admins switch one for the channel"),
    ("/forget", "forget this thread's conversation"),
    ("/gemini-usage", "your usage today"),
]


async def say(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer (a follow-up once the interaction was deferred)."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=QUIET)


async def guard(adapter: DiscordAdapter, interaction: discord.Interaction) -> bool:
    """False (and says why) when the access policy refuses the user or channel."""
    if not adapter.allowed(interaction):
        await say(interaction, "You are not allowed to use this bot here.")
        return False
    return True


def register_commands(adapter: DiscordAdapter, tree: app_commands.CommandTree[Any]) -> None:
    """The bot's slash commands and its message context menus."""
    _summaries(adapter, tree)
    _persona(adapter, tree)
    _tools(adapter, tree)
    _threads_and_info(adapter, tree)


def _summaries(adapter: DiscordAdapter, tree: app_commands.CommandTree[Any]) -> None:
    """/summarize, /catchup and the two summary menus."""
    catchups = DiscordCatchup(adapter)

    @tree.command(
        name="summarize", description="Summarise an attached file, or (in a thread) the thread"
    )
    @app_commands.describe(
        file="the file to summarise (leave out in a thread to summarise the thread)",
        focus="what to pay attention to",
    )
    async def summarize_cmd(
        interaction: discord.Interaction, file: discord.Attachment | None = None, focus: str = ""
    ) -> None:
        if not await guard(adapter, interaction):
            return
        if file is not None:
            await adapter.summarize(interaction, [file], focus, None)
        elif isinstance(interaction.channel, discord.Thread):
            await catchups.thread(interaction, interaction.channel, focus=focus)
        else:
            await say(
                interaction,
                "Attach a file (file:), or use /summarize inside a thread to summarise it.",
            )

    @tree.context_menu(name="Summarize attachments")
    async def summarize_menu(interaction: discord.Interaction, message: discord.Message) -> None:
        if await guard(adapter, interaction):
            await adapter.summarize(interaction, list(message.attachments), "", message)

    @tree.context_menu(name="Summarize thread")
    async def summarize_thread_menu(
        interaction: discord.Interaction, message: discord.Message
    ) -> None:
        if await guard(adapter, interaction):
            await catchups.thread_of(interaction, message)

    @tree.command(name="catchup", description="What you missed in this channel (only you see it)")
    @app_commands.describe(
        since="24h by default; or 90m, 12h, 3d, 1w, 2026-11-28, 'since my last message'"
    )
    async def catchup_cmd(interaction: discord.Interaction, since: str = "") -> None:
        if await guard(adapter, interaction):
            await catchups.catchup(interaction, since)

    _ = (summarize_cmd, summarize_menu, summarize_thread_menu, catchup_cmd)


def _persona(adapter: DiscordAdapter, tree: app_commands.CommandTree[Any]) -> None:
    """/persona: list personas, pick one for the thread or (admins) the channel."""
    commands = adapter.commands

    async def persona_names(
        _interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=name, value=name)
            for name in commands.persona_names()
            if current.lower() in name.lower()
        ][:25]

    @tree.command(name="persona", description="List personas, or pick one for this thread")
    @app_commands.describe(name="persona to use", scope="this thread, or the channel's default")
    @app_commands.autocomplete(name=persona_names)
    @app_commands.choices(
        scope=[
            app_commands.Choice(name="thread", value="thread"),
            app_commands.Choice(name="channel", value="channel"),
        ]
    )
    async def persona_cmd(
        interaction: discord.Interaction, name: str = "", scope: str = "thread"
    ) -> None:
        if not await guard(adapter, interaction):
            return
        channel = interaction.channel
        key = adapter.key_for(channel, interaction.guild_id)
        try:
            if not name:
                await say(interaction, await commands.list_personas(key))
            elif scope == "channel":
                parent = getattr(channel, "parent_id", None) or getattr(channel, "id", "")
                text = await commands.set_channel_persona(
                    platform="discord",
                    workspace_id=str(interaction.guild_id or "dm"),
                    channel_id=str(parent),
                    name=name,
                    is_admin=adapter.is_admin(interaction),
                )
                await say(interaction, text)
            elif key is None:
                await say(
                    interaction,
                    "Use /persona inside a thread, or pick the channel default with scope:channel.",
                )
            else:
                await wait_for_thread(adapter, interaction, key)
                await say(interaction, await commands.set_thread_persona(key, name))
        except BotError as exc:
            await say(interaction, exc.user_message)

    _ = persona_cmd


def _tools(adapter: DiscordAdapter, tree: app_commands.CommandTree[Any]) -> None:
    """/tools: the channel's Gemini tools; admins switch one."""
    commands = adapter.commands

    @tree.command(name="tools", description="The Gemini tools in this channel; admins switch one")
    @app_commands.describe(tool="the tool to switch", state="on or off (admins)")
    @app_commands.choices(
        tool=[app_commands.Choice(name=t, value=t) for t in TOOLS],
        state=[app_commands.Choice(name=s, value=s) for s in ("on", "off")],
    )
    async def tools_cmd(interaction: discord.Interaction, tool: str = "", state: str = "") -> None:
        if not await guard(adapter, interaction):
            return
        channel = interaction.channel
        parent = getattr(channel, "parent_id", None) or getattr(channel, "id", "")
        try:
            text = await commands.tools.command(
                platform="discord",
                workspace_id=str(interaction.guild_id or "dm"),
                channel_id=str(parent),
                args=f"{state} {tool}" if tool and state else tool or state,
                is_admin=adapter.is_admin(interaction),
            )
        except BotError as exc:
            text = exc.user_message
        await say(interaction, text)

    _ = tools_cmd


def _threads_and_info(adapter: DiscordAdapter, tree: app_commands.CommandTree[Any]) -> None:
    """/forget, /gemini-usage and /gemini-help."""
    commands = adapter.commands

    @tree.command(name="forget", description="Forget this thread's conversation")
    async def forget_cmd(interaction: discord.Interaction) -> None:
        if not await guard(adapter, interaction):
            return
        key = adapter.key_for(interaction.channel, interaction.guild_id)
        if key is None:
            await say(interaction, "Use /forget inside one of my threads or in a DM.")
            return
        await wait_for_thread(adapter, interaction, key)
        await say(interaction, await commands.forget(key))

    @tree.command(name="gemini-usage", description="Your usage today")
    async def usage_cmd(interaction: discord.Interaction) -> None:
        await say(interaction, await commands.usage("discord", str(interaction.user.id)))

    @tree.command(name="gemini-help", description="What this bot does and how to use it")
    async def help_cmd(interaction: discord.Interaction) -> None:
        await say(interaction, commands.help(commands=HELP))

    _ = (forget_cmd, usage_cmd, help_cmd)


async def wait_for_thread(
    adapter: DiscordAdapter, interaction: discord.Interaction, key: ThreadKey
) -> None:
    """Defer first when a reply holds the thread: /forget and /persona wait for it, which
    can take longer than Discord's 3 s to answer an interaction."""
    if adapter.commands.busy(key):
        await interaction.response.defer(ephemeral=True, thinking=True)
