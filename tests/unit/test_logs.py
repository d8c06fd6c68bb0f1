from __future__ import annotations

import logging

from bot.logs import RedactSecrets


def test_secrets_are_masked_in_messages_and_tracebacks() -> None:
    f = RedactSecrets(["AIzaSuperSecret", "xoxb-123456"])
    rec = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "key=%s token=%s", ("AIzaSuperSecret", "xoxb-123456"), None
    )
    assert f.filter(rec)
    assert rec.getMessage() == "key=*** token=***"
    try:
        raise RuntimeError("bad key AIzaSuperSecret")
    except RuntimeError:
        import sys

        rec2 = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    f.filter(rec2)
    assert "AIzaSuperSecret" not in (rec2.exc_text or "")
    assert "bad key ***" in (rec2.exc_text or "")
