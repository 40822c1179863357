"""Money going back or coming back after a success (refund, dispute, ACH return, a dispute won):
reopen or re-apply invoices, and queue one restatement of the payment in the ledger."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import local_date
from arbridge.collections.payments import (
    Due,
    apply_payment,
)
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.payments.events import DISPUTE_CLOSED, DISPUTE_KEPT, Observed
from arbridge.sync.activity import log_activity
from arbridge.sync.model import (
    CollectedPayment,
    Company,
    Customer,
    Invoice,
    OutboxMessage,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox_kinds import (
    LedgerReversal,
    ledger_payment_key,
    ledger_reversal_prefix,
    owner_mail_key,
    queue,
)
from arbridge.sync.store import ledger_connection

log = logging.getLogger(__name__)


def row_money(row: CollectedPayment) -> Money:
    return Money.from_minor(row.amount_minor, row.currency)


def tell_overpaid(
    rt: Runtime, s: Session, company_id: int, row: CollectedPayment, text: str
) -> None:
    """An overpayment the owner must see at once: on the activity log and by email (once per
    payment, whichever path found it)."""
    log_activity(
        s, rt.clock, company_id, "payment.overpaid", text, payment_intent=row.payment_intent_id
    )
    tell_owner(
        s,
        rt.clock,
        company_id,
        key=owner_mail_key(company_id, f"overpaid:{row.payment_intent_id}"),
        subject="A customer overpaid",
        text=text,
    )


def refund(rt: Runtime, s: Session, row: CollectedPayment, refunded_total: Money) -> None:
    """Stripe reports the charge's refunded total; act on what is new since the last report."""
    already = row.refunded_minor
    if refunded_total.minor <= already:
        return  # a duplicate or an older refund event
    row.refunded_minor = refunded_total.minor
    if refunded_total.minor >= row.amount_minor:
        row.status = "refunded"
    company = s.get(Company, row.company_id)
    assert company is not None
    # A refund takes back the overpayment first; only the rest reopens invoices.
    over = row.unapplied_minor
    reopen = (refunded_total.minor - min(refunded_total.minor, over)) - (
        already - min(already, over)
    )
    if reopen > 0:
        reverse(rt, s, company, row, Money.from_minor(reopen, row.currency), reason="refunded")
    else:
        back = Money.from_minor(refunded_total.minor - already, row.currency)
        log_activity(
            s,
            rt.clock,
            company.id,
            "payment.refunded",
            f"Refunded {back.format()} of an overpayment",
            payment_intent=row.payment_intent_id,
        )


def reverse(
    rt: Runtime, s: Session, company: Company, row: CollectedPayment, amount: Money, reason: str
) -> None:
    """Money went back (refund, dispute, ACH return): reopen invoices and fix the ledger."""
    left = amount.minor
    invoices = {
        inv.id: inv
        for inv in s.scalars(
            select(Invoice)
            .where(Invoice.id.in_([a.invoice_id for a in row.allocations]))
            .with_for_update()
        )
    }
    for alloc in sorted(row.allocations, key=lambda a: -a.invoice_id):
        if left <= 0:
            break
        inv = invoices[alloc.invoice_id]
        back = min(left, alloc.amount_minor)
        if back <= 0:
            continue
        # Given back here; the ledger shows it once the restatement lands. The early-payment
        # discount stays granted (its credit note stays in the ledger).
        inv.unposted_minor -= back
        inv.status = "open"
        alloc.amount_minor -= back
        left -= back
    log_activity(
        s,
        rt.clock,
        company.id,
        f"payment.{reason}",
        f"Payment of {row_money(row).format()} {reason}: {amount.format()} is owed again",
        payment_intent=row.payment_intent_id,
    )
    _restate(rt, s, company, row)
    tell_owner(
        s,
        rt.clock,
        company.id,
        key=owner_mail_key(company.id, f"{reason}:{row.payment_intent_id}:{row.refunded_minor}"),
        subject=f"A payment was {reason}",
        text=f"{amount.format()} of payment {row.payment_intent_id} was {reason}; the invoice is open again.",
    )


def dispute_closed(
    rt: Runtime, s: Session, row: CollectedPayment, current: str | None, seen: Observed
) -> None:
    """A dispute closed (or its funds came back): won, the payment stands again; lost, it stays
    reversed. Both "closed" and "funds_reinstated" arrive for a won dispute, each maybe twice:
    the dispute's status on the row makes the second and later ones change nothing."""
    company = s.get(Company, row.company_id)
    assert company is not None
    kept = seen.dispute_status in DISPUTE_KEPT
    if row.dispute_status in DISPUTE_CLOSED:
        return  # already closed: a duplicate, or the other of the pair
    if seen.dispute_status not in DISPUTE_CLOSED:
        return  # not closed after all
    row.dispute_id, row.dispute_status = seen.dispute_id, seen.dispute_status
    row.updated_at = rt.clock.now()
    if kept and current == "disputed":
        _reinstate(rt, s, company, row)
    elif not kept and current == "succeeded":
        # The opening event never arrived (or came late): the money is gone all the same.
        row.status = "disputed"
        reverse(
            rt,
            s,
            company,
            row,
            Money.from_minor(sum(a.amount_minor for a in row.allocations), row.currency),
            "disputed",
        )
    elif not kept:
        log_activity(
            s,
            rt.clock,
            company.id,
            "payment.dispute_lost",
            f"Dispute on payment {row.payment_intent_id} lost: the invoice stays open",
            payment_intent=row.payment_intent_id,
        )


