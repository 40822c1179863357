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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any, Protocol

from arbridge.connectors.retry import MAX_WAIT
from arbridge.errors import RateLimited

MINOR_VERSION = "75"  # the minimum Intuit accepts since August 2025; pinned
TIMEOUT = (10, 120)  # Intuit times a request out after 120 s
THROTTLE_WAIT = 60.0
REQUEST_ID_MAX = 50

DECIMAL_MARK = re.compile(r'"(__decimal_\d+__)"')
XML_CODE = re.compile(r"<Error[^>]*\bcode=\"(\d+)\"")
XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class TokenSource(Protocol):
    """Where the connector gets its access token; implemented over the database by sync/."""

    def access_token(self) -> str: ...

    def refresh(self, stale: str) -> str:
        """A fresh access token, unless another worker already replaced `stale`."""
        ...

    def give_up(self, reason: str) -> None:
        """The grant is dead: mark the connection for reconnecting and tell the owner."""
        ...


class Limiter(Protocol):
    def slot(self) -> AbstractContextManager[None]:
        """Wait for a call slot; hold it for the length of one request."""
        ...


class RealmLimiter:
    """At most `per_minute` request starts in any 60 s and `concurrent` requests in flight.

    It sleeps at most `max_wait` seconds for a start: a longer wait raises RateLimited with the
    time to come back, so a job is rescheduled and a page answers instead of hanging a minute."""

    def __init__(
        self,
        per_minute: int = 500,
        concurrent: int = 10,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.per_minute = per_minute
        self.max_wait = max_wait
        self.monotonic = monotonic
        self.sleep = sleep
        self._slots = threading.BoundedSemaphore(concurrent)
        self._lock = threading.Lock()
        self._started: deque[float] = deque()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            waited = 0.0
            while True:
                with self._lock:
                    now = self.monotonic()
                    while self._started and self._started[0] <= now - 60:
                        self._started.popleft()
                    if len(self._started) < self.per_minute:
                        self._started.append(now)
                        break
                    wait = self._started[0] + 60 - now
                pause = max(wait, 0.001)
                if waited + pause > self.max_wait:
                    raise RateLimited("QuickBooks allows 500 calls a minute per company", wait)
                self.sleep(pause)
                waited += pause
            yield


# One limiter per realm per process: the limit is Intuit's per realm, so every connector built for
# the same realm in this process (sync job, webhook handler, write-back) must share it.
_LIMITERS: dict[str, RealmLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(realm_id: str) -> RealmLimiter:
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(realm_id, RealmLimiter())


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


def request_id(key: str) -> str:
    """Our outbox key as Intuit's requestid (at most 50 characters: longer keys are hashed)."""
    if len(key) <= REQUEST_ID_MAX:
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()[: REQUEST_ID_MAX - 2]
