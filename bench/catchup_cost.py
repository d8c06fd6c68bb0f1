"""What a catch-up costs: `/catchup 2d` on a 5,000-message Slack channel.

The service runs as `gemini-bot run` in its own process (HTTP mode) on the fake Slack and
the fake Gemini, as deployed. The channel holds 5,000 messages over the last 47 hours
(plus 100 older ones outside the window) and 40 threads of 5 replies in the window. The
fake model answers a part with eight points citing its messages, and a combining request
with the points it was given (at most 15); it reports tokens as Gemini would (about four
characters a token). Each scenario runs a few times; wall time is from the slash command
to the answer replacing the progress note.

Scenarios: the default HISTORY_TOKEN_BUDGET (200,000: the window fits one request), and a
budget of 20,000 tokens, which forces map/reduce. The wall time is mostly Slack's Tier 3
pacing: 40 threads are 40 conversations.replies calls, at most about 45 a minute after a
burst of 10.

    .venv/bin/python -m bench.catchup_cost [--runs N]
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import pct, write
from bench.service_process import ServiceProcess
from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackDriver

C = "C1GEN"
MESSAGES = 5000
NOTE = re.compile(r"with (\d+) Gemini requests?: ([\d,]+) input and ([\d,]+) output tokens")
REF_LINE = re.compile(r"^\[(m\d+)\] (?:↳\[[^\]]+\] )?[\d-]+ [\d:]+ (.+?): (.*)$")


def summarise(rec: Recorded) -> Reply:
    """A stand-in for Gemini: eight cited points per part, up to 15 when combining."""
    texts = rec.texts()
    if "Summaries:" in texts[0]:
        points = [ln for ln in texts[1].splitlines() if ln.startswith("- ")]
        return Reply(["\n".join(points[:15])])
    lines = [m for m in (REF_LINE.match(ln) for ln in texts[1].splitlines()) if m]
    step = max(1, len(lines) // 8)
    points = [
        f"- {m.group(2)} discussed {m.group(3)[:60]}, and the team agreed on next steps "
        f"[{m.group(1)}]"
        for m in lines[::step][:8]
    ]
    return Reply(["\n".join(points)])


def seed(fake: FakeSlack) -> None:
    """5,000 messages in the window (40 of them with 5 replies each), 100 before it."""
    now = time.time()
    fake.add_channel(C, "general")
    fake.seed(C, count=100, start=now - 6 * 86400, step=60, text=lambda i: f"old message {i}")
    top = MESSAGES - 40 * 5
    msgs = fake.seed(
        C,
        count=top,
        start=now - 47 * 3600,
        step=47 * 3600 / top,
        text=lambda i: f"update {i} on the release: numbers, owners and the next date",
    )
    for t in range(40):
        parent = msgs[t * (top // 40)]
        fake.seed(
            C,
            count=5,
            start=float(parent.ts) + 30,
            step=5,
            thread_ts=parent.ts,
            text=lambda i, t=t: f"reply {i} in thread {t}: agreed",
        )


async def one_run(budget: int | None) -> dict[str, Any]:
    """One catch-up on fresh fakes and a fresh service."""
    gemini, fake = FakeGemini(), FakeSlack()
    await gemini.start()
    await fake.start()
    gemini.responder = summarise
    seed(fake)
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "CATCHUP_MAX_MESSAGES": str(MESSAGES + 1000),
    }
    if budget is not None:
        env["HISTORY_TOKEN_BUDGET"] = str(budget)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with ServiceProcess(gemini, Path(tmp), env) as service:
                driver = SlackDriver(fake, service.events_url)
                start = time.monotonic()
                await driver.command("/catchup", "2d")
                rid = driver.last_response_url.rsplit("/", 1)[1]
                text = await answer(fake, rid, limit=300)
                wall = time.monotonic() - start
                await driver.close()
    finally:
        await fake.close()
        await gemini.close()
    note = NOTE.search(text)
    if note is None:
        raise RuntimeError(f"no answer note in: {text[:300]}")
    return {
        "wall_s": wall,
        "requests": int(note.group(1)),
        "input_tokens": int(note.group(2).replace(",", "")),
        "output_tokens": int(note.group(3).replace(",", "")),
        "fake_requests": len(gemini.generate_requests()),
        "slack_reads": sum(c.method.startswith("conversations.") for c in fake.calls),
        "slack_429s": fake.count_429(),
        "answer_chars": len(text),
    }


async def answer(fake: FakeSlack, rid: str, *, limit: float) -> str:
    """The final ephemeral answer on that response_url."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        mine = [r for r in fake.responses if r["id"] == rid and r.get("replace_original")]
        if mine and NOTE.search(str(mine[-1].get("text"))):
            return str(mine[-1]["text"])
        await asyncio.sleep(0.05)
    raise RuntimeError("no answer in time")


async def scenario(name: str, budget: int | None, runs: int) -> dict[str, Any]:
    rows = [await one_run(budget) for _ in range(runs)]
    walls = [r["wall_s"] for r in rows]
    first = rows[0]
    return {
        "scenario": name,
        "runs": runs,
        "messages": MESSAGES,
        "requests": first["requests"],
        "input_tokens": first["input_tokens"],
        "output_tokens": first["output_tokens"],
        "slack_reads": first["slack_reads"],
        "slack_429s": sum(r["slack_429s"] for r in rows),
        "wall_median_s": round(statistics.median(walls), 3),
        "wall_p95_s": round(pct(walls, 95), 3),
        "same_cost_every_run": all(
            (r["requests"], r["input_tokens"]) == (first["requests"], first["input_tokens"])
            and r["fake_requests"] == r["requests"]
            for r in rows
        ),
    }


async def main_async(runs: int) -> list[dict[str, Any]]:
    return [
        await scenario("default budget (200,000 tokens)", None, runs),
        await scenario("HISTORY_TOKEN_BUDGET=20000 (map/reduce)", 20_000, runs),
    ]


def main() -> list[dict[str, Any]]:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
    results = asyncio.run(main_async(runs))
    head = (
        "| scenario | messages | Gemini requests | input tokens | output tokens | "
        "Slack reads | 429s | wall median s | wall p95 s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = "\n".join(
        f"| {r['scenario']} | {r['messages']:,} | {r['requests']} | {r['input_tokens']:,} | "
        f"{r['output_tokens']:,} | {r['slack_reads']} | {r['slack_429s']} | "
        f"{r['wall_median_s']} | {r['wall_p95_s']} |"
        for r in results
    )
    md = (
        f"`/catchup 2d` on a {MESSAGES:,}-message Slack channel (40 threads), service in its "
        f"own process on the fakes; {results[0]['runs']} runs each. Tokens as the fake "
        "Gemini counts them (about 4 characters a token).\n\n" + head + rows
    )
    path = write("catchup_cost", {"scenarios": results}, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
