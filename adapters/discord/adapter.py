"""DiscordAdapter: discord.py events and app commands -> the conversation engine.

A mention in a text channel opens a thread from the message (or, where the bot may not
create threads, a reply chain); messages in that thread, or replies in the chain, go on
without a mention; DMs are always answered. Replies stream into messages edited within
Discord's budgets (see target.py). Conversations are keyed
`("discord", guild id or "dm", parent channel id, thread id or root message id)`.

With `shard_count` set (DISCORD_SHARD_COUNT: a number or "auto") the bot is sharded
(shards.py): it runs the shards `shard_ids` (DISCORD_SHARD_IDS; all by default), and
`health_parts()` lists each of them for /healthz.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import discord
import yarl

from adapters.discord.client import DiscordBot
from adapters.discord.commands import register_commands
from adapters.discord.ratelimits import bucket_wait
from adapters.discord.shards import ShardedDiscordBot
from adapters.discord.sync import MetaStore, sync_if_changed
from adapters.discord.target import GLOBAL_PER_S, DiscordReplyTarget, global_budget
from adapters.discord.text import readable, thread_name
from bot.access import AccessPolicy
from bot.commands import Commands, summarize_prompt
from bot.facade import Core
from bot.personas import take_persona
from bot.types import Attachment, Author, IncomingMessage, ThreadKey

log = logging.getLogger(__name__)

CHAIN_HOPS = 25  # how far up a reply chain we look for the message that started it


class DiscordAdapter:
    """The Discord side of the service."""

    name = "discord"

    def __init__(
        self,
        *,
        core: Core,
        commands: Commands,
        access: AccessPolicy,
        token: str,
        api_url: str | None = None,
        gateway_url: str | None = None,
        sync_guild: str | None = None,
        max_file_bytes: int = 50 * 1024 * 1024,
        global_per_second: int = GLOBAL_PER_S,
        meta: MetaStore,
        shard_count: int | Literal["auto"] | None = None,
        shard_ids: Sequence[int] | None = None,
    ) -> None:
        self.core = core
        self.commands = commands
        self.access = access
        self._token = token
        self.api_url = api_url
        self.gateway_url = gateway_url
        self.sync_guild = sync_guild
        self.max_file_bytes = max_file_bytes
        self.global_budget = global_budget(global_per_second)
        self.meta = meta
        if shard_ids and not isinstance(shard_count, int):
            raise ValueError("shard_ids need a shard_count that is a number")
        self.shard_count = shard_count
        self.shard_ids = tuple(shard_ids) if shard_ids else None
        self.bot = self._new_bot()
        self._runs = 0
        self._preparing = 0
        # Bot message id -> conversation of a reply chain (rebuilt by walking after restart).
        self._chains: dict[int, ThreadKey] = {}
        # Threads being joined by a mention whose conversation is not stored yet.
        self._joining: set[ThreadKey] = set()

    # -- lifecycle ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the gateway session is up (READY or RESUMED, not dropped)."""
        return self.bot.connected

    @property
    def can_edit(self) -> bool:
        """True once logged in: REST works then, while the gateway (every shard of it) may
        take minutes more to connect; recovering a reply needs only REST."""
        return self.bot.user is not None and not self.bot.is_closed()

    def health_parts(self) -> dict[str, bool]:
        """Each shard this process runs ("discord:shard:0"...) and whether it is up; empty
        without sharding."""
        return {f"discord:shard:{i}": up for i, up in self.bot.shard_states().items()}

    @property
    def preparing(self) -> int:
        """Messages received but not yet handed to the engine."""
        return self._preparing

    def _configure_endpoints(self) -> None:
        # discord.py reads these class attributes; one Discord adapter per process.
        if self.api_url:
            discord.http.Route.BASE = self.api_url.rstrip("/")
        if self.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    async def run(self) -> None:
        """Log in, connect and serve until aclose(); run again after a failure."""
        self._configure_endpoints()
        self._runs += 1
        if self._runs > 1:
            # A client that failed keeps its HTTP session and registered commands: a new one.
            await self.bot.close()
            self.bot = self._new_bot()
        await self.bot.start(self._token)

    def _new_bot(self) -> DiscordBot:
        if self.shard_count is None:
            return DiscordBot(self)
        count = None if self.shard_count == "auto" else self.shard_count
        return ShardedDiscordBot(self, shard_count=count, shard_ids=self.shard_ids)

    async def aclose(self) -> None:
        """Disconnect."""
        await self.bot.close()

    async def setup(self, bot: DiscordBot) -> None:
        """Register the app commands; sync them (to one guild, when configured) if changed."""
        register_commands(self, bot.tree)
        guild = discord.Object(id=int(self.sync_guild)) if self.sync_guild else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        try:
            await sync_if_changed(
                bot.tree, guild=guild, application_id=bot.application_id, meta=self.meta
            )
        except (discord.HTTPException, discord.app_commands.AppCommandError, KeyError, ValueError):
            # Mentions and DMs work without commands; the next start tries again.
            log.exception("discord: could not sync app commands")

    # -- messages ----------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """Answer a message if it is addressed to the bot or in one of its conversations."""
        self._preparing += 1
        try:
            await self._prepare(message)
        except Exception:
            log.exception("discord: could not handle message %s", message.id)
        finally:
            self._preparing -= 1

    def _roles(self, user: discord.abc.User) -> list[str]:
        return [str(r.id) for r in getattr(user, "roles", [])]

    async def _prepare(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.author.id == me.id:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        channel = message.channel
        mentioned = any(u.id == me.id for u in message.mentions)
        reference: discord.Message | None = None
        where: discord.abc.Messageable
        key: ThreadKey | None = None  # None: a thread is to be made from this message
        if isinstance(channel, discord.DMChannel):
            key = ThreadKey("discord", "dm", str(channel.id), str(channel.id))
            where, access_channel = channel, str(channel.id)
        elif isinstance(channel, discord.Thread):
            key = ThreadKey(
                "discord", str(channel.guild.id), str(channel.parent_id), str(channel.id)
            )
            if mentioned:
                self._joining.add(key)  # before any await: a quick follow-up must see it
            elif key not in self._joining and not await self.core.knows(key):
                return
            where, access_channel = channel, str(channel.parent_id)
        elif isinstance(channel, discord.TextChannel):
            chained = await self._chain_of(message)
            access_channel = str(channel.id)
            if chained is not None:
                key, where, reference = chained, channel, message
            elif mentioned:
                where = channel
            else:
                return
        else:
            return
        if not self.access.allows(
            "discord", str(message.author.id), access_channel, self._roles(message.author)
        ) or not await self.core.claim("discord", str(message.id)):  # not a gateway replay
            if key is not None:
                self._joining.discard(key)
            return
        names = {str(u.id): u.display_name for u in message.mentions}
        text = readable(message.content, bot_id=str(me.id), names=names)
        persona, text = (
            take_persona(text)
            if mentioned or isinstance(channel, discord.DMChannel)
            else (None, text)
        )
        try:
            if key is None:
                assert isinstance(channel, discord.TextChannel)
                key, where, reference = await self._answer_place(
                    channel, thread_from=message, reply_to=message, prompt=text
                )
                if reference is None:
                    self._joining.add(key)
            if key in self._joining:
                # Joined from now on, durably; the engine would create it only when its turn
                # runs.
                await self.core.join(key)
                self._joining.discard(key)
        except BaseException:
            self.core.release("discord", str(message.id))  # a redelivery may try again
            raise
        target = self._target(where, key, reference, new_thread=where is not channel)
        incoming = IncomingMessage(
            key=key,
            author=Author(str(message.author.id), message.author.display_name),
            text=text,
            attachments=tuple(self._attachment(a) for a in message.attachments),
            event_id=str(message.id),
            persona=persona,
        )
        self.core.submit(incoming, target)

    def _target(
        self,
        where: discord.abc.Messageable,
        key: ThreadKey,
        reference: discord.Message | discord.PartialMessage | None,
        *,
        new_thread: bool = False,
    ) -> DiscordReplyTarget:
        async def remember(msg: discord.Message) -> None:
            if reference is not None:
                self._chains[msg.id] = key

        channel_id = getattr(where, "id", key.channel_id)
        return DiscordReplyTarget(
            channel=where,
            channel_id=channel_id,
            scheduler=self.core.pacer,
            reference=reference,
            on_message=remember,
            new_thread=new_thread,
            global_limit=self.global_budget,
            gauge=lambda: bucket_wait(self.bot.http, channel_id),
        )

    async def recovery_target(
        self, key: ThreadKey, message_ids: Sequence[str]
    ) -> DiscordReplyTarget:
        """A target over a reply a crashed process left behind: its messages are edited,
        or a new one is posted in the thread (or reply chain) if none exist."""
        channel_id = int(key.channel_id)
        if key.workspace_id != "dm":
            # A thread's id is a channel; a reply chain's is its root message in the channel.
            try:
                found = self.bot.get_channel(int(key.thread_id)) or await self.bot.fetch_channel(
                    int(key.thread_id)
                )
                if isinstance(found, discord.Thread):
                    channel_id = found.id
            except discord.HTTPException:
                pass
        where = self.bot.get_partial_messageable(channel_id)
        chain = channel_id != int(key.thread_id) and key.workspace_id != "dm"
        # A reply chain's new message replies to the chain's root, so the chain goes on
        # from it (here and, by its reference, after a restart).
        root = where.get_partial_message(int(key.thread_id)) if chain else None
        target = self._target(where, key, root)
        if chain:  # new messages of a reply chain continue that chain
            for mid in message_ids:
                self._chains[int(mid)] = key
        target.adopt([where.get_partial_message(int(mid)) for mid in message_ids])
        return target

    async def _answer_place(
        self,
        channel: discord.TextChannel,
        *,
        thread_from: discord.abc.Snowflake,
        reply_to: discord.Message,
        prompt: str,
    ) -> tuple[ThreadKey, discord.abc.Messageable, discord.Message | None]:
        """Where to answer in a text channel: a new thread from `thread_from`, or, where
        threads are not allowed, a reply chain rooted at `reply_to` (its reference)."""
        guild = str(channel.guild.id)
        thread = await self._open_thread(thread_from, channel, prompt)
        if thread is not None:
            return ThreadKey("discord", guild, str(channel.id), str(thread.id)), thread, None
        return ThreadKey("discord", guild, str(channel.id), str(reply_to.id)), channel, reply_to

    async def _open_thread(
        self, message: discord.abc.Snowflake, channel: discord.TextChannel, prompt: str
    ) -> discord.Thread | None:
        """A thread from the message, or None where the bot may not make one."""
        perms = channel.permissions_for(channel.guild.me)
        if not (perms.create_public_threads and perms.send_messages_in_threads):
            return None
        made: list[discord.Thread] = []

        async def create() -> None:
            # Through the channel: a followup (webhook) message carries no guild to do it.
            made.append(
                await channel.create_thread(
                    name=thread_name(prompt), message=message, auto_archive_duration=1440
                )
            )

        try:
            await self.core.pacer.call(self.global_budget, create)
        except (discord.Forbidden, discord.HTTPException) as exc:
            log.info("discord: no thread in %s (%s); answering as a reply", channel.id, exc)
            return None
        return made[0]

    async def _chain_of(self, message: discord.Message) -> ThreadKey | None:
        """The conversation of the reply chain this message continues, if any."""
        ref = message.reference
        hops = 0
        while ref is not None and ref.message_id is not None and hops < CHAIN_HOPS:
            hops += 1
            known = self._chains.get(ref.message_id)
            if known is not None:
                return known
            parent = await self._fetch(message.channel, ref)
            if parent is None or self.bot.user is None or parent.author.id != self.bot.user.id:
                return None  # a reply to someone else's message
            # The bot's message answers a user message: the chain's root, or a reply further on.
            up = parent.reference
            if up is None or up.message_id is None:
                return None
            key = ThreadKey(
                "discord",
                str(message.guild.id if message.guild else "dm"),
                str(message.channel.id),
                str(up.message_id),
            )
            if await self.core.knows(key):
                self._chains[parent.id] = key
                return key
            user_msg = await self._fetch(message.channel, up)
            ref = user_msg.reference if user_msg is not None else None
        return None

    async def _fetch(
        self, channel: discord.abc.Messageable, ref: discord.MessageReference
    ) -> discord.Message | None:
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        assert ref.message_id is not None
        cached = discord.utils.get(self.bot.cached_messages, id=ref.message_id)
        if cached is not None:
            return cached
        try:
            return await channel.fetch_message(ref.message_id)
        except discord.HTTPException:
            return None

    def _attachment(self, a: discord.Attachment) -> Attachment:
        return Attachment(name=a.filename, fetch=a.read, declared_mime=a.content_type, size=a.size)

    # -- commands ----------------------------------------------------------

    def key_for(self, channel: Any, guild_id: int | None) -> ThreadKey | None:
        """The conversation a command run in `channel` is about (a thread or a DM)."""
        if isinstance(channel, discord.Thread):
            return ThreadKey("discord", str(guild_id), str(channel.parent_id), str(channel.id))
        if isinstance(channel, discord.DMChannel) or guild_id is None:
            cid = str(getattr(channel, "id", ""))
            return ThreadKey("discord", "dm", cid, cid)
        return None

    def is_admin(self, interaction: discord.Interaction) -> bool:
        """Manage Channels, or listed in ADMIN_USERS (by user or role)."""
        user = interaction.user
        perms = getattr(interaction, "permissions", None)
        if perms is not None and (perms.manage_channels or perms.administrator):
            return True
        return self.access.is_admin("discord", str(user.id), self._roles(user))

    def allowed(self, interaction: discord.Interaction) -> bool:
        """Access rules for a command."""
        channel = interaction.channel
        cid = getattr(channel, "parent_id", None) or getattr(channel, "id", "")
        return self.access.allows(
            "discord", str(interaction.user.id), str(cid), self._roles(interaction.user)
        )

    async def summarize(
        self,
        interaction: discord.Interaction,
        files: Sequence[discord.Attachment],
        focus: str,
        source: discord.Message | None,
    ) -> None:
        """Deferred at once; the summary streams into a new thread (or the current one)."""
        await interaction.response.defer(thinking=True)
        if not files:
            await interaction.followup.send(
                "That message has no attachments to summarise.",
                allowed_mentions=discord.AllowedMentions.none(),
            )
            return
        names = ", ".join(f.filename for f in files)
        channel = interaction.channel
        header = await interaction.followup.send(
            f"Summarising {names}…", wait=True, allowed_mentions=discord.AllowedMentions.none()
        )
        where: discord.abc.Messageable
        reference: discord.Message | None = None
        if isinstance(channel, discord.TextChannel):
            key, where, reference = await self._answer_place(
                channel, thread_from=source or header, reply_to=header, prompt=f"Summary: {names}"
            )
        else:
            maybe = self.key_for(channel, interaction.guild_id)
            if maybe is None or channel is None:
                return
            key, where = maybe, channel  # type: ignore[assignment]
        target = self._target(where, key, reference)
        message = IncomingMessage(
            key=key,
            author=Author(str(interaction.user.id), interaction.user.display_name),
            text=summarize_prompt(focus),
            attachments=tuple(self._attachment(f) for f in files),
            event_id=f"interaction:{interaction.id}",
            persona=self.commands.summarize_persona(),
        )
        self.core.submit(message, target)
