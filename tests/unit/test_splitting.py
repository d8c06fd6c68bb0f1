from __future__ import annotations

import pytest

from bot.splitting import open_fence_at, split_message


def test_short_text_is_not_split() -> None:
    assert split_message("hello", 100) == ("hello", "")


def test_prefers_paragraph_break() -> None:
    text = "a" * 60 + "\n\n" + "b" * 30 + "\n" + "c" * 40
    head, rest = split_message(text, 100)
    assert head == "a" * 60 + "\n\n" + "b" * 30 or head == "a" * 60
    assert len(head) <= 100
    assert (head + "\n" + rest).replace("\n", "") == text.replace("\n", "")


def test_paragraph_in_second_half_wins_over_later_line() -> None:
    text = "x" * 55 + "\n\n" + "y" * 20 + "\n" + "z" * 60
    head, rest = split_message(text, 100)
    assert head == "x" * 55
    assert rest.startswith("y")


def test_splits_at_word_boundary_without_newlines() -> None:
    words = " ".join(f"w{i:03d}" for i in range(60))
    head, rest = split_message(words, 100)
    assert len(head) <= 100
    assert not head.endswith(" ") and not rest.startswith(" ")
    assert (head + " " + rest) == words


def test_hard_cut_when_no_boundary() -> None:
    text = "x" * 250
    head, rest = split_message(text, 100)
    assert len(head) <= 100
    assert head + rest == text


def test_code_block_is_closed_and_reopened() -> None:
    code = "\n".join(f"line {i}" for i in range(40))
    text = "```python\n" + code + "\n```"
    head, rest = split_message(text, 100)
    assert len(head) <= 100
    assert head.endswith("\n```")
    assert rest.startswith("```python\n")
    assert open_fence_at(head) is None


def test_split_before_code_block_when_it_fits_better() -> None:
    prose = "Intro paragraph " * 4
    text = prose.strip() + "\n\n```\n" + "code\n" * 30 + "```"
    head, _rest = split_message(text, 100)
    assert open_fence_at(head) is None


@pytest.mark.parametrize("limit", [50, 100, 2000])
def test_every_piece_fits(limit: int) -> None:
    text = ("para " * 50 + "\n\n```js\n" + "let x = 1;\n" * 100 + "```\n") * 3
    pieces = []
    while text:
        head, text = split_message(text, limit)
        pieces.append(head)
    assert all(len(p) <= limit for p in pieces)
    assert all(p.count("```") % 2 == 0 for p in pieces)
