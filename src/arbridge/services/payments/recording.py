"""The payment state machine: `record` locks the payment's row and moves its state only
forward, so duplicate and out-of-order events leave the same result. Its effects (ledger
write-back, receipts, closing other sessions) are queued in the outbox in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arbridge.clock import local_date, local_text
from arbridge.collections.payments import (
    Due,
    apply_payment,
    transition,
)
from arbridge.collections.templates import email_layout, text_as_html
from arbridge.errors import Rejected, Transient
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.payments.events import AFTER_SUCCESS, DISPUTE_CLOSED, Observed, observe
from arbridge.services.payments.failure_notice import tell_payment_failed
from arbridge.services.payments.open_sessions import open_sessions_taking
from arbridge.services.payments.plan_runs import installment_paid_or_failed, link_installment
from arbridge.services.payments.plans import plan_invoices_sorted
from arbridge.services.payments.reversals import (
    dispute_closed,
    refund,
    reverse,
    row_money,
    tell_overpaid,
)
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert
from arbridge.sync.model import (
    CheckoutSessionRow,
    CollectedAllocation,
    CollectedPayment,
    Company,
    Customer,
    Invoice,
    Plan,
    PlanInstallment,
    WebhookEvent,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import (
    LedgerDiscount,
    LedgerPayment,
    OutboxKind,
    StripeExpireSession,
    ledger_discount_key,
    ledger_payment_key,
    owner_mail_key,
    queue,
    receipt_key,
    stripe_expire_key,
)
from arbridge.sync.store import customer_email, ledger_connection

log = logging.getLogger(__name__)


def handle_stripe_event(rt: Runtime, s: Session, event: WebhookEvent) -> None:
    obj = event.payload.get("data", {}).get("object", {})
    seen = observe(event.event_type, obj)
    if seen is None:
        log.info(
            "stripe event %s (%s) is not about an arbridge payment",
            event.event_id,
            event.event_type,
        )
        return
    if (
        seen.company_id is not None
        and event.company_id is not None
        and seen.company_id != event.company_id
    ):
        raise Rejected(
            f"event {event.event_id} names company {seen.company_id} but came for another account"
        )
    if seen.company_id is not None and s.get(Company, seen.company_id) is None:
        raise Rejected(f"event {event.event_id} names company {seen.company_id}, not one of ours")
    owner = event.company_id if event.company_id is not None else seen.company_id
    if owner is not None and seen.payment_intent is not None:
        # The payment is found by its PaymentIntent alone, so it must be the company's the event
        # came for: a business signing with its own secret could otherwise name itself in the
        # metadata and another's PaymentIntent (printed on that business's receipts), and settle
        # or fail that business's payment. A refund or dispute names only the PaymentIntent.
        paid_to = s.scalar(
            select(CollectedPayment.company_id).where(
                CollectedPayment.payment_intent_id == seen.payment_intent
            )
        )
        if paid_to is not None and paid_to != owner:
            raise Rejected(
                f"event {event.event_id} is about another company's payment "
                "but came for this account"
            )
    record(rt, s, seen)


# --- The state machine's effects -----------------------------------------------------------------
def _lock_payment(
    s: Session, seen: Observed, now: datetime
) -> tuple[CollectedPayment | None, str | None]:
    """The payment's row, locked, and its status before this event (None: first we hear of it)."""
    if seen.company_id is not None and seen.amount is not None:
        inserted = s.execute(
            dialect_insert(s)(CollectedPayment.__table__)
            .values(
                company_id=seen.company_id,
                payment_intent_id=seen.payment_intent,
                checkout_session_id=seen.session_id,
                method=seen.method,
                currency=seen.amount.currency,
                amount_minor=seen.amount.minor,
                discount_minor=seen.discount_minor,
                unapplied_minor=0,
                refunded_minor=0,
                status=seen.status,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["payment_intent_id"])
            .returning(CollectedPayment.__table__.c.id)
        ).scalar()
        if inserted is not None:
            return s.get(
                CollectedPayment, inserted, with_for_update=True, populate_existing=True
            ), None
    row = s.scalar(
        select(CollectedPayment)
        .where(CollectedPayment.payment_intent_id == seen.payment_intent)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return row, (row.status if row is not None else None)


def record(rt: Runtime, s: Session, seen: Observed) -> None:
    now = rt.clock.now()
    row, current = _lock_payment(s, seen, now)
    if row is not None and row.checkout_session_id is None and seen.session_id:
        row.checkout_session_id = seen.session_id  # the PaymentIntent's event came first
    if seen.session_id:
        # Paid (or a bank debit started): the session takes no more money and is never handed
        # out again (a customer back after a failed debit got this completed session's page).
        s.execute(
            update(CheckoutSessionRow)
            .where(
                CheckoutSessionRow.stripe_session_id == seen.session_id,
                CheckoutSessionRow.status == "open",
            )
            .values(status="complete")
            .execution_options(synchronize_session=False)
        )
    on_plan = row is not None and link_installment(s, row, seen) is not None
    if row is None:
        if seen.status in AFTER_SUCCESS:
            # The refund overtook the success: retry later, once the payment is known.
            raise Transient(f"payment {seen.payment_intent} is not recorded yet")
        log.info("stripe payment %s is not arbridge's; ignored", seen.payment_intent)
        return
    if seen.status in AFTER_SUCCESS and current in (None, "pending"):
        raise Transient(f"payment {seen.payment_intent} has not succeeded yet")
    if seen.status == "refunded":
        if current in ("succeeded", "refunded") and seen.refunded is not None:
            refund(rt, s, row, seen.refunded)
        elif current == "disputed" and seen.refunded is not None:
            # Refunded during an inquiry: the invoices were reopened by the dispute already;
            # keep the total, so a dispute closed in the business's favour re-applies the rest.
            row.refunded_minor = max(row.refunded_minor, seen.refunded.minor)
        return
    if seen.status == "disputed" and row.dispute_status in DISPUTE_CLOSED:
        log.info("stripe dispute %s opened after it closed: a late event", seen.dispute_id)
        return
    if seen.status == "dispute_closed":
        dispute_closed(rt, s, row, current, seen)
        return
    new = transition(current, seen.status)
    if (
        new is None
        and seen.status == current == "failed"
        and seen.reason
        and not row.failure_reason
    ):
        # The session's failure event carries no reason; the PaymentIntent's, often later, does.
        row.failure_reason = seen.reason
    if new is None:
        log.info(
            "stripe payment %s: %s after %s changes nothing",
            seen.payment_intent,
            seen.status,
            current,
        )
        return
    row.status, row.updated_at = new, now
    if seen.method:
        row.method = seen.method
    company = s.get(Company, row.company_id)
    assert company is not None
    invoices = _invoices(s, row, seen)
    if row.customer_id is None and invoices:
        row.customer_id = invoices[0].customer_id
    if new == "pending":
        _intend(row, invoices)
        for inv in invoices:
            inv.payment_pending = True
        _expire_other_sessions(rt, s, company, row, invoices)
        log_activity(
            s,
            rt.clock,
            company.id,
            "payment.pending",
            f"Bank payment of {row_money(row).format()} started; it takes a few days to clear",
            payment_intent=row.payment_intent_id,
        )
    elif new == "succeeded":
        row.failure_reason = None  # a decline before the success in the same Checkout
        _succeed(rt, s, company, row, invoices, was_pending=current == "pending")
    elif new == "failed":
        for inv in invoices:
            inv.payment_pending = False
        row.allocations.clear()
        row.failure_reason = seen.reason
        message = f"Payment of {row_money(row).format()} failed" + (
            f": {seen.reason}" if seen.reason else ""
        )
        log_activity(
            s, rt.clock, company.id, "payment.failed", message, payment_intent=row.payment_intent_id
        )
        if on_plan:
            pass  # the plan's own email tells the customer, with their options (plan_runs)
        elif current == "pending":
            # A bank debit failed days after the customer left the page: tell them, and the
            # owner, in full (a card declined in Checkout is shown to the customer there).
            tell_payment_failed(rt, s, company, row, invoices, row_money(row).format())
        else:
            tell_owner(
                s,
                rt.clock,
                company.id,
                key=owner_mail_key(company.id, f"payment-failed:{row.payment_intent_id}"),
                subject="A payment failed",
                text=message,
            )
    elif new == "disputed":
        row.dispute_id, row.dispute_status = seen.dispute_id, seen.dispute_status
        reverse(
            rt,
            s,
            company,
            row,
            Money.from_minor(row.amount_minor - row.unapplied_minor, row.currency),
            "disputed",
        )

    if on_plan and new in ("pending", "succeeded", "failed"):
        installment_paid_or_failed(rt, s, row, new, seen.reason)


def _invoices(s: Session, row: CollectedPayment, seen: Observed) -> list[Invoice]:
    ids = [a.invoice_id for a in row.allocations] or list(seen.invoice_ids)
    if not ids:
        return []
    found = s.scalars(
        select(Invoice)
        .where(Invoice.id.in_(ids), Invoice.company_id == row.company_id)
        .order_by(Invoice.due_on, Invoice.id)
        .with_for_update()
    ).all()
    if row.plan_installment_id is not None:
        # A plan's installments go to its oldest invoice first (issue date, then number).
        return plan_invoices_sorted(found)
    return list(found)


def _intend(row: CollectedPayment, invoices: Sequence[Invoice]) -> None:
    """For a payment still clearing: which invoices it is meant for (amounts settle on success)."""
    if row.allocations:
        return
    for inv in invoices:
        row.allocations.append(
            CollectedAllocation(invoice_id=inv.id, amount_minor=0, discount_minor=0)
        )


def _succeed(
    rt: Runtime,
    s: Session,
    company: Company,
    row: CollectedPayment,
    invoices: Sequence[Invoice],
    was_pending: bool,
) -> None:
    now = rt.clock.now()
    row.succeeded_at = now
    discount_share = _discounts(row, invoices)
    due = [
        Due(
            inv.id,
            inv.balance if inv.is_open else Money.zero(inv.currency),
            discount_share.get(inv.id, Money.zero(inv.currency)),
        )
        for inv in invoices
    ]
    applied, left = apply_payment(row_money(row), [d for d in due if d.balance.amount > 0])
    row.allocations.clear()
    s.flush()
    by_id = {inv.id: inv for inv in invoices}
    for a in applied:
        inv = by_id[a.invoice_id]
        row.allocations.append(
            CollectedAllocation(
                invoice_id=inv.id, amount_minor=a.amount.minor, discount_minor=a.discount.minor
            )
        )
        # Collected here, in the ledger once the write-back lands.
        inv.unposted_minor += a.amount.minor + a.discount.minor
        if inv.open_balance_minor == 0:
            inv.status = "paid"
    for inv in invoices:
        inv.payment_pending = False
    row.unapplied_minor = left.minor
    _expire_other_sessions(rt, s, company, row, invoices)
    amount = row_money(row)
    numbers = ", ".join(by_id[a.invoice_id].number or "" for a in applied) or "(none open)"
    log_activity(
        s,
        rt.clock,
        company.id,
        "payment.succeeded",
        f"Received {amount.format()} for invoice {numbers}"
        + (" (bank payment cleared)" if was_pending else ""),
        payment_intent=row.payment_intent_id,
    )
    conn = ledger_connection(s, company.id)
    customer = s.get(Customer, invoices[0].customer_id) if invoices else None
    if conn is not None and customer is not None and applied:
        paid_lines = [
            (by_id[a.invoice_id].source_id, a.amount.amount) for a in applied if a.amount.amount > 0
        ]
        if paid_lines:
            row.ledger_key = ledger_payment_key(row.payment_intent_id)
            queue(
                s,
                rt.clock,
                company_id=company.id,
                key=row.ledger_key,
                payload=LedgerPayment(
                    conn.id,
                    customer_source_id=customer.source_id,
                    currency=amount.currency,
                    amount=sum((a for _, a in paid_lines), Decimal(0)),
                    received_on=local_date(now, company.timezone),
                    reference=row.payment_intent_id,
                    lines=tuple(paid_lines),
                ),
            )
        discount_lines = [
            (by_id[a.invoice_id].source_id, a.discount.amount)
            for a in applied
            if a.discount.amount > 0
        ]
        if discount_lines:
            queue(
                s,
                rt.clock,
                company_id=company.id,
                key=ledger_discount_key(row.payment_intent_id),
                payload=LedgerDiscount(
                    conn.id,
                    customer_source_id=customer.source_id,
                    currency=amount.currency,
                    issued_on=local_date(now, company.timezone),
                    reference=f"Early-payment discount, {row.payment_intent_id}",
                    lines=tuple(discount_lines),
                ),
            )
    if left.amount > 0 and not _plan_fee_covers(s, row, left):
        message = (
            f"{amount.format()} arrived but only {(amount - left).format()} was still owed: "
            f"{left.format()} is an overpayment. Refund it from the payments list."
        )
        tell_overpaid(rt, s, company.id, row, message)
    if customer is not None:
        _receipt(rt, s, company, customer, row, numbers)
    tell_owner(
        s,
        rt.clock,
        company.id,
        key=owner_mail_key(company.id, f"paid:{row.payment_intent_id}"),
        subject=f"Payment received: {amount.format()}",
        text=f"{customer.name if customer else 'A customer'} paid {amount.format()} for invoice {numbers} through arbridge.",
    )


def _plan_fee_covers(s: Session, row: CollectedPayment, left: Money) -> bool:
    """A plan's payment beyond its invoices is its fee (what the plan added), not an overpayment."""
    if row.plan_installment_id is None:
        return False
    fee = s.scalar(
        select(Plan.fee_minor)
        .join(PlanInstallment, PlanInstallment.plan_id == Plan.id)
        .where(PlanInstallment.id == row.plan_installment_id)
    )
    return left.minor <= (fee or 0)


def _expire_other_sessions(
    rt: Runtime, s: Session, company: Company, row: CollectedPayment, invoices: Sequence[Invoice]
) -> None:
    """Another link's Checkout Session for these invoices (a second tab, an older reminder, a
    statement) could still be paid: close each one at Stripe, through the outbox."""
    ids = {inv.id for inv in invoices}
    if not ids:
        return
    for other in open_sessions_taking(s, company.id, ids, rt.clock.now(), lock=True):
        if other.stripe_session_id == row.checkout_session_id:
            continue
        other.status = "expired"  # never handed out again, whatever Stripe answers
        queue(
            s,
            rt.clock,
            company_id=company.id,
            key=stripe_expire_key(other.stripe_session_id),
            payload=StripeExpireSession(company.id, other.stripe_session_id),
        )


def _discounts(row: CollectedPayment, invoices: Sequence[Invoice]) -> dict[int, Money]:
    """The discount the customer was offered when the session opened, per invoice (oldest first)."""
    if not row.discount_minor or not invoices:
        return {}
    # Spread the session's discount over its invoices in proportion to their balances, exactly.
    currency = invoices[0].currency
    balances = [inv.open_balance_minor if inv.is_open else 0 for inv in invoices]
    whole = sum(balances) or 1
    shares, given = {}, 0
    for inv, bal in zip(invoices, balances, strict=True):
        share = row.discount_minor * bal // whole
        shares[inv.id] = share
        given += share
    if invoices:
        shares[invoices[0].id] += row.discount_minor - given
    return {k: Money.from_minor(v, currency) for k, v in shares.items()}


def _receipt(
    rt: Runtime,
    s: Session,
    company: Company,
    customer: Customer,
    row: CollectedPayment,
    numbers: str,
) -> None:
    """The customer's receipt: each invoice with what was applied to it, the amount, the method,
    the date and time in the business's timezone (the zone named), the reference, and whom to
    ask (the business's name and its owner's address, which replies go to)."""
    from arbridge.sync.store import owner

    to = customer_email(s, customer.id)
    if not to:
        return
    amount = row_money(row)
    log_activity(
        s,
        rt.clock,
        company.id,
        "receipt.queued",
        f"Receipt for {amount.format()} emailed to {to}",
        customer_id=customer.id,
        payment_intent=row.payment_intent_id,
    )
    applied = [a for a in row.allocations if a.amount_minor or a.discount_minor]
    labels = dict(
        s.execute(
            select(Invoice.id, Invoice.number).where(
                Invoice.id.in_([a.invoice_id for a in applied])
            )
        )
        .tuples()
        .all()
    )
    lines = []
    for a in applied:
        line = f"  Invoice {labels.get(a.invoice_id) or '(no number)'}: "
        line += Money.from_minor(a.amount_minor, row.currency).format()
        if a.discount_minor:
            discount = Money.from_minor(a.discount_minor, row.currency).format()
            line += f" (and {discount} early-payment discount)"
        lines.append(line)
    if not lines:
        lines.append(f"  Invoice {numbers}")
    left = Money.from_minor(row.unapplied_minor, row.currency)
    if left.amount > 0 and _plan_fee_covers(s, row, left):
        lines.append(f"  Installment plan fee: {left.format()}")
    elif left.amount > 0:
        lines.append(
            f"  Not applied to any invoice: {left.format()} ({company.name} will be in touch)"
        )
    methods = {"card": "Card", "us_bank_account": "Bank account (ACH debit)"}
    method = methods.get(row.method or "", (row.method or "").replace("_", " ").capitalize())
    when = local_text(row.succeeded_at or rt.clock.now(), company.timezone)
    contact = owner(s, company).email
    text = "\n".join(
        [
            f"Thank you: {company.name} received your payment of {amount.format()}.",
            "",
            "Paid towards:",
            *lines,
            "",
            f"Amount: {amount.format()}",
            *([f"Method: {method}"] if method else []),
            f"Date: {when}",
            f"Reference: {row.payment_intent_id}",
            "",
            f"Questions about this payment? Reply to this email or write to {company.name} "
            f"at {contact}.",
            "",
        ]
    )
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=OutboxKind.EMAIL,
        key=receipt_key(row.payment_intent_id),
        payload={
            "to": to,
            "subject": f"Receipt from {company.name}: {amount.format()}",
            "text": text,
            # The same, readable on a phone: one column at most 600 px wide.
            "html": email_layout(text_as_html(text)),
            "mail": "receipt",
            "customer_id": customer.id,
            "reply_to": contact,
        },
    )
