"""Charging a plan's installments, the pure part: which one is due, which need a notice first, and
what happens after a charge fails. The worker and the plans service carry these decisions out.

The rules, in plain terms:
- Installments are charged in order. The installment due on a day is the earliest one not yet
  settled (paid or dropped) whose date has come; a later one waits while an earlier one is
  unpaid, so a customer is never charged twice in one run for a missed day.
- A notice goes out `days_before` days before an installment's date (or at once, when the plan
  was made closer to the date than that), once, and never on or after the date itself.
- A failed charge is retried RETRY_AFTER_DAYS after the first failure (3, 5 and 7 days later),
  while the customer also has a link to pay that installment themselves. When the last retry
  fails, the plan defaults.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from arbridge.clock import day_text
from arbridge.collections.plans import Installment

# Days after an installment's first failed charge on which it is charged again.
RETRY_AFTER_DAYS = (3, 5, 7)
NOTICE_DAYS_BEFORE = 3  # the default for `days_before`

RETRY, WAIT, DEFAULT = "retry", "wait", "default"


def _unsettled(installments: Sequence[Installment], settled: Collection[int]) -> list[Installment]:
    return sorted(
        (i for i in installments if i.number not in settled), key=lambda i: (i.due_on, i.number)
    )


def due_installment(
    installments: Sequence[Installment], settled: Collection[int], as_of: date
) -> Installment | None:
    """The installment to charge on `as_of`: the earliest not settled (its number is not in
    `settled`: paid or dropped), if its date has come; None when nothing is due."""
    pending = _unsettled(installments, settled)
    if pending and pending[0].due_on <= as_of:
        return pending[0]
    return None


def notices_due(
    installments: Sequence[Installment],
    settled: Collection[int],
    noticed: Collection[int],
    as_of: date,
    days_before: int = NOTICE_DAYS_BEFORE,
) -> list[Installment]:
    """The installments that need their pre-charge notice sent on `as_of`: not settled, not
    noticed yet, and `as_of` within `days_before` days before the date (the day itself is
    too late: the charge's own receipt says it)."""
    if days_before < 0:
        raise ValueError("days_before is zero or more")
    return [
        i
        for i in _unsettled(installments, settled)
        if i.number not in noticed and i.due_on - timedelta(days=days_before) <= as_of < i.due_on
    ]


@dataclass(frozen=True)
class RetryDecision:
    action: str  # RETRY (charge again today), WAIT (until `next_on`) or DEFAULT
    next_on: date | None  # the next retry's date; None once the plan defaults
    reason: str


def retry_on(first_failed_on: date, failed_attempts: int) -> date | None:
    """The date of the next charge after `failed_attempts` failures (the first charge counts as
    one), or None when every retry has been used and the plan defaults."""
    if failed_attempts < 1:
        raise ValueError("a retry follows at least one failed charge")
    if failed_attempts > len(RETRY_AFTER_DAYS):
        return None
    return first_failed_on + timedelta(days=RETRY_AFTER_DAYS[failed_attempts - 1])


def after_failure(first_failed_on: date, failed_attempts: int, as_of: date) -> RetryDecision:
    """What to do on `as_of` with an installment whose charge has failed `failed_attempts`
    times, the first on `first_failed_on` (for ACH, the day the failure was reported)."""
    next_on = retry_on(first_failed_on, failed_attempts)
    if next_on is None:
        return RetryDecision(DEFAULT, None, f"the charge failed {failed_attempts} times")
    if as_of >= next_on:
        return RetryDecision(RETRY, next_on, f"retry {failed_attempts} of {len(RETRY_AFTER_DAYS)}")
    return RetryDecision(WAIT, next_on, f"next retry on {day_text(next_on)}")