def _reinstate(rt: Runtime, s: Session, company: Company, row: CollectedPayment) -> None:
    """A dispute closed in the business's favour: re-apply what it still holds to the invoices
    the payment was for (at their balances now), write it back again, and show any leftover
    (an invoice paid otherwise meanwhile) as an overpayment to refund."""
    held = row.amount_minor - row.refunded_minor
    row.status = "succeeded" if held > 0 else "refunded"
    over_left = max(0, row.unapplied_minor - row.refunded_minor)
    to_apply = held - over_left - sum(a.amount_minor for a in row.allocations)
    money = Money.from_minor(max(to_apply, 0), row.currency)
    log_activity(
        s,
        rt.clock,
        company.id,
        "payment.dispute_won",
        f"Dispute on payment {row.payment_intent_id} won: {money.format()} is yours again",
        payment_intent=row.payment_intent_id,
    )
    if to_apply <= 0:
        return
    invoices = list(
        s.scalars(
            select(Invoice)
            .where(Invoice.id.in_([a.invoice_id for a in row.allocations]))
            .order_by(Invoice.due_on, Invoice.id)
            .with_for_update()
        )
    )
    zero = Money.zero(row.currency)
    due = [Due(inv.id, inv.balance, zero) for inv in invoices if inv.is_open]
    applied, left = apply_payment(money, due)
    by_id = {inv.id: inv for inv in invoices}
    allocation = {a.invoice_id: a for a in row.allocations}
    for a in applied:
        inv = by_id[a.invoice_id]
        allocation[inv.id].amount_minor += a.amount.minor
        inv.unposted_minor += a.amount.minor
        if inv.open_balance_minor == 0:
            inv.status = "paid"
    # From here on the refunds so far count as taken from what was not applied, which keeps
    # "refunds take back the overpayment first" true for every later refund.
    row.unapplied_minor = row.amount_minor - sum(a.amount_minor for a in row.allocations)
    _restate(rt, s, company, row)
    numbers = ", ".join(by_id[a.invoice_id].number or "" for a in applied) or "(none open)"
    message = f"The dispute on {row.payment_intent_id} was won: {money.format()} applied again to invoice {numbers}."
    if left.amount > 0:
        message += (
            f" {left.format()} could not be applied (paid otherwise meanwhile): it is an "
            "overpayment you can refund."
        )
    tell_owner(
        s,
        rt.clock,
        company.id,
        key=owner_mail_key(company.id, f"dispute-won:{row.payment_intent_id}"),
        subject="A dispute was won",
        text=message,
    )


def _restate(rt: Runtime, s: Session, company: Company, row: CollectedPayment) -> None:
    """Queue one restatement of this payment in the ledger: void the one ledger payment the
    previous write left live, then post what the allocations say stands now (if anything).

    Restatements form a chain through `row.ledger_key`, built under the payment's row lock, so
    each runs after the one before it and voids exactly what that one left: any sequence of
    refunds, disputes and reinstatements leaves one live ledger payment equal to the net, or
    none. Duplicate events never reach here (the caller moved the row's state first)."""
    conn = ledger_connection(s, company.id)
    if conn is None:
        return
    repost = [
        {"invoice_id": a.invoice_id, "amount_minor": a.amount_minor}
        for a in sorted(row.allocations, key=lambda a: a.invoice_id)
        if a.amount_minor > 0
    ]
    if row.ledger_key is None and not repost:
        return  # nothing of it is in the ledger, and nothing needs to be
    if row.ledger_key is None or row.ledger_key.startswith(ledger_payment_key("")):
        root = row.ledger_key
    else:
        before = s.scalar(select(OutboxMessage.payload).where(OutboxMessage.key == row.ledger_key))
        root = (before or {}).get("root", (before or {}).get("payment_key"))
    prefix = ledger_reversal_prefix(row.payment_intent_id)
    last = (row.ledger_key or "").removeprefix(prefix)
    number = int(last) + 1 if row.ledger_key != last and last.isdigit() else 1
    customer = s.get(Customer, row.customer_id) if row.customer_id else None
    key = f"{prefix}{number}"
    queue(
        s,
        rt.clock,
        company_id=company.id,
        key=key,
        payload=LedgerReversal(
            conn.id,
            root=root,
            after=row.ledger_key,
            repost=tuple((r["invoice_id"], r["amount_minor"]) for r in repost),
            currency=row.currency,
            reference=row.payment_intent_id,
            customer_source_id=customer.source_id if customer else None,
            received_on=local_date(row.succeeded_at or rt.clock.now(), company.timezone),
        ),
    )
    row.ledger_key = key
