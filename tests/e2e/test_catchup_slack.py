"""Catch-up proofs with `gemini-bot run` as its own process (Slack in HTTP mode) on the
fakes: a 300-message thread reaches the model whole; `/catchup 2d` on 5,000 messages is
summarised in parts, every point linked, shown only to the requester, and refused to a
non-member."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.adapters.slack_process import SlackServiceProcess
from tests.catchup_helpers import (
    SLACK_LINK,
    is_map,
    is_reduce,
    summarising,
    transcript_lines,
)
from tests.fakes.gemini import FakeGemini
from tests.fakes.slack import BOT_USER, FakeSlack, SlackDriver
from tests.helpers import until

C = "C1GEN"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def final(fake: FakeSlack, driver: SlackDriver) -> str:
    rid = driver.last_response_url.rsplit("/", 1)[1]
    mine = [r for r in fake.responses if r["id"] == rid]
    return str(mine[-1]["text"]) if mine and mine[-1].get("replace_original") else ""


async def test_a_300_message_thread_reaches_the_model_whole(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.add_channel(C, "general")
    now = time.time() - 36_000
    [root] = fake_slack.seed(C, count=1, start=now, text=lambda i: "thread root")
    # 119 replies the bot never answered (with the root, 120), then 90 questions it did.
    humans = fake_slack.seed(
        C, count=119, start=now + 10, step=10, thread_ts=root.ts, text=lambda i: f"human {i}"
    )
    asked = fake_slack.seed(
        C,
        count=180,
        start=now + 2000,
        step=10,
        thread_ts=root.ts,
        user_cycle=["U2BOB", BOT_USER],
        text=lambda i: f"ask {i // 2}" if i % 2 == 0 else f"answer {i // 2}",
    )
    fake_slack.attach_file(humans[5], "notes.txt", b"ship on friday", "text/plain")
    fake_slack.attach_file(asked[6], "chart.png", PNG, "image/png")
    fake_gemini.responder = summarising
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        await driver.command("/summarize", fake_slack.permalink(C, humans[50].ts))
        await until(lambda: final(fake_slack, driver), limit=30)
        await driver.close()
    [req] = fake_gemini.generate_requests()
    lines = transcript_lines([req])
    texts = [t.split(" [files:")[0] for _, t in lines.values()]
    expected = ["thread root", *(f"human {i}" for i in range(119))]
    expected += [f"{w} {i}" for i in range(90) for w in ("ask", "answer")]
    assert sorted(texts) == sorted(expected)  # all 300, each once
    assert sum(author == "Gemini (bot)" for author, _ in lines.values()) == 90
    assert sum("[files: " in t for _, t in lines.values()) == 2
    assert sorted(req.inline_mimes()) == ["image/png", "text/plain"]
    text = final(fake_slack, driver)
    assert text.startswith("*Summary of the thread in #general: 300 messages*")
    assert len(SLACK_LINK.findall(text)) == 3
    assert "Traceback" not in service.stderr()


async def test_catchup_of_5000_messages_in_parts_linked_and_only_for_the_requester(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.add_channel(C, "general", members={"U1ADA", "U2BOB", BOT_USER})
    now = time.time()
    fake_slack.seed(C, count=50, start=now - 5 * 86400, step=60, text=lambda i: f"old {i}")
    msgs = fake_slack.seed(
        C, count=4990, start=now - 47 * 3600, step=33, text=lambda i: f"message {i}"
    )
    fake_slack.seed(
        C, count=10, start=now - 600, step=10, thread_ts=msgs[4000].ts, text=lambda i: f"re {i}"
    )
    fake_gemini.responder = summarising
    env = {"HISTORY_TOKEN_BUDGET": "20000", "CATCHUP_MAX_MESSAGES": "6000"}
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path, **env) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        await driver.command("/catchup", "2d", user="U2BOB")
        bob = driver.last_response_url
        await until(lambda: final(fake_slack, driver), limit=60)
        text = final(fake_slack, driver)
        asked = len(fake_gemini.generate_requests())
        await driver.command("/catchup", "2d", user="U3CAT")
        await until(
            lambda: any(
                r["id"] == driver.last_response_url.rsplit("/", 1)[1] for r in fake_slack.responses
            ),
            limit=30,
        )
        refused = fake_slack.responses[-1]
        await driver.close()
    reqs = fake_gemini.generate_requests()
    assert len(reqs) == asked  # the refusal cost no model request
    maps, reduces = [r for r in reqs if is_map(r)], [r for r in reqs if is_reduce(r)]
    assert len(maps) >= 3 and reduces and reqs[-1] is reduces[-1]
    assert all(sum(len(t) for t in r.texts()) // 4 <= 20_000 for r in reqs)
    lines = transcript_lines(reqs)
    assert len(lines) == 5000 and not any(t.startswith("old ") for _, t in lines.values())
    # The final request combines the parts; the answer cites messages from every part.
    assert reqs[-1].texts()[1].count("Part ") >= 2
    assert text.startswith("*Catch-up on #general, the last 2 days: 5,000 messages, 1 thread*")
    by_text = {m.text: m for m in fake_slack.messages.values()}
    links = SLACK_LINK.findall(text)
    assert len(links) >= 3 * len(maps) - 2
    for url, label in links:
        m = by_text[lines[f"m{label}"][1]]
        assert url == fake_slack.permalink(C, m.ts)
    # Only Bob saw it: ephemeral through his response_url; nothing posted anywhere.
    bob_id = bob.rsplit("/", 1)[1]
    assert {r["response_type"] for r in fake_slack.responses if r["id"] == bob_id} == {"ephemeral"}
    assert not fake_slack.calls_to("chat.postMessage") and not fake_slack.ephemerals
    assert refused["response_type"] == "ephemeral"
    assert re.match(r"You are not a member of #general", refused["text"])
    assert fake_slack.count_429() == 0
