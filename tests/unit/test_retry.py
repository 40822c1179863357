"""The connectors' one retry loop: short waits are slept, long throttles are handed back."""

from __future__ import annotations

import pytest

from arbridge.connectors.retry import MAX_WAIT, RetryNow, with_retries
from arbridge.errors import RateLimited, Transient


def failing(*errors: Exception):
    queue = list(errors)

    def attempt() -> str:
        if queue:
            raise queue.pop(0)
        return "ok"

    return attempt


def test_transient_failures_back_off_within_the_cap():
    sleeps: list[float] = []
    attempt = failing(*(Transient("503") for _ in range(4)))
    assert with_retries(attempt, sleep=sleeps.append, what="x") == "ok"
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    assert max(sleeps) <= MAX_WAIT


def test_a_short_throttle_is_waited_and_a_long_one_handed_back():
    sleeps: list[float] = []
    assert with_retries(failing(RateLimited("slow", 3)), sleep=sleeps.append, what="x") == "ok"
    assert sleeps == [3]
    with pytest.raises(RateLimited) as limited:
        with_retries(failing(RateLimited("slow", 60)), sleep=sleeps.append, what="x")
    assert limited.value.retry_after == 60 and sleeps == [3]


def test_retry_now_tries_again_without_waiting_or_counting():
    sleeps: list[float] = []
    attempt = failing(*(RetryNow() for _ in range(10)))
    assert with_retries(attempt, sleep=sleeps.append, what="x") == "ok" and sleeps == []


def test_too_many_failures_end_the_call():
    with pytest.raises(Transient):
        with_retries(failing(*(Transient("x") for _ in range(5))), sleep=lambda _s: None, what="x")
