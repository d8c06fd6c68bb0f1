"""Discord scenario on the fakes: MESSAGE_CREATE -> first sign -> first model text -> final.

The fake Discord enforces 5 message writes per 5 s per channel (sliding window) and the
global 50 requests per second. The fake model streams 600 characters in 30 chunks 50 ms
apart. The service runs as `gemini-bot run` in its own process; the fakes live in this one.
Times come from CLOCK_MONOTONIC, which both processes read. One unmeasured mention warms
the service first.

Visible-text lag: for every model chunk, the time from when the model sent it to the first
write (post or edit) whose text contains it; averaged per reply.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import summary_ms, write
from bench.service_process import ServiceProcess
from tests.fakes.discord import BOT_ID, CHANNEL, TOKEN, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply

CHUNKS, CHUNK_CHARS, GAP = 30, 20, 0.05
USER = "100000000000000001"


def text_for(i: int) -> str:
    head = f"R{i:03d} "
    return head + "x" * (CHUNKS * CHUNK_CHARS - len(head))


def reply_for(i: int) -> Reply:
    text = text_for(i)
    return Reply([text[j : j + CHUNK_CHARS] for j in range(0, len(text), CHUNK_CHARS)], delay=GAP)


def measure(
    fake: FakeDiscord, gemini: FakeGemini, sent: dict[int, tuple[float, str]]
) -> list[dict[str, Any]]:
    """Per mention: sign, first text, lag and final, from the fake's records."""
    rows = []
    for i, (t0, mid) in sent.items():
        text = text_for(i)
        thread = fake.channels.get(mid)
        made = [c.at for c in fake.calls if c.route == "thread" and f"/messages/{mid}/" in c.path]
        prefix = f"/channels/{mid}/"
        typing = [c.at for c in fake.calls if c.route == "typing" and c.path.startswith(prefix)]
        writes = [
            c
            for c in fake.calls
            if c.route == "write" and c.status == 200 and c.path.startswith(prefix)
        ]
        first_chunk = gemini.first_chunk_at.get(text[:CHUNK_CHARS])
        lags = []
        if first_chunk is not None:
            for j in range(CHUNKS):
                sent_at = first_chunk + j * GAP
                need = text[: (j + 1) * CHUNK_CHARS]
                shown = [c.at for c in writes if str(c.body.get("content", "")).startswith(need)]
                if shown:
                    lags.append(max(0.0, min(shown) - sent_at))
        msgs = fake.bot_messages(mid) if thread else []
        rows.append(
            {
                "sign_s": min(made + typing) - t0 if made or typing else None,
                "first_text_after_chunk_s": (writes[0].at - first_chunk)
                if writes and first_chunk
                else None,
                "lag_mean_s": statistics.fmean(lags) if lags else None,
                "final_s": writes[-1].at - t0 if writes else None,
                "complete": bool(msgs) and msgs[-1]["content"] == text,
                "calls": len(writes) + len(made) + len(typing),
            }
        )
    return rows


async def run(
    n: int, *, channels: int, spread: bool = False, global_limit: int | None = 50
) -> dict[str, Any]:
    gemini, fake = FakeGemini(), FakeDiscord(global_limit=global_limit)
    fake.add_user(USER, "ada")
    for c in range(channels):
        fake.add_channel(str(700000000000001000 + c), f"c{c}")
    await gemini.start()
    await fake.start()
    gemini.responder = lambda rec: reply_for(int(rec.texts()[-1].rsplit("q", 1)[1]))
    sent: dict[int, tuple[float, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_URL": fake.api_url,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            # A bot whose global limit Discord raised (the fake then enforces none).
            "DISCORD_GLOBAL_RATE": str(global_limit or 10_000),
        }
        async with ServiceProcess(gemini, Path(tmp), env) as service:
            await asyncio.wait_for(fake.identified.wait(), 30)
            await fake.say(CHANNEL, USER, f"<@{BOT_ID}> q999")
            await service.settle(1, limit=60)
            skip = len(fake.calls)
            for i in range(n):
                channel = str(700000000000001000 + i % channels)
                t0 = time.monotonic()
                msg = await fake.say(channel, USER, f"<@{BOT_ID}> q{i}")
                sent[i] = (t0, msg["id"])
                if spread:
                    await service.settle(i + 2, limit=60)
            await service.settle(n + 1, limit=600)
        rows = measure(fake, gemini, sent)
        result = {
            "mentions": n,
            "channels": channels,
            "answered_completely": sum(r["complete"] for r in rows),
            "received_429": fake.count_429(),
            "rest_calls_per_reply": round(len(fake.calls[skip:]) / n, 2),
            "sign": summary_ms([r["sign_s"] for r in rows if r["sign_s"] is not None]),
            "chunk_to_text": summary_ms(
                [r["first_text_after_chunk_s"] for r in rows if r["first_text_after_chunk_s"]]
            ),
            "lag": summary_ms([r["lag_mean_s"] for r in rows if r["lag_mean_s"] is not None]),
            "final": summary_ms([r["final_s"] for r in rows if r["final_s"] is not None]),
        }
    await fake.close()
    await gemini.close()
    return result


async def main_async(quick: bool) -> dict[str, Any]:
    return {
        "one_at_a_time": await run(5 if quick else 20, channels=20, spread=True),
        "fifty_channels": await run(50, channels=50),
        "fifty_channels_raised_global": await run(50, channels=50, global_limit=None),
        "one_channel": await run(10 if quick else 50, channels=1),
    }


def main() -> dict[str, Any]:
    results = asyncio.run(main_async("--quick" in sys.argv))
    lines = [
        f"| {name} | {r['mentions']} | {r['answered_completely']} | {r['received_429']} | "
        f"{r['sign']['median_ms']} / {r['sign']['p99_ms']} | "
        f"{r['chunk_to_text']['median_ms']} / {r['chunk_to_text']['p99_ms']} | "
        f"{r['lag']['median_ms']} / {r['lag']['max_ms']} | "
        f"{r['final']['median_ms']} / {r['final']['max_ms']} | {r['rest_calls_per_reply']} |"
        for name, r in results.items()
    ]
    md = (
        "Fake Discord: 5 writes / 5 s per channel, 50 requests/s global; fake model: 600 chars "
        "in 30 chunks 50 ms apart.\n\n"
        "| scenario | mentions | complete | 429s | MESSAGE_CREATE -> sign ms (median / p99) | "
        "first chunk -> first text ms (median / p99) | visible-text lag per reply ms "
        "(median / max) | MESSAGE_CREATE -> final ms (median / max) | REST calls per reply |\n"
        "|---|---:|---:|---:|---|---|---|---|---:|\n" + "\n".join(lines)
    )
    path = write("discord_mentions", results, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
