"""The owner's overpayment refunds, and refitting a write-back the ledger refused to what still
fits there (the rest becomes an overpayment to refund)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.errors import ArbridgeError, NotFound
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.payments.accounts import gateway_for_row
from arbridge.services.payments.reversals import row_money, tell_overpaid
from arbridge.sync.activity import log_activity
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CollectedPayment,
    Company,
    Invoice,
    OutboxMessage,
)
from arbridge.sync.outbox_kinds import (
    StripeRefund,
    ledger_discount_key,
    queue,
    stripe_refund_key,
)

log = logging.getLogger(__name__)


def refit_to_ledger(
    rt: Runtime, outbox_id: int, outstanding: Mapping[str, Decimal]
) -> list[dict[str, str]] | None:
    """The ledger refused a payment's write-back: an invoice has less outstanding there than we
    applied (a cheque recorded while the customer was on the checkout, no sync in between).
    What still fits is applied; the rest becomes an overpayment that the owner sees at once,
    with the one-click refund. The lines to post are kept on the outbox row in the same
    transaction, so a retry posts the same ones. None: not a payment arbridge collected."""
    with transaction(rt.sessions) as s:
        message = s.get(OutboxMessage, outbox_id, with_for_update=True, populate_existing=True)
        assert message is not None
        if "refit" in message.payload:
            return list(message.payload["refit"])
        row = s.scalar(
            select(CollectedPayment)
            .where(
                CollectedPayment.company_id == message.company_id,
                CollectedPayment.payment_intent_id == message.payload["reference"],
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        company = s.get(Company, message.company_id)
        if row is None or company is None or row.status != "succeeded":
            return None
        invoices = {
            inv.id: inv
            for inv in s.scalars(
                select(Invoice)
                .where(Invoice.id.in_([a.invoice_id for a in row.allocations]))
                .with_for_update()
            )
        }
        # The early-payment discount's credit, when not yet written, shrinks with the payment:
        # a discount on an invoice the ledger shows settled has nothing to credit.
        discount = s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.key == ledger_discount_key(row.payment_intent_id))
            .with_for_update()
        )
        if discount is not None and discount.status != "pending":
            discount = None
        lines, credits, moved = [], [], 0
        for alloc in sorted(row.allocations, key=lambda a: a.invoice_id):
            inv = invoices[alloc.invoice_id]
            room = max(0, Money(outstanding.get(inv.source_id, Decimal(0)), inv.currency).minor)
            fit = min(alloc.amount_minor, room)
            moved += alloc.amount_minor - fit
            alloc.amount_minor = fit
            left = room - fit
            if discount is not None:
                alloc.discount_minor = min(alloc.discount_minor, left)
                left -= alloc.discount_minor
                if alloc.discount_minor:
                    credits.append(_line(inv, alloc.discount_minor))
            if inv.status in ("open", "paid"):
                # The ledger's word, less what we now apply: right until the next sync says more.
                inv.ledger_balance_minor, inv.unposted_minor = room, room - left
                inv.status = "open" if inv.open_balance_minor else "paid"
            if fit:
                lines.append(_line(inv, fit))
        if discount is not None:
            discount.payload = {**discount.payload, "lines": credits}
        row.unapplied_minor += moved
        row.updated_at = rt.clock.now()
        message.payload = {**message.payload, "refit": lines}
        over = Money.from_minor(moved, row.currency)
        text = (
            f"{row_money(row).format()} arrived, but the invoice was settled in your ledger "
            f"meanwhile (a payment recorded there): {over.format()} is an overpayment, not in "
            "your books. Refund it from the payments list, or keep it as the customer's credit."
        )
        tell_overpaid(rt, s, company.id, row, text)
        return lines


def _line(inv: Invoice, minor: int) -> dict[str, str]:
    return {
        "invoice_source_id": inv.source_id,
        "amount": str(Money.from_minor(minor, inv.currency).amount),
    }


# --- Owner actions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefundStatus:
    """Where the owner's latest overpayment refund of a payment stands, in plain words."""

    state: str  # pending, sent, done, failed, unknown
    amount: Money
    detail: str | None = None  # Stripe's refund id when sent; the reason when it failed

    @property
    def retry(self) -> bool:
        """May the owner ask again? After a definite failure, or an unknown outcome (the next
        attempt asks Stripe about the earlier ones before refunding anything)."""
        return self.state in ("failed", "unknown")


