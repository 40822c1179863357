"""The one retry loop of every HTTP connector: only RateLimited and Transient are retried,
honouring Retry-After, and never with a sleep longer than a few seconds.

A connector call usually runs inside a worker job that holds its job row locked (and on SQLite,
perhaps the database's write lock), so a long wait here would hold them all: a throttle that
asks for longer than `max_wait` (QuickBooks asks for 60 s) leaves as RateLimited(retry_after),
and the job, the outbox or the webhook inbox tries again at that time instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from arbridge.errors import RateLimited, Transient

log = logging.getLogger(__name__)

T = TypeVar("T")

# The longest sleep inside a call; the transient backoff (1, 2, 4, 8 s) stays under it.
MAX_WAIT = 10.0
MAX_THROTTLE_RETRIES = 5
MAX_TRANSIENT_RETRIES = 4


class RetryNow(Exception):
    """Raised by an attempt that fixed what failed (a refreshed token): try again at once."""


def with_retries(
    attempt: Callable[[], T],
    *,
    sleep: Callable[[float], None],
    what: str,
    max_wait: float = MAX_WAIT,
    max_throttles: int = MAX_THROTTLE_RETRIES,
    max_transients: int = MAX_TRANSIENT_RETRIES,
) -> T:
    throttles = transients = 0
    while True:
        try:
            return attempt()
        except RetryNow:
            continue
        except RateLimited as e:
            throttles += 1
            if throttles > max_throttles or e.retry_after > max_wait:
                raise
            log.warning("%s throttled; waiting %ss", what, e.retry_after)
            sleep(e.retry_after)
        except Transient as e:
            transients += 1
            if transients > max_transients:
                raise
            wait = min(2.0 ** (transients - 1), max_wait)
            log.warning("%s failed (%s); retrying in %ss", what, e, wait)
            sleep(wait)
