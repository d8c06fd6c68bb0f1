"""Turn rows: the column list, the insert statement and row <-> Turn conversion."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.types import Author, NewTurn, Turn, Usage
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
        created_at=datetime.fromisoformat(str(at)),
        attempts=int(attempts),
    )


INSERT_TURN = (
    "INSERT INTO turns (conversation_id, seq, role, author_id, author_name, "
    "author_is_bot, parts, status, finish_reason, prompt_tokens, output_tokens, "
    "token_estimate, message_ids, error, created_at, tool_tokens, cached_tokens) VALUES (?, "
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation_id=?), "
    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, seq"
)


def turn_params(conversation_id: int, turn: NewTurn, created: datetime) -> tuple[Any, ...]:
    """The parameters of INSERT_TURN for `turn`."""
    a = turn.author
    return (
        conversation_id,
        conversation_id,
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
        created.isoformat(),
        turn.usage.tool_tokens,
        turn.usage.cached_tokens,
    )
