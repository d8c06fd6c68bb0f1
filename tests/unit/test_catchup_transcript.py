"""Transcripts: thread grouping, numbering, pieces within a budget, and references -> links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.catchup import ChannelMessage, FileRef, Read, Subject, Transcript, compose
from bot.catchup.summarise import Summary, Tally
from bot.catchup.transcript import MAX_MESSAGE_TOKENS, cited, link_references

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def msg(i: int, text: str = "", *, thread: int | None = None, **kw: object) -> ChannelMessage:
    return ChannelMessage(
        id=str(i),
        author=str(kw.pop("author", "Ada")),
        text=text or f"message {i}",
        at=T0 + timedelta(minutes=i),
        link=f"https://x.test/{i}",
        thread_id=str(thread) if thread is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def test_threads_follow_their_first_message_and_are_numbered_in_order() -> None:
    messages = [
        msg(1, "ship friday?"),
        msg(2, "lunch?"),
        msg(3, "yes", thread=1, author="Bob"),
        msg(4, "reply to an old thread", thread=0),
        msg(5, "ok then", thread=1, author="Gemini", bot=True),
        msg(1, "duplicate of 1 is ignored"),
    ]
    t = Transcript(messages)
    assert [line.text for line in t.lines] == [
        "[m1] 2026-11-29 10:01 Ada: ship friday?",
        "[m2] ↳[m1] 2026-11-29 10:03 Bob: yes",
        "[m3] ↳[m1] 2026-11-29 10:05 Gemini (bot): ok then",
        "[m4] 2026-11-29 10:02 Ada: lunch?",
        "[m5] ↳[earlier] 2026-11-29 10:04 Ada: reply to an old thread",
    ]
    assert len(t) == 5
    assert t.links()["m2"] == "https://x.test/3"


def test_files_are_named_and_long_messages_cut() -> None:
    long = "word " * (MAX_MESSAGE_TOKENS * 2)
    t = Transcript(
        [
            msg(1, "see", files=(FileRef("plan.pdf", 10), FileRef("a.png", 5))),
            msg(2, long),
        ]
    )
    first, second = t.lines
    assert first.text.endswith("see [files: plan.pdf, a.png]")
    assert second.text.endswith("… (message cut here)")
    assert second.tokens <= MAX_MESSAGE_TOKENS + 30


def test_pieces_fit_the_budget_and_keep_threads_whole() -> None:
    messages = [msg(i, "x" * 40) for i in range(0, 100, 10)]
    messages += [msg(i, "y" * 40, thread=0) for i in range(1, 6)]
    t = Transcript(messages)
    per_line = t.lines[0].tokens
    pieces = t.pieces(per_line * 7)
    assert sum(len(p) for p in pieces) == len(t)
    assert all(sum(line.tokens for line in p) <= per_line * 7 for p in pieces)
    # The thread (root + 5 replies) is in the first piece, whole.
    assert [line.ref for line in pieces[0]] == ["m1", "m2", "m3", "m4", "m5", "m6"]
    # A thread larger than a piece is split at messages.
    assert len(t.pieces(per_line * 2)) >= 8


def test_references_become_platform_links_and_unknown_ones_vanish() -> None:
    links = {"m1": "https://x.test/1", "m2": "https://x.test/2", "m3": ""}

    def render(refs: object) -> str:
        return "(" + ", ".join(f"{n}<{u}>" for n, u in refs) + ")"  # type: ignore[attr-defined]

    text = (
        "- Ship Friday [m1]\n- Lunch [m1, m2]\n- Both [m2][m1]\n- Paren (m2)\n"
        "- Made up [m99]\n- Mixed [m99, m2]\n- Not a ref [x] [m1 said] [m3]"
    )
    assert link_references(text, links=links, render=render) == (
        "- Ship Friday (1<https://x.test/1>)\n"
        "- Lunch (1<https://x.test/1>, 2<https://x.test/2>)\n"
        "- Both (2<https://x.test/2>, 1<https://x.test/1>)\n"
        "- Paren (2<https://x.test/2>)\n"
        "- Made up\n"
        "- Mixed (2<https://x.test/2>)\n"
        "- Not a ref [x] [m1 said] (3<>)"
    )
    assert cited(text) == ["m1", "m2", "m99", "m3"]


def test_answer_header_notes_and_empty_window() -> None:
    t = Transcript([msg(1), msg(2, thread=1)])
    summary = Summary("- Point [m2]", t, pieces=3, levels=1, tally=Tally(4, 1200, 80, True))
    subject = Subject("channel", "#general", "the last 2 days")
    answer = compose(
        summary,
        subject=subject,
        read=Read(capped="newest", cap=2, threads=1),
        render=lambda refs: " ".join(f"<{u}|{n}>" for n, u in refs),
    )
    assert answer.header == "Catch-up on #general, the last 2 days: 2 messages, 1 thread"
    assert answer.body == "- Point <https://x.test/2|2>"
    assert "Only the newest 2 messages" in answer.notes[0]
    assert "output limit" in answer.notes[1]
    assert answer.notes[2] == (
        "Read in 3 parts with 4 Gemini requests: 1,200 input and 80 output tokens."
    )
    empty = compose(
        Summary("", Transcript([]), pieces=0, levels=0),
        subject=subject,
        read=Read(),
        render=lambda refs: "",
    )
    assert empty.body == "Nothing was said in #general in the last 2 days."
    assert empty.notes == ()


def test_model_markup_is_made_inert_on_each_platform() -> None:
    from adapters.discord.catchup import render_refs as discord_refs
    from adapters.discord.catchup import safe_model_text as discord_safe
    from adapters.slack.catchup import render_refs as slack_refs
    from adapters.slack.catchup import safe_model_text as slack_safe

    model = "**Ship** it <https://evil.test|click> <!here> & [docs](https://evil.test/x) [m1]"
    links = {"m1": "https://chat.test/1"}
    z = "\u200b"  # URLs the model wrote stay readable but cannot be clicked
    assert link_references(slack_safe(model), links=links, render=slack_refs) == (
        f"*Ship* it &lt;https:{z}//evil.test|click&gt; &lt;!here&gt; &amp; "
        f"[docs](https:{z}//evil.test/x) (<https://chat.test/1|1>)"
    )
    assert link_references(discord_safe(model), links=links, render=discord_refs) == (
        f"**Ship** it <https:{z}//evil.test|click> <!here> & docs (https:{z}//evil.test/x) "
        "([1](<https://chat.test/1>))"
    )
    assert discord_safe("see www.evil.test") == f"see www{z}.evil.test"
