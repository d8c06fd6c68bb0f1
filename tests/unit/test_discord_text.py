from __future__ import annotations

from adapters.discord.text import MAX_THREAD_NAME, readable, thread_name


def test_thread_name_is_one_clean_line_within_discords_limit() -> None:
    assert thread_name("  **Why** is `x` slow?\nmore lines") == "Why is x slow?"
    assert thread_name("see https://example.com/a/b now") == "see link now"
    assert thread_name("\n\n") == "Gemini"
    long = thread_name("word " * 60)
    assert len(long) <= MAX_THREAD_NAME and long.endswith("…") and "wor…" not in long


def test_readable_drops_the_bots_mention_and_names_people() -> None:
    text = "<@9> ask <@!5> about <#7> and <@&3> :) <:tea:123>"
    assert readable(text, bot_id="9", names={"5": "Bob"}) == (
        "ask @Bob about #channel and @role :) :tea:"
    )


def test_links_posted_without_embeds_are_unwrapped_for_the_model() -> None:
    text = "<@9> what does <https://example.com/a?b=1> say? and [docs](<https://d.test/x>)"
    assert readable(text, bot_id="9", names={}) == (
        "what does https://example.com/a?b=1 say? and [docs](https://d.test/x)"
    )
