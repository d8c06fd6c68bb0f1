"""Turn rows: the column list, the insert statement and row <-> Turn conversion."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.types import Author, NewTurn, Turn, TurnUpdate, Usage
from storage.codec import dump_parts, load_parts

TURN_COLS = (
    "id, seq, role, author_id, author_name, author_is_bot, parts, status, finish_reason, "
    "prompt_tokens, output_tokens, token_estimate, message_ids, error, created_at, attempts, "
    "tool_tokens, cached_tokens"
)


def turn_from_row(row: Any) -> Turn:
    """A Turn from a row of TURN_COLS."""
    (
        id_,
        seq,
        role,
        a_id,
        a_name,
        a_bot,
        parts,
        status,
        finish,
        p_tok,
        o_tok,
        est,
        mids,
        err,
        at,
        attempts,
        t_tok,
        c_tok,
    ) = row
    author = Author(str(a_id), str(a_name), bool(a_bot)) if a_id is not None else None
    return Turn(
        id=int(id_),
        seq=int(seq),
        role=role,
        parts=load_parts(str(parts)),
        author=author,
        status=status,
        finish_reason=finish,
        usage=Usage(int(p_tok), int(o_tok), int(t_tok), int(c_tok)),
        token_estimate=int(est),
        message_ids=tuple(json.loads(str(mids))),
        error=err,
        created_at=at if isinstance(at, datetime) else datetime.fromisoformat(str(at)),
        attempts=int(attempts),
    )


# The columns a new turn writes, after conversation_id, seq and created_at (which each
# engine fills its own way), in the order of turn_values().
NEW_TURN_COLS = (
    "role, author_id, author_name, author_is_bot, parts, status, finish_reason, "
    "prompt_tokens, output_tokens, token_estimate, message_ids, error, tool_tokens, "
    "cached_tokens"
)

INSERT_TURN = (
    f"INSERT INTO turns (conversation_id, seq, created_at, {NEW_TURN_COLS}) VALUES (?, "
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation_id=?), "
    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, seq"
)


def turn_values(turn: NewTurn) -> tuple[Any, ...]:
    """The values of NEW_TURN_COLS for `turn`."""
    a = turn.author
    return (
        turn.role,
        a.id if a else None,
        a.name if a else None,
        int(a.is_bot) if a else 0,
        dump_parts(turn.parts),
        turn.status,
        turn.finish_reason,
        turn.usage.prompt_tokens,
        turn.usage.output_tokens,
        turn.token_estimate,
        json.dumps(list(turn.message_ids)),
        turn.error,
        turn.usage.tool_tokens,
        turn.usage.cached_tokens,
    )


def turn_params(conversation_id: int, turn: NewTurn, created: datetime) -> tuple[Any, ...]:
    """The parameters of (SQLite's) INSERT_TURN for `turn`."""
    return (conversation_id, conversation_id, created.isoformat(), *turn_values(turn))


def changed_columns(change: TurnUpdate) -> list[tuple[str, Any]]:
    """The (column, value) pairs a TurnUpdate sets, in a fixed order."""
    u = change.usage
    pairs: list[tuple[str, Any]] = [
        ("parts", None if change.parts is None else dump_parts(change.parts)),
        ("status", change.status),
        ("finish_reason", change.finish_reason),
        ("prompt_tokens", u.prompt_tokens if u else None),
        ("output_tokens", u.output_tokens if u else None),
        ("tool_tokens", u.tool_tokens if u else None),
        ("cached_tokens", u.cached_tokens if u else None),
        ("token_estimate", change.token_estimate),
        (
            "message_ids",
            None if change.message_ids is None else json.dumps(list(change.message_ids)),
        ),
        ("error", change.error),
        ("attempts", change.attempts),
    ]
    return [(col, value) for col, value in pairs if value is not None]
