"""The outbox: every outside side effect (email, charge, ledger write-back) happens through a row.

`enqueue` writes the row inside the caller's transaction, under a unique key, so the decision and
the intent to act commit together and a second decision with the same key is a no-op. `deliver`
claims due rows with FOR UPDATE SKIP LOCKED, marks them `sending` and commits before calling the
handler, then records the outcome. A row found still `sending` after its lease means a crash
between the call and the record: it is retried only for kinds whose provider takes our key as an
idempotency key (Stripe, QuickBooks requestid, Xero Idempotency-Key); for the rest (SMTP) it is
`maybe_sent`, because sending twice is worse than asking. A handler that raises `Unconfirmed`
(the request went out, its answer did not come back) leaves the row `maybe_sent` too: never
retried, shown to the owner with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.errors import NotYet, RateLimited, Transient, Unconfirmed
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import OutboxMessage

log = logging.getLogger(__name__)

# Longer than the slowest single send: SMTP may wait 10 minutes for the reply to the end of DATA
# (RFC 5321 4.5.3.2.6) after its connect and commands, and a send still waiting must not be
# taken for a crashed one.
LEASE = timedelta(minutes=15)
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Handler:
    """Carries out one kind of side effect; returns the provider's reference for the record."""

    send: Callable[[OutboxMessage], str | None]
    # True when the provider deduplicates on our key, so a retry after a crash is safe.
    idempotent: bool
    # Called once when a drain ends: a handler that kept something open for the next row (an
    # SMTP connection) closes it.
    done: Callable[[], None] | None = None


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, ... minutes, capped at six hours."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 360))


