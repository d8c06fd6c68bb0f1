"""`gemini-bot console` /summarize and /catchup: the console has no channel history, so they
summarise the thread's stored conversation (subprocess, fake Gemini, real client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.catchup_helpers import citing_every, is_map, transcript_lines
from tests.e2e.test_console import Console
from tests.fakes.gemini import FakeGemini, Reply


@pytest.fixture
def console(fake_gemini: FakeGemini, tmp_path: Path) -> Console:
    return Console(fake_gemini, tmp_path)


async def test_summarize_and_catchup_read_the_stored_thread(console: Console) -> None:
    console.fake.enqueue(Reply(["Blue whales."]), Reply(["About 30 metres."]))
    console.fake.responder = citing_every
    code, out, err = await console.run(
        "What is the largest animal?",
        "How long is it?",
        "/summarize",
        "/catchup 1h",
        "/catchup soon",
        "/catchup since my last message",
        args=("--thread", "whales"),
    )
    assert code == 0, err
    summaries = [r for r in console.fake.generate_requests() if is_map(r)]
    assert len(summaries) == 3
    assert [t for _, t in transcript_lines(summaries[:1]).values()] == [
        "What is the largest animal?",
        "Blue whales.",
        "How long is it?",
        "About 30 metres.",
    ]
    assert "Summary of the thread whales: 4 messages" in out
    assert "- Blue whales. [2]" in out  # [N] cites the Nth message of the thread
    assert "Catch-up on the thread whales, the last 1 hour: 4 messages" in out
    assert "I could not read 'soon'" in err
    # Since my last message: only the reply to it.
    assert [t for _, t in transcript_lines(summaries[2:]).values()] == ["About 30 metres."]
    # The summaries were not added to the conversation.
    assert [t.text for t in await console.history("whales")] == [
        "What is the largest animal?",
        "Blue whales.",
        "How long is it?",
        "About 30 metres.",
    ]
