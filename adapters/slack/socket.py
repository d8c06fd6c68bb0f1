"""Socket Mode with the same shape check as the HTTP door (adapters/slack/shape.py)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from adapters.slack.shape import envelope_problem, event_label

log = logging.getLogger(__name__)


class _OneLine(logging.Filter):
    """slack_sdk logs a frame it cannot parse (a list payload, say) with a traceback; what
    Slack sent is not our bug, so it becomes one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def socket_logger() -> logging.Logger:
    """The logger handed to the Socket Mode client."""
    logger = logging.getLogger("adapters.slack.socket_mode")
    if not any(isinstance(f, _OneLine) for f in logger.filters):
        logger.addFilter(_OneLine())
    return logger


class CheckedSocketModeHandler(AsyncSocketModeHandler):
    """Acknowledges and drops envelopes whose payload Bolt could not route."""

    async def handle(self, client: Any, req: SocketModeRequest) -> None:
        """Check the payload's shape, then let Bolt dispatch it."""
        problem = envelope_problem(req.payload)
        if problem is not None:
            log.warning("slack: dropped %s: %s", event_label(req.payload), problem[1])
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        await super().handle(client, req)
