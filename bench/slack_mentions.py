"""Slack mentions on the fakes: the scenario matrix of issue 10, limit configuration by
limit configuration.

The service runs as `gemini-bot run` in its own process, as deployed; the fake Slack, the
fake model and the event driver share this one. Times come from the system's monotonic
clock (CLOCK_MONOTONIC), which both processes read. One unmeasured mention (in its own
workspace) warms the service first. The fake model streams 600 characters in 30 chunks
50 ms apart: reply R017 ("R017 xxxx…") answers the mention "q17".

Limit configurations of the fake Slack (its other limits are the fake's defaults):
  none    no limit on chat.postMessage, chat.update, chat.appendStream
  limits  chat.update 50/min per workspace, burst 50; chat.postMessage 1/s per channel,
          burst 3; chat.appendStream the fake's default (100/min per workspace, burst 10)
  strict  chat.update 20/min per workspace, burst 3; chat.postMessage as in `limits`

Scenarios, all in one workspace (T000): chX NY = Y top-level mentions sent at once,
round-robin over X channels: ch1N1, ch1N10, ch1N50, ch10N10, ch10N50 (`--quick`: ch1N1,
ch1N10 and ch10N50). `--only none,limits` and `--scenario ch10N50,ch1N1` pick some;
`--mode native` runs the service with SLACK_STREAM_MODE=native (default: edit).

Columns, per reply (summed up over the replies of a run):
  (a) mention -> the first successful chat.postMessage (edit mode: the placeholder, or
      the first text if it went out in its place) or chat.startStream (native mode: the
      stream opens, usually empty) in the reply's thread.
  (b) the model's first chunk -> the first successful write whose text holds the reply's
      tag (R017).
  (c) visible-text lag: per model chunk, from when the model sent it to the first
      successful write that shows the text up to and including it; averaged per reply.
      The table shows the mean over replies and the worst reply's mean.
  (e) the model's last chunk -> the first successful write showing the whole text.
  complete / lost: the bot's messages in the thread, joined, show exactly the reply.
  429s per reply: every 429 the fake answered in the run, divided by the mentions.
  calls per reply: chat.postMessage / chat.update / chat.startStream / chat.appendStream
      / chat.stopStream calls for the reply (successful or not, 429s included).
Writes are replayed in order to know what each one showed: a post or startStream shows its
text, an update replaces it, appendStream / stopStream add `markdown_text`.

After the service has counted every turn done, the bench waits until every reply shows
its whole text, or no call came for 15 s: the engine stops waiting for a reply's delivery
after a while, and its text may still come (a note under the table counts those replies).

For `ch10N50` under a chat.postMessage limit (edit mode only): per reply, how long after
the earliest moment it could have a message its first text came: the later of the moment
its channel's bucket (burst 3, 1/s) allows it one (the k-th reply of a channel to show
text, from 0: max(0, k-2) s after the first mention) and the model's first chunk; and (e).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
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
from bench.report import late_notes, md_table, pair, squash, stream_marks, summary_ms, write
from bench.service_process import ServiceProcess
from tests.fakes.gemini import FakeGemini
from tests.fakes.slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, Call, FakeSlack, SlackDriver

TEAM_ID = "T000"
POSTS = ("chat.postMessage", "chat.startStream")
APPENDS = ("chat.appendStream", "chat.stopStream")
REPLY_METHODS = (*POSTS, "chat.update", *APPENDS)
Limit = tuple[float, int, str]
APPEND_DEFAULT: Limit = FakeSlack().limits["chat.appendStream"]  # 100/min per workspace
CONFIGS: dict[str, dict[str, Limit | None]] = {
    "none": {"chat.postMessage": None, "chat.update": None, "chat.appendStream": None},
    "limits": {
        "chat.update": (50 / 60, 50, "team"),
        "chat.postMessage": (1.0, 3, "channel"),
        "chat.appendStream": APPEND_DEFAULT,
    },
    "strict": {
        "chat.update": (20 / 60, 3, "team"),
        "chat.postMessage": (1.0, 3, "channel"),
        "chat.appendStream": APPEND_DEFAULT,
    },
}
SCENARIOS: dict[str, tuple[int, int]] = {  # name -> (channels, mentions)
    "ch1N1": (1, 1),
    "ch1N10": (1, 10),
    "ch1N50": (1, 50),
    "ch10N10": (10, 10),
    "ch10N50": (10, 50),
}
QUICK = ("ch1N1", "ch1N10", "ch10N50")


@dataclass
class Sent:
    """A measured mention: when it was sent, where, and its ts (the reply's thread)."""

    at: float
    channel: str
    ts: str


def ok(c: Call) -> bool:
    return c.status == 200 and c.error is None


def shown_text(c: Call) -> str:
    """The text a write puts in its message (a stream write: the text it adds)."""
    if c.method in ("chat.postMessage", "chat.update"):
        for b in c.args.get("blocks") or []:
            if isinstance(b, dict) and b.get("type") == "markdown":
                return str(b.get("text", ""))
        return str(c.args.get("text") or "")
    return str(c.args.get("markdown_text") or "")


def reply_calls(calls: list[Call], sent: Sent, message_ts: set[str]) -> list[Call]:
    """The reply's writes: posts into its thread, edits and appends of its messages."""
    return [
        c
        for c in calls
        if c.method in REPLY_METHODS
        and c.args.get("channel") == sent.channel
        and (
            c.args.get("thread_ts") == sent.ts
            if c.method in POSTS
            else str(c.args.get("ts")) in message_ts
        )
    ]


def timeline(calls: list[Call], order: list[str]) -> list[tuple[float, str]]:
    """The reply's visible text (its messages joined) after each successful write.
    `order`: the ts of the reply's messages, oldest first; the fake makes them in the
    order their posts arrive, so the k-th successful post made the k-th message."""
    new_ts = iter(order)
    texts: dict[str, str] = {}
    out = []
    for c in calls:
        if not ok(c):
            continue
        ts = next(new_ts, f"?{len(texts)}") if c.method in POSTS else str(c.args.get("ts"))
        if c.method in APPENDS:
            texts[ts] = texts.get(ts, "") + shown_text(c)
        else:
            texts[ts] = shown_text(c)
        out.append((c.at, "".join(texts.values())))
    return out


def complete(fake: FakeSlack, i: int, sent: Sent) -> bool:
    """The bot's messages in the reply's thread, joined, show exactly reply i."""
    msgs = fake.bot_messages(sent.channel, sent.ts)
    return squash("".join(m.visible() for m in msgs)) == squash(text_for(i))


def measure_one(fake: FakeSlack, gemini: FakeGemini, i: int, sent: Sent) -> dict[str, Any]:
    """One reply's figures (seconds) from the fake's records."""
    msgs = fake.bot_messages(sent.channel, sent.ts)
    calls = reply_calls(fake.calls, sent, {m.ts for m in msgs})
    posts = [c.at for c in calls if ok(c) and c.method in POSTS]
    chunks = chunks_for(i)
    first_chunk = gemini.first_chunk_at.get(chunks[0])
    marks = stream_marks(
        timeline(calls, [m.ts for m in msgs]),
        text_for(i),
        chunks,
        gemini.chunk_sent_at.get(chunks[0], []),
    )
    return {
        "tag": f"R{i:03d}",
        "channel": sent.channel,
        "mention_at": sent.at,
        "first_message_s": min(posts) - sent.at if posts else None,
        "model_s": first_chunk - sent.at if first_chunk is not None else None,
        **marks,
        "complete": complete(fake, i, sent),
        "calls": len(calls),
        "calls_429": sum(c.status == 429 for c in calls),
        "calls_by_method": dict(Counter(c.method for c in calls)),
    }


def summarise(rows: list[dict[str, Any]], run_calls: list[Call]) -> dict[str, Any]:
    """A run's figures: completeness, the four timings, 429s and calls per reply."""
    n = len(rows)
    complete = sum(r["complete"] for r in rows)
    by_method: Counter[str] = Counter()
    for r in rows:
        by_method.update(r["calls_by_method"])
    received_429 = sum(c.status == 429 for c in run_calls)
    return {
        "mentions": n,
        "complete": complete,
        "lost": n - complete,
        "first_message": summary_ms(values(rows, "first_message_s")),
        "model_first_chunk": summary_ms(values(rows, "model_s")),
        "first_text": summary_ms(values(rows, "first_text_after_chunk_s")),
        "lag": summary_ms(values(rows, "lag_mean_s")),
        "lag_worst_chunk": summary_ms(values(rows, "lag_max_s")),
        "final": summary_ms(values(rows, "final_after_last_chunk_s")),
        "received_429": received_429,
        "429_per_reply": round(received_429 / n, 2),
        "attributed_429_per_reply": round(statistics.fmean(r["calls_429"] for r in rows), 2),
        "calls_per_reply": round(statistics.fmean(r["calls"] for r in rows), 2),
        "calls_by_method_per_reply": {m: round(k / n, 2) for m, k in sorted(by_method.items())},
    }


def post_bucket_lateness(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """First text after the earliest moment it could go: the channel's chat.postMessage
    bucket (burst 3, 1/s) allows the reply a message, and the model has sent its first
    chunk; and each final after the end of its stream."""
    start = min(r["mention_at"] for r in rows)
    by_channel: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["first_text_at"] is not None and r["first_text_after_chunk_s"] is not None:
            chunk_at = r["first_text_at"] - r["first_text_after_chunk_s"]
            by_channel.setdefault(r["channel"], []).append((r["first_text_at"], chunk_at))
    late = [
        at - max(start + max(0, k - 2) * 1.0, chunk_at)
        for times in by_channel.values()
        for k, (at, chunk_at) in enumerate(sorted(times))
    ]
    return {
        "first_text_after_allowed": summary_ms(late),
        "final_after_stream_end": summary_ms(values(rows, "final_after_last_chunk_s")),
    }


async def drive(
    service: ServiceProcess, fake: FakeSlack, n: int, channels: int
) -> tuple[dict[int, Sent], int, float]:
    """Warm up, then send the n mentions at once; returns them, the first measured call
    and when the service had counted every turn done."""
    driver = SlackDriver(fake, service.events_url)
    sent: dict[int, Sent] = {}

    async def mention(i: int, channel: str, measured: bool = True) -> None:
        ev = driver.as_mention(driver.message(channel, "U1ADA", f"<@{BOT_USER}> q{i}"))
        ev["team"] = fake.channel_team[channel]
        if measured:
            sent[i] = Sent(time.monotonic(), channel, ev["ts"])
        await driver.event(ev)

    try:
        await mention(999, "CWARM", measured=False)
        await service.settle(1, limit=60)
        skip = len(fake.calls)
        await asyncio.gather(*(mention(i, f"C{i % channels:03d}") for i in range(n)))
        await service.settle(n + 1, limit=900)
        turns_done = await drain(
            lambda: fake.calls[-1].at, lambda: all(complete(fake, i, s) for i, s in sent.items())
        )
    finally:
        await driver.close()
    return sent, skip, turns_done


def apply_limits(fake: FakeSlack, config: str) -> None:
    for method, limit in CONFIGS[config].items():
        if limit is None:
            fake.limits.pop(method, None)
        else:
            fake.limits[method] = limit


def dump_calls(path: Path, calls: list[Call]) -> None:
    """One line per Web API call (BENCH_DUMP=file): time, method, channel, status,
    Retry-After, thread or message ts, and the start of the text."""
    with path.open("w") as out:
        for c in calls:
            text = shown_text(c)[:12] if c.method.startswith("chat.") else ""
            ts = c.args.get("thread_ts") or c.args.get("ts")
            print(
                f"{c.at:.3f} {c.method} {c.args.get('channel')} {c.status} {c.retry_after} "
                f"{ts} {text!r}",
                file=out,
            )


async def run(config: str, scenario: str, mode: str) -> dict[str, Any]:
    """One scenario in one configuration, on fresh fakes and a fresh service."""
    channels, n = SCENARIOS[scenario]
    gemini, fake = FakeGemini(), FakeSlack()
    apply_limits(fake, config)
    for c in range(channels):
        fake.channel_team[f"C{c:03d}"] = TEAM_ID
    fake.channel_team["CWARM"] = "TWARM"
    gemini.responder = respond
    await gemini.start()
    await fake.start()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "SLACK_STREAM_MODE": mode,
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with ServiceProcess(gemini, Path(tmp), env) as service:
                sent, skip, turns_done = await drive(service, fake, n, channels)
        rows = [measure_one(fake, gemini, i, s) for i, s in sent.items()]
    finally:
        await fake.close()
        await gemini.close()
    if os.environ.get("BENCH_DUMP"):
        dump_calls(Path(os.environ["BENCH_DUMP"]), fake.calls[skip:])
    result = summarise(rows, fake.calls[skip:])
    result["finals_after_turns_done"] = sum(
        r["final_at"] is not None and r["final_at"] > turns_done for r in rows
    )
    if scenario == "ch10N50" and mode == "edit" and "chat.postMessage" in fake.limits:
        result["post_bucket"] = post_bucket_lateness(rows)
    return result


def describe(config: str) -> str:
    parts = []
    for method, limit in CONFIGS[config].items():
        if limit is None:
            parts.append(f"{method} unlimited")
        else:
            rate, burst, scope = limit
            per = f"{rate:g}/s" if rate == int(rate) else f"{rate * 60:.0f}/min"
            where = "workspace" if scope == "team" else scope
            parts.append(f"{method} {per} per {where}, burst {burst}")
    return "; ".join(parts)


def render(results: dict[str, dict[str, dict[str, Any]]], mode: str) -> str:
    out = [
        f"Fake Slack, {mode} mode; fake model: 600 chars in 30 chunks 50 ms apart. (a) mention "
        "-> first message, (b) first chunk -> first text, (c) per-chunk visible-text lag "
        "(mean over replies / worst reply's mean), (e) last chunk -> final text."
    ]
    for config, runs in results.items():
        out.append(f"\n### {config}: {describe(config)}\n")
        out.append(md_table(HEADER, [table_row(s, r) for s, r in runs.items()]))
        out += late_notes(config, runs)
        for scenario, r in runs.items():
            if "post_bucket" in r:
                b = r["post_bucket"]
                out.append(
                    f"\n{config} {scenario}: first text after the earliest moment the "
                    "channel's chat.postMessage bucket allowed the reply a message, and its "
                    "first chunk was there (median / p95): "
                    f"{pair(b['first_text_after_allowed'], 'median', 'p95')}; final "
                    "after the end of its stream (median / p95): "
                    f"{pair(b['final_after_stream_end'], 'median', 'p95')}."
                )
    return "\n".join(out)


def parse(argv: list[str]) -> argparse.Namespace:
    p = parser("python -m bench.slack_mentions", __doc__, QUICK)
    p.add_argument("--mode", choices=("edit", "native"), default="edit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(
        run_matrix(
            f"slack {args.mode}",
            args,
            CONFIGS,
            SCENARIOS,
            QUICK,
            lambda config, scenario: run(config, scenario, args.mode),
        )
    )
    md = render(results, args.mode)
    name = "slack_mentions" if args.mode == "edit" else f"slack_mentions_{args.mode}"
    path = write(name, {"mode": args.mode, "configs": results}, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
