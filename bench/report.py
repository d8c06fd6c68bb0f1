"""Write benchmark results as JSON and Markdown under bench/reports/."""

from __future__ import annotations

import json
import platform
import statistics
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
    """Median, p99, mean and max of seconds, in milliseconds (NaN when there are none)."""
    if not values:
        return dict.fromkeys(("median_ms", "p99_ms", "mean_ms", "max_ms"), float("nan"))
    return {
        "median_ms": round(statistics.median(values) * 1000, 3),
        "p99_ms": round(pct(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


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
