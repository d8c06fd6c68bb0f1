"""Write benchmark results as JSON and Markdown under bench/reports/."""

from __future__ import annotations

import itertools
import json
import math
import platform
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parent / "reports"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    """Median, p95, p99, mean and max of seconds, in milliseconds (NaN when there are none)."""
    if not values:
        return dict.fromkeys(("median_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"), float("nan"))
    return {
        "median_ms": round(statistics.median(values) * 1000, 3),
        "p95_ms": round(pct(values, 95) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


def human_ms(ms: float) -> str:
    """Milliseconds for a table: "4.2 ms", "380 ms", "1.25 s", "14.3 s"; "–" for NaN."""
    if math.isnan(ms):
        return "–"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"


def pair(summary: dict[str, float], first: str, second: str) -> str:
    """Two figures of a `summary_ms` as "a / b" (keys without the `_ms`)."""
    return f"{human_ms(summary[first + '_ms'])} / {human_ms(summary[second + '_ms'])}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def squash(text: str) -> str:
    """`text` without whitespace (a split across messages may move or drop a space)."""
    return "".join(text.split())


def stream_marks(
    shown: list[tuple[float, str]], text: str, chunks: list[str], sent_at: list[float]
) -> dict[str, float | None]:
    """When a streamed reply became visible, from what the platform showed after each
    successful write (`shown`: (time, the reply's whole visible text), oldest first), the
    model's chunks and when the model sent each one.

    first_text_after_chunk_s: the model's first chunk -> the first write showing the
    reply's tag (its first word); lag_mean_s / lag_max_s: per chunk, the time from when
    the model sent it to the first write showing the text up to and including it;
    final_after_last_chunk_s: the last chunk -> the first write showing the whole text.
    Seconds; None where it never showed (or the model's times are missing)."""
    seen = [(at, squash(v)) for at, v in shown]
    tag = text.split()[0]
    first_text = next((at for at, v in seen if tag in v), None)
    lags = []
    for end, sent in zip(itertools.accumulate(map(len, chunks)), sent_at, strict=False):
        need = squash(text[:end])
        at = next((at for at, v in seen if v.startswith(need)), None)
        if at is not None:
            lags.append(max(0.0, at - sent))
    full = squash(text)
    final = next((at for at, v in seen if v == full), None)
    return {
        "first_text_at": first_text,
        "final_at": final,
        "first_text_after_chunk_s": first_text - sent_at[0]
        if first_text is not None and sent_at
        else None,
        "lag_mean_s": statistics.fmean(lags) if lags else None,
        "lag_max_s": max(lags) if lags else None,
        "final_after_last_chunk_s": final - sent_at[-1] if final is not None and sent_at else None,
    }


def pick(given: str | None, known: Iterable[str], default: tuple[str, ...]) -> list[str]:
    """Names from a comma-separated option ("ch10 N=50" spelt any way), else `default`."""
    if not given:
        return list(default)
    names = [g.replace(" ", "").replace("=", "") for g in given.split(",") if g.strip()]
    known = list(known)
    unknown = [g for g in names if g not in known]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def late_notes(config: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    """Runs where some finals came after the service counted every turn done."""
    return [
        f"\n{config} {scenario}: {r['finals_after_turns_done']} of {r['mentions']} replies "
        "showed their final text only after the service had counted every turn done (the "
        "engine stopped waiting for their delivery); the bench waited for them."
        for scenario, r in runs.items()
        if r.get("finals_after_turns_done")
    ]


def write(name: str, results: dict[str, Any], markdown: str) -> Path:
    """Save `results` and `markdown`; returns the Markdown path."""
    REPORTS.mkdir(exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    (REPORTS / f"{name}.json").write_text(json.dumps({**meta, **results}, indent=2))
    md = REPORTS / f"{name}.md"
    md.write_text(f"# {name}\n\n_{meta['when']}, Python {meta['python']}_\n\n{markdown}\n")
    return md
