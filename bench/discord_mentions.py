"""Discord mentions on the fakes: the scenario matrix of issue 10, limit configuration by
limit configuration.

The service runs as `gemini-bot run` in its own process; the fake Discord (REST and
gateway), the fake model and the driver live in this one. Times come from CLOCK_MONOTONIC,
which both processes read. One unmeasured mention (in another channel) warms the service
first. The fake model streams 600 characters in 30 chunks 50 ms apart: reply R017
("R017 xxxx…") answers the mention "q17". A mention in a text channel makes the bot create
a thread from that message (the thread's id is the message's) and answer in it.

Limit configurations (fake Discord; the service's DISCORD_GLOBAL_RATE):
  none           no per-channel limit (10^6 writes / 5 s), no global limit; rate 10,000
  raised-global  5 message writes / 5 s per channel or thread, no global limit; 10,000
  limits         5 writes / 5 s per channel + 50 requests/s global (issue 10's "strict"); 50

Scenarios: chX NY = Y mentions sent at once, round-robin over X channels: ch1N1, ch1N10,
ch50N50 (50 channels, one mention each), ch10N50 (`--quick`: ch1N1, ch1N10, ch50N50).
`--only none,limits` and `--scenario ch50N50` pick some.

Columns, per reply (summed up over the replies of a run):
  (a) MESSAGE_CREATE -> the first successful message POST in the reply's thread.
  (b) the model's first chunk -> the first successful write whose content holds the
      reply's tag (R017).
  (c) visible-text lag: per model chunk, from when the model sent it to the first
      successful write showing the text up to and including it; averaged per reply. The
      table shows the mean over replies and the worst reply's mean.
  (e) the model's last chunk -> the first successful write showing the whole text.
  complete / lost: the bot's messages in the thread, joined, show exactly the reply.
  429s per reply: every 429 the fake answered in the run, divided by the mentions.
  calls per reply: thread creation, typing and message writes (POST / PATCH / DELETE) for
      the reply, successful or not.
  typing while queued: typing requests into the reply's thread after the model's first
      chunk and before the first write showing text (requests the text may have waited on).
Writes are replayed in order: a POST shows its content, a PATCH replaces it. After the
service has counted every turn done, the bench waits until every reply shows its whole
text, or no call came for 15 s (a note under the table counts replies finished late).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.mentions import (
    HEADER,
    chunks_for,
    drain,
    parser,
    respond,
    run_matrix,
    table_row,
    text_for,
    values,
)
from bench.report import late_notes, md_table, squash, stream_marks, summary_ms, write
from bench.service_process import ServiceProcess
from tests.fakes.discord import BOT_ID, CHANNEL, TOKEN, Call, FakeDiscord
from tests.fakes.gemini import FakeGemini

USER = "100000000000000001"
UNLIMITED = 1_000_000
CONFIGS: dict[str, tuple[int, int | None, int]] = {  # channel limit, global limit, rate
    "none": (UNLIMITED, None, 10_000),
    "raised-global": (5, None, 10_000),
    "limits": (5, 50, 50),
}
SCENARIOS: dict[str, tuple[int, int]] = {  # name -> (channels, mentions)
    "ch1N1": (1, 1),
    "ch1N10": (1, 10),
    "ch50N50": (50, 50),
    "ch10N50": (10, 50),
}
QUICK = ("ch1N1", "ch1N10", "ch50N50")


@dataclass
class Sent:
    """A measured mention: when it was sent, its channel and its message id."""

    at: float
    channel: str
    message: str


def channel_id(c: int) -> str:
    return str(700000000000001000 + c)


def ok(c: Call) -> bool:
    return 200 <= c.status < 300


def timeline(writes: list[Call], order: list[str]) -> list[tuple[float, str]]:
    """The reply's visible text (its messages joined) after each successful write.
    `order`: the ids of the bot's messages in the thread, oldest first; the fake makes
    them in the order their POSTs arrive, so the k-th successful POST made the k-th."""
    new_ids = iter(order)
    texts: dict[str, str] = {}
    out = []
    for c in writes:
        if not ok(c):
            continue
        body = c.body if isinstance(c.body, dict) else {}
        if c.method == "POST":
            texts[next(new_ids, f"?{len(texts)}")] = str(body.get("content") or "")
        elif c.method == "PATCH" and "content" in body:
            texts[c.path.rsplit("/", 1)[1]] = str(body.get("content") or "")
        elif c.method == "DELETE":
            texts.pop(c.path.rsplit("/", 1)[1], None)
        out.append((c.at, "".join(texts.values())))
    return out


def reply_calls(fake: FakeDiscord, sent: Sent) -> tuple[list[Call], list[Call], list[Call]]:
    """The reply's thread creation, typing and message writes (its thread: the message id)."""
    made = f"/channels/{sent.channel}/messages/{sent.message}/threads"
    prefix = f"/channels/{sent.message}/"
    thread = [c for c in fake.calls if c.route == "thread" and c.path == made]
    typing = [c for c in fake.calls if c.route == "typing" and c.path == prefix + "typing"]
    writes = [c for c in fake.calls if c.route == "write" and c.path.startswith(prefix)]
    return thread, typing, writes


