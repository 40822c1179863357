"""The Checkout Sessions open for a company's invoices: at most one takes an invoice's money."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.connectors.stripe.gateway import PaymentGateway
from arbridge.errors import Rejected
from arbridge.runtime import Runtime
from arbridge.sync.model import CheckoutSessionRow, CollectedPayment, Invoice
from arbridge.sync.outbox_kinds import stripe_expire_key


def lock_invoices(s: Session, invoice_ids: Sequence[int]) -> None:
    """Hold these invoices' rows until the transaction ends: two checkouts opening for the same
    invoice (two links, two presses) take turns, each seeing the other's session (PostgreSQL;
    SQLite writes one transaction at a time)."""
    s.execute(
        select(Invoice.id)
        .where(Invoice.id.in_(sorted(set(invoice_ids))))
        .order_by(Invoice.id)  # one order for every taker: two never wait on each other
        .with_for_update()
    )


def open_sessions_taking(
    s: Session, company_id: int, invoice_ids: Iterable[int], now: datetime, *, lock: bool = False
) -> list[CheckoutSessionRow]:
    """The company's Checkout Sessions still open that take any of these invoices (`lock`: their
    rows held until the transaction ends)."""
    query = select(CheckoutSessionRow).where(
        CheckoutSessionRow.company_id == company_id,
        CheckoutSessionRow.status == "open",
        CheckoutSessionRow.expires_at > now,
    )
    if lock:
        query = query.with_for_update()
    wanted = set(invoice_ids)
    return [row for row in s.scalars(query) if wanted & set(row.invoice_ids or ())]


def close_overlapping(
    rt: Runtime, s: Session, gateway: PaymentGateway, company_id: int, invoice_ids: Sequence[int]
) -> None:
    """Before a new Checkout Session for these invoices (locked: `lock_invoices`) opens, close at
    Stripe every other open one that takes any of them (another link, a statement, a second
    tab): at most one session can take an invoice's money at a time. They were closed only once
    a payment came in, so two tabs paid before the worker's next round both charged the
    customer. One already paid whose payment is not recorded yet refuses the new one."""
    for other in open_sessions_taking(s, company_id, invoice_ids, rt.clock.now()):
        closed = gateway.expire_checkout_session(
            other.stripe_session_id, stripe_expire_key(other.stripe_session_id)
        )
        if closed.status == "complete":
            recorded = s.scalar(
                select(CollectedPayment.id).where(
                    CollectedPayment.checkout_session_id == other.stripe_session_id
                )
            )
            if recorded is None:
                raise Rejected(
                    "a payment for this invoice has just been made and is being recorded: "
                    "refresh this page in a minute"
                )
            # Its payment is recorded (and what it paid no longer settles the invoice: a bank
            # debit that failed, say): it takes no more money.
            other.status = "complete"
            continue
        other.status = "expired"  # never handed out again
