"""What every QuickBooks request shares: the pinned minor version and timeouts, the token source,
the per-realm call limiter, Intuit's Fault bodies read into a code and a message, exact Decimal
JSON, and our outbox key as Intuit's requestid.

Limits (Intuit "API call limits and throttles"): 500 requests a minute and about 10 in flight per
realm; a throttle is HTTP 429 with Fault code 3001, JSON or XML; Intuit asks for a 60 s wait.
"""

from __future__ import annotations

import hashlib
import json
import re

from arbridge.connectors.limits import LimiterPerCompany, MinuteLimiter

MINOR_VERSION = "75"  # the minimum Intuit accepts since August 2025; pinned
TIMEOUT = (10, 120)  # Intuit times a request out after 120 s
THROTTLE_WAIT = 60.0
REQUEST_ID_MAX = 50

XML_CODE = re.compile(r"<Error[^>]*\bcode=\"(\d+)\"")
XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class RealmLimiter(MinuteLimiter):
    """Intuit's limits for one realm in this process: 500 request starts a minute, 10 in flight."""

    PER_MINUTE = 500
    CONCURRENT = 10
    LABEL = "QuickBooks"


# The limit is Intuit's per realm: every connector built for one realm here shares a limiter.
limiter_for = LimiterPerCompany(RealmLimiter)


class Unauthorized(Exception):
    pass


def read_fault(body: str, content_type: str) -> tuple[str | None, str]:
    """The first Fault error code and message, from a JSON or an XML body."""
    if "xml" in content_type or body.lstrip().startswith("<"):
        code = XML_CODE.search(body)
        message = XML_MESSAGE.search(body)
        return (code.group(1) if code else None, message.group(1) if message else body[:200])
    try:
        data = json.loads(body)
    except ValueError:
        return None, body[:200]
    errors = ((data or {}).get("Fault") or {}).get("Error") or [{}]
    first = errors[0] if isinstance(errors, list) and errors else {}
    detail = first.get("Detail") or first.get("Message") or ""
    return (str(first["code"]) if first.get("code") is not None else None, str(detail)[:300])


def request_id(key: str) -> str:
    """Our outbox key as Intuit's requestid (at most 50 characters: longer keys are hashed)."""
    if len(key) <= REQUEST_ID_MAX:
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()[: REQUEST_ID_MAX - 2]
