"""A bank payment that fails days after the customer left the page: they are told in plain words
with a link to pay again, and the owner is told who, which invoices, how much, why and where.

The customer's email is queued with the payment's and the link's ids only: it is written as it
goes out (`prepare_payment_failed`), so it carries the reason Stripe gave by then (the session's
failure event carries none and often comes first) and the link's token never sits in the outbox.
It is not sent when the payment is no longer failed or nothing is owed any more.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import SequenceError, reminder_policy
from arbridge.collections.templates import Rendered
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Prepared
from arbridge.services.messaging.sender import plain_message
from arbridge.sync import pay_links
from arbridge.sync.activity import log_activity
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CollectedPayment,
    Company,
    Customer,
    Invoice,
    OutboxMessage,
    PayToken,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import OutboxKind, owner_mail_key
from arbridge.sync.store import customer_email

MAIL = "payment_failed"
OWNER_MAIL = "payment_failed_owner"
REASON_MARK = "[the reason Stripe gave]"  # in the owner's queued text; filled as it goes out
FALLBACK_REASON = "the bank did not accept the payment"


def tell_payment_failed(
    rt: Runtime,
    s: Session,
    company: Company,
    row: CollectedPayment,
    invoices: Sequence[Invoice],
    amount_text: str,
) -> None:
    """Queue the customer's email (a bank debit failed after they left) and the owner's."""
    customer = s.get(Customer, row.customer_id) if row.customer_id else None
    numbers = ", ".join(inv.number or inv.source_id for inv in invoices) or "?"
    where = f"{rt.settings.base_url}/c/{company.slug}/invoices/{invoices[0].id}" if invoices else ""
    tell_owner(
        s,
        rt.clock,
        company.id,
        key=owner_mail_key(company.id, f"payment-failed:{row.payment_intent_id}"),
        subject=f"A bank payment of {amount_text} failed",
        text=(
            f"{customer.name if customer else 'A customer'}'s bank payment of {amount_text} for "
            f"invoice {numbers} failed: {REASON_MARK}. The invoice is open again"
            + (", and the customer has been emailed a link to pay again" if customer else "")
            + f".\n\n{where}\n"
        ),
        mail=OWNER_MAIL,
        extra={"payment_id": row.id},
    )
    to = customer_email(s, customer.id) if customer is not None else None
    if customer is None or not to or not invoices:
        return
    link = pay_links.new_link(
        s, rt.clock, invoice=invoices[0] if len(invoices) == 1 else None, customer=customer
    )
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=OutboxKind.EMAIL,
        key=f"payment-failed-customer:{row.payment_intent_id}",
        payload={
            "mail": MAIL,
            "to": to,
            "customer_id": customer.id,
            "payment_id": row.id,
            "pay_link_id": link.id,
            "numbers": numbers,
            "amount": amount_text,
        },
    )
    log_activity(
        s,
        rt.clock,
        company.id,
        "payment.failed_notice",
        f"{to} will be told their bank payment of {amount_text} failed, with a link to pay again",
        customer_id=customer.id,
        payment_intent=row.payment_intent_id,
    )


def prepare_payment_failed(rt: Runtime, message: OutboxMessage) -> Prepared | str:
    p = message.payload
    with transaction(rt.sessions) as s:
        row = s.get(CollectedPayment, p["payment_id"])
        if row is None or row.status != "failed":
            return "skipped: the payment is no longer failed"
        link = s.get(PayToken, p["pay_link_id"])
        if link is None:
            return "skipped: the business withdrew the payment link"
        # What the link would charge now: the failed payment's invoice, or (a statement) the
        # customer's open invoices; paid meanwhile, another way, there is nothing to ask for.
        owed = (
            s.scalar(select(Invoice.id).where(Invoice.id == link.invoice_id, Invoice.is_open))
            if link.invoice_id is not None
            else next(iter(pay_links.statement_invoices(s, link)), None)
        )
        if owed is None:
            return "skipped: nothing is owed any more"
        company = s.get(Company, message.company_id)
        assert company is not None
        try:
            days = reminder_policy(company.settings).statement_link_days
        except SequenceError:
            days = pay_links.DEFAULT_STATEMENT_LINK_DAYS
        token = pay_links.mint(s, rt.clock, p["pay_link_id"], days)
        if token is None:
            return "skipped: the business withdrew the payment link"
        reason = row.failure_reason or FALLBACK_REASON
        s.expunge(company)
    text = (
        f"Your bank payment of {p['amount']} to {company.name} for invoice {p['numbers']} did "
        f"not go through: {reason}.\n\n"
        "Nothing was taken from your account. You can pay again, by card or from another bank "
        f"account, here:\n\n{rt.settings.base_url}/pay/{token}\n\n"
        f"If you think this is a mistake, reply to this email and {company.name} will help.\n"
    )
    return Prepared(
        company=company,
        to=p["to"],
        rendered=Rendered(f"Your payment to {company.name} did not go through", text, ""),
        kind=MAIL,
        customer_id=p.get("customer_id"),
    )


def prepare_owner_notice(rt: Runtime, message: OutboxMessage) -> Prepared:
    """The owner's email, with the reason Stripe has given by now."""
    p = message.payload
    with rt.sessions() as s:
        row = s.get(CollectedPayment, p.get("payment_id"))
        reason = (row.failure_reason if row is not None else None) or FALLBACK_REASON
    return plain_message(rt, message, str(p["text"]).replace(REASON_MARK, reason), kind="owner")
