"""`python -m bot` with tracemalloc on request, for bench/discord_rss.py --trace (never deployed).

Tracing from the start would trace every import (minutes, with google.genai and pydantic),
so it starts on the first SIGUSR1; every later SIGUSR1 writes a snapshot (what was allocated
since then and is still alive) to $BENCH_TRACEMALLOC_FILE. Either way an empty `.done` file
beside it then tells the bench it may go on.
"""

from __future__ import annotations

import gc
import os
import runpy
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "6"))


def _on_signal(signum: int, frame: FrameType | None) -> None:
    path = Path(os.environ["BENCH_TRACEMALLOC_FILE"])
    gc.collect()  # count only what is still reachable
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
    else:
        tracemalloc.take_snapshot().dump(str(path))
    path.with_suffix(".done").touch()


def main() -> None:
    """Run the service as `python -m bot` would, ready to trace on SIGUSR1."""
    signal.signal(signal.SIGUSR1, _on_signal)
    runpy.run_module("bot", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