def enqueue(
    session: Session, clock: Clock, *, company_id: int, kind: str, key: str, payload: dict[str, Any]
) -> bool:
    """Queue a side effect once per key; returns False when the key was already queued."""
    stmt = (
        dialect_insert(session)(OutboxMessage.__table__)
        .values(
            company_id=company_id,
            kind=kind,
            key=key,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=clock.now(),
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(OutboxMessage.__table__.c.id)
    )
    return session.execute(stmt).scalar() is not None


def _claim(
    factory: sessionmaker[Session], clock: Clock, kinds: list[str]
) -> tuple[OutboxMessage, bool] | None:
    now = clock.now()
    while True:
        with transaction(factory) as session:
            row = session.scalar(
                select(OutboxMessage)
                .where(
                    OutboxMessage.kind.in_(kinds),
                    or_(
                        (OutboxMessage.status == "pending")
                        & (OutboxMessage.next_attempt_at <= now),
                        (OutboxMessage.status == "sending")
                        & (OutboxMessage.next_attempt_at <= now - LEASE),
                    ),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            session.expunge(row)
            # Taken only if nobody took it since it was read: on PostgreSQL the row lock already
            # says so, but SQLite has no row locks (FOR UPDATE does nothing there), and two
            # workers that both read the row before either wrote each sent it. A claim adds one
            # to `attempts`, so a row still at the count read is one nobody else has claimed.
            taken = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row.id,
                    OutboxMessage.status == row.status,
                    OutboxMessage.attempts == row.attempts,
                )
                .values(attempts=row.attempts + 1, next_attempt_at=now, status="sending")
                .execution_options(synchronize_session=False)
            ).rowcount
        if taken:
            recovering = row.status == "sending"
            row.attempts, row.next_attempt_at, row.status = row.attempts + 1, now, "sending"
            return row, recovering
        log.info("outbox %s %s was taken by another worker first", row.kind, row.key)


WHAT = {
    "email": "An email",
    "sms": "A text message",
    "ledger_payment": "A payment's write-back to your ledger",
    "ledger_discount": "A discount's write-back to your ledger",
    "ledger_reversal": "Reversing a payment in your ledger",
    "ledger_fee_invoice": "A late fee or interest invoice in your ledger",
    "ledger_fee_void": "Voiding a waived late fee in your ledger",
    "stripe_refund": "A refund through Stripe",
    "stripe_expire_session": "Closing another open checkout for a paid invoice",
    "plan_charge": "An installment plan's charge",
    "invoice_send": "Sending an invoice to its customer",
}


def _finish(
    factory: sessionmaker[Session], row_id: int, clock: Clock | None = None, **changes: Any
) -> None:
    with transaction(factory) as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        for name, value in changes.items():
            setattr(row, name, value)
        if clock is not None and row.status == "maybe_sent":
            log_activity(
                session,
                clock,
                row.company_id,
                "outbox.maybe_sent",
                f"{WHAT.get(row.kind, row.kind)} may have gone through but was not confirmed; "
                f"it will not be repeated: {row.last_error}",
                outbox_key=row.key,
            )
        elif clock is not None and row.status in ("failed", "dead"):
            # Given up on: the owner sees it on the activity log, with the reason.
            log_activity(
                session,
                clock,
                row.company_id,
                "outbox.failed",
                f"{WHAT.get(row.kind, row.kind)} could not be completed: {row.last_error}",
                outbox_key=row.key,
            )


def deliver(
    factory: sessionmaker[Session], clock: Clock, handlers: Mapping[str, Handler], limit: int = 100
) -> int:
    """Carry out up to `limit` due side effects; return how many were attempted. Each handler's
    `done` is called at the end, whatever happened."""
    try:
        return _carry_out(factory, clock, handlers, limit)
    finally:
        for handler in handlers.values():
            if handler.done is not None:
                try:
                    handler.done()
                except Exception:  # closing politely failed: the rows' outcomes are recorded
                    log.exception("closing the outbox handler %r failed", handler)


def _carry_out(
    factory: sessionmaker[Session], clock: Clock, handlers: Mapping[str, Handler], limit: int
) -> int:
    done = 0
    while done < limit:
        claimed = _claim(factory, clock, list(handlers))
        if claimed is None:
            break
        row, recovering = claimed
        done += 1
        handler = handlers[row.kind]
        if recovering and not handler.idempotent:
            log.error("outbox %s %s was interrupted mid-send; not resending", row.kind, row.key)
            # Nobody knows whether it went: "maybe sent", told to the owner, never repeated.
            _finish(
                factory,
                row.id,
                clock,
                status="maybe_sent",
                last_error="interrupted while sending; it may or may not have gone out",
            )
            continue
        try:
            ref = handler.send(row)
        except Unconfirmed as e:
            log.error("outbox %s %s was not confirmed; not retrying: %s", row.kind, row.key, e)
            _finish(
                factory,
                row.id,
                clock,
                status="maybe_sent",
                sent_at=clock.now(),
                last_error=str(e)[:2000],
            )
        except NotYet as e:
            # Not a try: back to waiting, its count as it was, until the moment it may go (a
            # minute at least, should that moment be past already).
            log.info("outbox %s %s waits until %s: %s", row.kind, row.key, e.at.isoformat(), e)
            _finish(
                factory,
                row.id,
                status="pending",
                attempts=row.attempts - 1,
                next_attempt_at=max(e.at, clock.now() + timedelta(minutes=1)),
                last_error=str(e)[:2000],
            )
        except (Transient, RateLimited) as e:
            wait = (
                timedelta(seconds=e.retry_after)
                if isinstance(e, RateLimited)
                else backoff(row.attempts)
            )
            final = row.attempts >= MAX_ATTEMPTS
            log.warning("outbox %s %s attempt %s failed: %s", row.kind, row.key, row.attempts, e)
            _finish(
                factory,
                row.id,
                clock,
                status="dead" if final else "pending",
                next_attempt_at=clock.now() + wait,
                last_error=str(e)[:2000],
            )
        except Exception as e:  # a permanent failure: keep the row and the reason, never retry
            log.exception("outbox %s %s failed permanently", row.kind, row.key)
            _finish(
                factory,
                row.id,
                clock,
                status="failed",
                last_error=f"{type(e).__name__}: {e}"[:2000],
            )
        else:
            _finish(
                factory,
                row.id,
                status="sent",
                sent_at=clock.now(),
                provider_ref=ref,
                last_error=None,
            )
    return done
