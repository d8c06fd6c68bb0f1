"""One unreadable gateway event is skipped, never the end of the Discord connection.

discord.py's websocket hands every DISPATCH to `ConnectionState.parsers[event](data)`
(gateway.py, `DiscordWebSocket.received_message`) outside any try: an exception there
leaves `Client.connect()` and so `Client.start()`. Payloads Discord documents but
discord.py does not expect do that; a MESSAGE_CREATE whose poll has `"expiry": null` is
one (`Poll._from_data` parses it as a timestamp). Event *handlers* are already guarded
(discord.py calls `on_error`); the parsers are not, so we wrap each entry of that dict.

The warning names the event type, the exception type and where it was raised, never the
payload or the exception's message: an INTERACTION_CREATE carries an interaction token.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Parser = Callable[[Any], None]


def guard_parsers(parsers: dict[str, Parser]) -> None:
    """Wrap every parser in place (the websocket reads this very dict on each connect)."""
    for event, parse in list(parsers.items()):
        if not getattr(parse, "_guarded", False):
            parsers[event] = _guarded(event, parse)


def _guarded(event: str, parse: Parser) -> Parser:
    def run(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:  # one bad event must not end the session
            log.warning(
                "discord: skipped one %s gateway event that discord.py could not read (%s)",
                event,
                describe(exc),
            )

    run._guarded = True  # type: ignore[attr-defined]
    return run


def describe(exc: BaseException) -> str:
    """Exception type and innermost frame, plus a KeyError's key when it is a field name."""
    what = type(exc).__name__
    key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
    if isinstance(key, str) and key.isidentifier() and len(key) <= 40:
        what += f" {key!r}"  # a field name such as 'expiry', not a value
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        what += f" at {Path(last.filename).name}:{last.lineno} in {last.name}"
    return what
