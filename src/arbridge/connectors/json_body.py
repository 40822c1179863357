"""Request bodies with exact amounts: Decimal written as a JSON number literal, never a float."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

DECIMAL_MARK = re.compile(r'"(__decimal_\d+__)"')


def decimal_json(payload: Any) -> str:
    """JSON with Decimal amounts written as exact number literals (json.dumps refuses Decimal)."""
    marks: dict[str, str] = {}

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            mark = f"__decimal_{len(marks)}__"
            marks[mark] = format(value, "f")
            return mark
        raise TypeError(f"cannot serialise {type(value).__name__}")

    text = json.dumps(payload, default=default)
    return DECIMAL_MARK.sub(lambda m: marks[m.group(1)], text) if marks else text