def complete(fake: FakeDiscord, i: int, sent: Sent) -> bool:
    """The bot's messages in the reply's thread, joined, show exactly reply i."""
    msgs = fake.bot_messages(sent.message) if sent.message in fake.channels else []
    return squash("".join(str(m["content"]) for m in msgs)) == squash(text_for(i))


def measure_one(fake: FakeDiscord, gemini: FakeGemini, i: int, sent: Sent) -> dict[str, Any]:
    """One reply's figures (seconds) from the fake's records."""
    thread, typing, writes = reply_calls(fake, sent)
    msgs = fake.bot_messages(sent.message) if sent.message in fake.channels else []
    posts = [c.at for c in writes if ok(c) and c.method == "POST"]
    chunks = chunks_for(i)
    first_chunk = gemini.first_chunk_at.get(chunks[0])
    marks = stream_marks(
        timeline(writes, [str(m["id"]) for m in msgs]),
        text_for(i),
        chunks,
        gemini.chunk_sent_at.get(chunks[0], []),
    )
    text_at = marks["first_text_at"] if marks["first_text_at"] is not None else float("inf")
    calls = thread + typing + writes
    return {
        "tag": f"R{i:03d}",
        "first_message_s": min(posts) - sent.at if posts else None,
        "thread_s": min(c.at for c in thread if ok(c)) - sent.at if any(map(ok, thread)) else None,
        "model_s": first_chunk - sent.at if first_chunk is not None else None,
        **marks,
        "complete": complete(fake, i, sent),
        "calls": len(calls),
        "calls_429": sum(c.status == 429 for c in calls),
        "typing": len(typing),
        "typing_while_queued": sum(
            first_chunk is not None and first_chunk <= c.at < text_at for c in typing
        ),
    }


def mean_of(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.fmean(r[key] for r in rows), 2)


def summarise(rows: list[dict[str, Any]], run_calls: list[Call]) -> dict[str, Any]:
    """A run's figures: completeness, the four timings, 429s, calls and typing per reply."""
    n = len(rows)
    complete = sum(r["complete"] for r in rows)
    received_429 = sum(c.status == 429 for c in run_calls)
    return {
        "mentions": n,
        "complete": complete,
        "lost": n - complete,
        "first_message": summary_ms(values(rows, "first_message_s")),
        "thread_made": summary_ms(values(rows, "thread_s")),
        "model_first_chunk": summary_ms(values(rows, "model_s")),
        "first_text": summary_ms(values(rows, "first_text_after_chunk_s")),
        "lag": summary_ms(values(rows, "lag_mean_s")),
        "lag_worst_chunk": summary_ms(values(rows, "lag_max_s")),
        "final": summary_ms(values(rows, "final_after_last_chunk_s")),
        "received_429": received_429,
        "429_per_reply": round(received_429 / n, 2),
        "attributed_429_per_reply": mean_of(rows, "calls_429"),
        "calls_per_reply": mean_of(rows, "calls"),
        "rest_calls_per_reply": round(len(run_calls) / n, 2),
        "typing_per_reply": mean_of(rows, "typing"),
        "typing_while_queued_per_reply": mean_of(rows, "typing_while_queued"),
    }


