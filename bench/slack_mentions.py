"""Slack scenario on the fakes: mention -> first visible sign -> first model text -> final.

The fake Slack enforces Slack's limits (chat.postMessage ~1/s per channel, burst 3;
chat.update 50/min per workspace, burst 5). The fake model streams 600 characters in 30
chunks 50 ms apart. The service runs as `gemini-bot run` in its own process, as deployed;
the fakes and the event driver share this one. Times come from the system's monotonic
clock (CLOCK_MONOTONIC), which both processes read. One unmeasured mention warms the
service first: a running service is warm; the cold first mention is reported apart.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import pct, summary_ms, write
from bench.service_process import ServiceProcess
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, SlackDriver

CHUNKS, CHUNK_CHARS, GAP = 30, 20, 0.05


def reply_for(i: int) -> Reply:
    head = f"R{i:03d} "
    text = head + "x" * (CHUNKS * CHUNK_CHARS - len(head))
    return Reply([text[j : j + CHUNK_CHARS] for j in range(0, len(text), CHUNK_CHARS)], delay=GAP)


def measure(
    fake: FakeSlack, gemini: FakeGemini, sent: dict[str, tuple[float, str, str]]
) -> list[dict[str, Any]]:
    """Per mention: sign, first text and final times, relative to the mention."""
    out = []
    for tag, (t0, channel, ts) in sent.items():
        calls = [
            c
            for c in fake.calls
            if c.status == 200
            and c.args.get("channel") == channel
            and (c.args.get("thread_ts") == ts or c.method == "chat.update")
        ]
        posts = [
            c for c in calls if c.method == "chat.postMessage" and c.args.get("thread_ts") == ts
        ]
        mine = {str(fake.messages[(channel, m.ts)].ts) for m in fake.bot_messages(channel, ts)}
        edits = [c for c in calls if c.method == "chat.update" and c.args.get("ts") in mine]
        texts = [c for c in posts + edits if tag in str(c.args.get("text"))]
        final = [
            c for c in edits + posts if str(c.args.get("text", "")).rstrip().endswith("x" * 10)
        ]
        first_chunk = gemini.first_chunk_at.get(f"{tag} " + "x" * (CHUNK_CHARS - len(tag) - 1))
        msgs = fake.bot_messages(channel, ts)
        out.append(
            {
                "sign_s": min(c.at for c in posts) - t0 if posts else None,
                # The model's first chunk: how long the model call waited after the mention.
                "model_s": first_chunk - t0 if first_chunk else None,
                "first_text_after_chunk_s": (min(c.at for c in texts) - first_chunk)
                if texts and first_chunk
                else None,
                "first_text_s": min(c.at for c in texts) - t0 if texts else None,
                "final_s": max(c.at for c in final) - t0 if final else None,
                "complete": bool(msgs)
                and msgs[-1].visible() == f"{tag} " + "x" * (CHUNKS * CHUNK_CHARS - len(tag) - 1),
                "calls": len(posts) + len(edits),
            }
        )
    return out


async def run(n: int, *, channels: int, workspaces: int, spread: float) -> dict[str, Any]:
    gemini, fake = FakeGemini(), FakeSlack()
    await gemini.start()
    await fake.start()
    for c in range(channels):
        fake.channel_team[f"C{c:03d}"] = f"T{c % workspaces:03d}"
    sent: dict[str, tuple[float, str, str]] = {}
    fake.channel_team["CWARM"] = "TWARM"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
        }
        async with ServiceProcess(gemini, Path(tmp), env) as service:
            driver = SlackDriver(fake, service.events_url)
            # Each mention "q17" gets reply R017, whatever order the requests arrive in.
            gemini.responder = lambda rec: reply_for(int(rec.texts()[-1].rsplit("q", 1)[1]))

            async def mention(i: int, channel: str, measured: bool = True) -> None:
                ev = driver.as_mention(driver.message(channel, "U1ADA", f"<@{BOT_USER}> q{i}"))
                ev["team"] = fake.channel_team[channel]
                if measured:
                    sent[f"R{i:03d}"] = (time.monotonic(), channel, ev["ts"])
                await driver.event(ev)

            await mention(999, "CWARM", measured=False)
            await service.settle(1, limit=60)
            skip = len(fake.calls)
            if spread:
                for i in range(n):
                    await mention(i, f"C{i % channels:03d}")
                    await service.settle(i + 2, limit=120)
            else:
                await asyncio.gather(*(mention(i, f"C{i % channels:03d}") for i in range(n)))
                await service.settle(n + 1, limit=600)
            await driver.close()
        rows = measure(fake, gemini, sent)
        api_calls = len(
            [c for c in fake.calls[skip:] if c.method not in ("auth.test", "users.info")]
        )
        result = {
            "mentions": n,
            "channels": channels,
            "workspaces": workspaces,
            "answered_completely": sum(r["complete"] for r in rows),
            "lost": sum(not r["complete"] for r in rows),
            "received_429": fake.count_429(),
            "web_api_calls_per_reply": round(api_calls / n, 2),
            "sign": summary_ms([r["sign_s"] for r in rows if r["sign_s"] is not None]),
            "model": summary_ms([r["model_s"] for r in rows if r["model_s"] is not None]),
            "chunk_to_text": summary_ms(
                [
                    r["first_text_after_chunk_s"]
                    for r in rows
                    if r["first_text_after_chunk_s"] is not None
                ]
            ),
            "final": summary_ms([r["final_s"] for r in rows if r["final_s"] is not None]),
            "rows": rows,
        }
    await fake.close()
    await gemini.close()
    return result


async def main_async(quick: bool) -> dict[str, Any]:
    one = await run(10 if quick else 20, channels=1, workspaces=1, spread=True)
    spread = await run(50, channels=50, workspaces=50, spread=False)
    crowd = await run(10 if quick else 50, channels=1, workspaces=1, spread=False)
    # Earliest moment Slack's limits allow the k-th placeholder in one channel: burst 3, then 1/s.
    lateness = []
    signs = sorted(r["sign_s"] for r in crowd["rows"] if r["sign_s"] is not None)
    for k, s in enumerate(signs):
        earliest = max(0.0, k - 2) / 1.0
        lateness.append(s - earliest)
    crowd["placeholder_after_earliest_allowed"] = {
        "mean_s": round(statistics.fmean(lateness), 3),
        "max_s": round(max(lateness), 3),
        "p99_s": round(pct(lateness, 99), 3),
    }
    return {"one_at_a_time": one, "fifty_channels": spread, "one_channel_crowd": crowd}


def main() -> dict[str, Any]:
    results = asyncio.run(main_async("--quick" in sys.argv))
    lines = []
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['mentions']} | {r['answered_completely']} | {r['lost']} | "
            f"{r['received_429']} | "
            f"{r['sign']['median_ms']} / {r['sign']['p99_ms']} | "
            f"{r['model']['median_ms']} / {r['model']['p99_ms']} | "
            f"{r['chunk_to_text']['median_ms']} / {r['chunk_to_text']['p99_ms']} | "
            f"{r['final']['median_ms']} / {r['final']['max_ms']} | {r['web_api_calls_per_reply']} |"
        )
    crowd = results["one_channel_crowd"]["placeholder_after_earliest_allowed"]
    md = (
        "Fake Slack with Slack's limits; fake model: 600 chars in 30 chunks 50 ms apart.\n\n"
        "| scenario | mentions | complete | lost | 429s | mention -> sign ms (median / p99) | "
        "mention -> model's first chunk ms (median / p99) | "
        "first chunk -> first text ms (median / p99) | mention -> final ms (median / max) | "
        "Web API calls per reply |\n|---|---:|---:|---:|---:|---|---|---|---|---:|\n"
        + "\n".join(lines)
        + f"\n\nOne channel crowd: placeholder k came after the earliest moment Slack's "
        f"chat.postMessage limit allowed it by {crowd['mean_s']} s on average, "
        f"{crowd['max_s']} s at worst."
    )
    for r in results.values():
        r.pop("rows")
    path = write("slack_mentions", results, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