def refund_statuses(s: Session, rows: Sequence[CollectedPayment]) -> dict[int, RefundStatus]:
    """Where the latest refund of each payment stands, by payment id, in one query for the
    whole list (a payments table asks for every row at once, never one query per row)."""
    by_key = {row.refund_key: row for row in rows if row.refund_key is not None}
    if not by_key:
        return {}
    messages = s.scalars(select(OutboxMessage).where(OutboxMessage.key.in_(by_key))).all()
    return {by_key[msg.key].id: _refund_status(by_key[msg.key], msg) for msg in messages}


def refund_status(s: Session, row: CollectedPayment) -> RefundStatus | None:
    return refund_statuses(s, [row]).get(row.id)


def _refund_status(row: CollectedPayment, msg: OutboxMessage) -> RefundStatus:
    p = msg.payload
    amount = Money.from_minor(p["amount_minor"], p["currency"])
    if msg.status in ("pending", "sending"):
        return RefundStatus("pending", amount, msg.last_error)
    if msg.status == "sent":
        confirmed = row.refunded_minor >= p.get("refunded_before", 0) + p["amount_minor"]
        return RefundStatus("done" if confirmed else "sent", amount, msg.provider_ref)
    if msg.status == "dead" or (msg.last_error or "").startswith("interrupted"):
        return RefundStatus("unknown", amount, msg.last_error)
    return RefundStatus("failed", amount, _reason(msg.last_error))


def _reason(error: str | None) -> str | None:
    """The outbox keeps "Rejected: Stripe: ..."; the owner reads what Stripe said."""
    if not error:
        return None
    _, _, said = error.partition(": ")
    return said.removeprefix("Stripe: ") or error


def refund_overpayment(rt: Runtime, s: Session, company: Company, payment_id: int) -> Money:
    """Queue a refund of what the customer overpaid. One attempt at a time: a new one only
    after the last failed (with a new idempotency key, since Stripe replays a key's answer) or
    went unanswered (its handler first asks Stripe about every earlier attempt)."""
    row = s.get(CollectedPayment, payment_id, with_for_update=True)
    if row is None or row.company_id != company.id:
        raise NotFound("no such payment")
    if row.unapplied_minor <= row.refunded_minor:
        raise ArbridgeError("there is no overpayment left to refund on this payment")
    last = refund_status(s, row)
    if last is not None and last.state == "pending":
        raise ArbridgeError(
            f"a refund of {last.amount.format()} is already waiting to go to Stripe"
        )
    if last is not None and last.state == "sent":
        raise ArbridgeError(
            f"Stripe has the refund of {last.amount.format()}; it shows here once Stripe confirms it"
        )
    earlier: list[str] = []  # attempts that may have reached Stripe unknown to us
    number = 1
    if row.refund_key is not None:
        before = s.scalar(select(OutboxMessage).where(OutboxMessage.key == row.refund_key))
        if last is not None and last.retry:
            # A refund Stripe confirmed is done and not among them: a new overpayment (after a
            # dispute won) must not be mistaken for it.
            earlier = [*((before.payload.get("earlier") or []) if before else []), row.refund_key]
        last_number = row.refund_key.rsplit(":", 1)[-1]
        number = int(last_number) + 1 if last_number.isdigit() else 2
    amount = Money.from_minor(row.unapplied_minor - row.refunded_minor, row.currency)
    key = stripe_refund_key(row.payment_intent_id, number)
    queue(
        s,
        rt.clock,
        company_id=company.id,
        key=key,
        payload=StripeRefund(
            company.id,
            payment_intent=row.payment_intent_id,
            amount_minor=amount.minor,
            currency=amount.currency,
            refunded_before=row.refunded_minor,
            earlier=tuple(earlier),
        ),
    )
    row.refund_key = key
    log_activity(
        s,
        rt.clock,
        company.id,
        "payment.refund_requested",
        f"Refund of {amount.format()} overpayment requested"
        + (f" (attempt {number})" if number > 1 else ""),
        payment_intent=row.payment_intent_id,
    )
    return amount


def stripe_refund(rt: Runtime, message: OutboxMessage) -> str:
    p = message.payload
    gateway = gateway_for_row(rt, p["company_id"])
    # An earlier attempt may have reached Stripe without our learning it (no answer, the worker
    # gave up): ask Stripe first, and make no second refund if one of them did.
    if p.get("earlier") and (found := gateway.find_refund(p["payment_intent"], p["earlier"])):
        return found
    return gateway.refund(
        p["payment_intent"], Money.from_minor(p["amount_minor"], p["currency"]), message.key
    )
