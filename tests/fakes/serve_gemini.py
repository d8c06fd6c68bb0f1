"""Run the fake Gemini on its own, to try the bot by hand without a Gemini key:

    .venv/bin/python -m tests.fakes.serve_gemini --port 8765 [--unreadable URL ...]

then point the bot at it (GEMINI_API_KEY=fake-gemini-key,
GEMINI_BASE_URL=http://127.0.0.1:8765). With nothing scripted it answers from the request:
an echo; grounded on two web sources when Google Search is on; URL-context statuses for
the links in the message; code, output and a chart for "plot"/"chart"/"run" with code
execution; a PNG (blue, green or else red, by the words in the message) from image models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.fakes.gemini import API_KEY, FakeGemini


async def serve(port: int, unreadable: list[str]) -> None:
    """Serve until interrupted."""
    fake = FakeGemini()
    fake.unreadable_urls = set(unreadable)
    url = await fake.start(port)
    print(f"fake Gemini on {url} (GEMINI_API_KEY={API_KEY}); Ctrl-C stops it", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--unreadable", nargs="*", default=[], help="links it cannot read")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.unreadable))


if __name__ == "__main__":
    main()
