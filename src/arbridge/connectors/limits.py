"""What every ledger connector shares about pacing its own requests in one process.

`MinuteLimiter` keeps a provider's per-minute and in-flight limits for one company in this
process (`sync/call_limits.py` keeps the budget across processes, in the database). It waits a
few seconds at most: a longer wait raises RateLimited with the time to come back, so a job is
rescheduled and a page answers instead of hanging for a minute.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from arbridge.connectors.retry import MAX_WAIT
from arbridge.errors import RateLimited


class Limiter(Protocol):
    def slot(self) -> AbstractContextManager[None]:
        """Wait for a call slot; hold it for the length of one request."""
        ...


class MinuteLimiter:
    """At most `per_minute` request starts in any 60 s and `concurrent` requests in flight.

    A provider's subclass names its own limits and label as class attributes."""

    PER_MINUTE = 60
    CONCURRENT = 5
    LABEL = "The ledger"

    def __init__(
        self,
        per_minute: int | None = None,
        concurrent: int | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.per_minute = per_minute if per_minute is not None else self.PER_MINUTE
        concurrent = concurrent if concurrent is not None else self.CONCURRENT
        self.label = self.LABEL
        self.monotonic = monotonic
        self.sleep = sleep
        self.max_wait = max_wait
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
                    raise RateLimited(
                        f"{self.label} allows {self.per_minute} calls a minute per company", wait
                    )
                self.sleep(pause)
                waited += pause
            yield


class LimiterPerCompany:
    """One limiter per company id per process: every connector built for the same company here
    (sync job, webhook handler, write-back) must share the provider's per-company limit."""

    def __init__(self, make: Callable[[], MinuteLimiter]) -> None:
        self._make = make
        self._limiters: dict[str, MinuteLimiter] = {}
        self._lock = threading.Lock()

    def __call__(self, company_id: str) -> MinuteLimiter:
        with self._lock:
            limiter = self._limiters.get(company_id)
            if limiter is None:
                limiter = self._limiters[company_id] = self._make()
            return limiter