async def drive(
    service: ServiceProcess, fake: FakeDiscord, n: int, channels: int
) -> tuple[dict[int, Sent], int, float]:
    """Warm up, then post the n mentions at once; returns them, the first measured call
    and when the service had counted every turn done."""
    await asyncio.wait_for(fake.identified.wait(), 30)
    await fake.say(CHANNEL, USER, f"<@{BOT_ID}> q999")
    await service.settle(1, limit=60)
    skip = len(fake.calls)
    sent: dict[int, Sent] = {}
    for i in range(n):
        channel = channel_id(i % channels)
        t0 = time.monotonic()
        msg = await fake.say(channel, USER, f"<@{BOT_ID}> q{i}")
        sent[i] = Sent(t0, channel, str(msg["id"]))
    await service.settle(n + 1, limit=900)
    done = await drain(
        lambda: fake.calls[-1].at, lambda: all(complete(fake, i, s) for i, s in sent.items())
    )
    return sent, skip, done


async def run(config: str, scenario: str) -> dict[str, Any]:
    """One scenario in one configuration, on fresh fakes and a fresh service."""
    channels, n = SCENARIOS[scenario]
    channel_limit, global_limit, rate = CONFIGS[config]
    gemini = FakeGemini()
    fake = FakeDiscord(channel_limit=channel_limit, global_limit=global_limit)
    fake.add_user(USER, "ada")
    for c in range(channels):
        fake.add_channel(channel_id(c), f"c{c}")
    gemini.responder = respond
    await gemini.start()
    await fake.start()
    env = {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DISCORD_GLOBAL_RATE": str(rate),
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with ServiceProcess(gemini, Path(tmp), env) as service:
                sent, skip, turns_done = await drive(service, fake, n, channels)
        rows = [measure_one(fake, gemini, i, s) for i, s in sent.items()]
    finally:
        await fake.close()
        await gemini.close()
    result = summarise(rows, fake.calls[skip:])
    result["finals_after_turns_done"] = sum(
        r["final_at"] is not None and r["final_at"] > turns_done for r in rows
    )
    return result


def discord_row(scenario: str, r: dict[str, Any]) -> list[str]:
    return [*table_row(scenario, r), f"{r['typing_while_queued_per_reply']:.2f}"]


def describe(config: str) -> str:
    channel_limit, global_limit, rate = CONFIGS[config]
    per_channel = (
        "no per-channel limit"
        if channel_limit >= UNLIMITED
        else f"{channel_limit} writes / 5 s per channel"
    )
    overall = f"{global_limit}/s global" if global_limit else "no global limit"
    return f"{per_channel}, {overall}; DISCORD_GLOBAL_RATE={rate}"


def render(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    out = [
        "Fake Discord; fake model: 600 chars in 30 chunks 50 ms apart. (a) MESSAGE_CREATE -> "
        "first message in the thread, (b) first chunk -> first text, (c) per-chunk "
        "visible-text lag (mean over replies / worst reply's mean), (e) last chunk -> final "
        "text; typing while queued: typing requests after the first chunk, before the "
        "first text."
    ]
    for config, runs in results.items():
        out.append(f"\n### {config}: {describe(config)}\n")
        out.append(
            md_table(
                [*HEADER, "typing while queued per reply"],
                [discord_row(s, r) for s, r in runs.items()],
            )
        )
        out += late_notes(config, runs)
    return "\n".join(out)


def parse(argv: list[str]) -> argparse.Namespace:
    return parser("python -m bench.discord_mentions", __doc__, QUICK).parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(run_matrix("discord", args, CONFIGS, SCENARIOS, QUICK, run))
    md = render(results)
    path = write("discord_mentions", {"configs": results}, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
