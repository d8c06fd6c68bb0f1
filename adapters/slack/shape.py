"""Is a Slack payload shaped well enough for Bolt to route? (HTTP and Socket Mode alike.)

Bolt reads ids from a payload before any listener runs (team, user, channel, thread_ts,
authorizations...) with code that assumes Slack's types: an `int` team or a list subtype
raises inside Bolt. Payloads come from Slack, but a checker here is cheap and keeps odd ones
to one log line. The fields the adapter itself reads are checked again, strictly, by
adapters/slack/events.py.
"""

from __future__ import annotations

from typing import Any

# Fields that are strings wherever Slack sends them (top level, event, nested message).
STRING_FIELDS = (
    "type",
    "subtype",
    "user_id",
    "channel_id",
    "team_id",
    "user_team",
    "source_team",
    "enterprise_id",
    "ts",
    "thread_ts",
    "event_ts",
    "channel_type",
    "bot_id",
    "text",
    "app_id",
    "api_app_id",
    "event_id",
    "token",
    "response_url",
    "trigger_id",
    "callback_id",
    "command",
    "function_execution_id",
    "bot_access_token",
    "context_team_id",
    "context_enterprise_id",
    "challenge",
)
# Either an id string or an object carrying one (`{"id": "U1"}` in interactivity payloads).
ID_OR_OBJECT = ("user", "channel", "team", "enterprise")
# Nested objects Bolt descends into.
NESTED = ("message", "previous_message", "assistant_thread", "item", "view", "function_data")
MAX_DEPTH = 4


def _object_problem(obj: dict[str, Any], where: str, depth: int = 0) -> str | None:
    for name in STRING_FIELDS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            return f"{where}.{name} is a {type(value).__name__}"
    for name in ID_OR_OBJECT:
        value = obj.get(name)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, dict):
            return f"{where}.{name} is a {type(value).__name__}"
        problem = _object_problem(value, f"{where}.{name}", depth + 1)
        if problem is None and not isinstance(value.get("id", ""), str):
            problem = f"{where}.{name}.id is not a string"
        if problem is not None:
            return problem
    for name in NESTED:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            return f"{where}.{name} is a {type(value).__name__}"
        if depth < MAX_DEPTH and (problem := _object_problem(value, f"{where}.{name}", depth + 1)):
            return problem
    for name in ("authorizations", "response_urls"):
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return f"{where}.{name} is not a list of objects"
        for i, item in enumerate(value):
            if problem := _object_problem(item, f"{where}.{name}[{i}]", depth + 1):
                return problem
    return None


def envelope_problem(payload: dict[str, Any]) -> tuple[int, str] | None:
    """None if Bolt may see `payload`; else the HTTP status to answer and why.

    400: the envelope itself is not Slack's (no type or command, ids of the wrong type).
    200: a Slack event inside does not fit; it is acknowledged (so not retried) and dropped.
    """
    event = payload.get("event")
    outer = {k: v for k, v in payload.items() if k != "event"}
    # Everything Slack sends has a type, except slash commands, which have a command.
    if not isinstance(payload.get("type") or payload.get("command"), str):
        return 400, "neither a type nor a command"
    if problem := _object_problem(outer, "body"):
        return 400, problem
    if event is None and payload.get("type") != "event_callback":
        return None
    if not isinstance(event, dict):
        return 200, f"event is a {type(event).__name__}"
    if not isinstance(event.get("type"), str):
        return 200, "event has no type"
    if problem := _object_problem(event, "event"):
        return 200, problem
    return None


def event_label(payload: dict[str, Any]) -> str:
    """How a log line names a payload: its event id (or envelope type), short and printable."""
    event_id = payload.get("event_id")
    label = f"event {event_id}" if isinstance(event_id, str) else f"payload {payload.get('type')}"
    return label[:60].encode("ascii", "backslashreplace").decode()
