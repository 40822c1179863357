"""Stripe Checkout: open (or reuse) a session for a link, and the customer's return from it,
which may beat the webhook (both meet in `recording.record`)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from arbridge.connectors.stripe import (
    CheckoutRequest,
    CheckoutSession,
)
from arbridge.connectors.stripe.gateway import to_stripe_amount
from arbridge.errors import NotFound, Rejected, Transient
from arbridge.runtime import Runtime
from arbridge.services.payments.accounts import gateway_for, gateway_for_row
from arbridge.services.payments.events import from_session
from arbridge.services.payments.open_sessions import close_overlapping, lock_invoices
from arbridge.services.payments.quote import methods_for, quote, quote_basis
from arbridge.services.payments.recording import record
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    CheckoutSessionRow,
    CollectedPayment,
    Company,
    OutboxMessage,
)
from arbridge.sync.store import customer_email, find_pay_token

log = logging.getLogger(__name__)

SESSION_MINUTES = 60
KEY_WINDOW_MINUTES = 50  # shorter than a session's life, so a key never names an expired one


def start_checkout(rt: Runtime, token: str) -> str:
    """Reuse the link's open Checkout Session if nothing changed, else open one; return its URL."""
    with transaction(rt.sessions) as s:
        link = find_pay_token(s, token)
        q = quote(rt, s, link)
        if q.state != "payable":
            raise Rejected(f"this invoice is {q.state}; there is nothing to pay now")
        gateway = gateway_for(rt, s, q.company)
        if gateway is None:
            raise Rejected("online payment is not set up for this business")
        methods = methods_for(gateway, q)
        if not methods:
            raise Rejected("this business does not take online payments at the moment")
        due_ids = [d.invoice_id for d in q.due]
        lock_invoices(s, due_ids)
        basis, now = quote_basis(q, methods), rt.clock.now()
        reusable = s.scalar(
            select(CheckoutSessionRow)
            .where(
                CheckoutSessionRow.pay_token_id == link.id,
                CheckoutSessionRow.status == "open",
                CheckoutSessionRow.basis == basis,
                CheckoutSessionRow.expires_at > now + timedelta(minutes=5),
            )
            .order_by(CheckoutSessionRow.id.desc())
        )
        if reusable is not None and reusable.url:
            return reusable.url
        close_overlapping(rt, s, gateway, q.company.id, due_ids)
        # The idempotency key names what is asked (link, balances), the time window, and how many
        # earlier sessions finished: presses at the same moment share one key, so Stripe opens
        # one session for them all (a count of every row would race between them).
        finished = (
            s.scalar(
                select(func.count())
                .select_from(CheckoutSessionRow)
                .where(
                    CheckoutSessionRow.pay_token_id == link.id, CheckoutSessionRow.status != "open"
                )
            )
            or 0
        )
        window = int(now.timestamp()) // (KEY_WINDOW_MINUTES * 60)
        numbers = ", ".join(i.number or i.source_id for i in q.invoices)
        contact = customer_email(s, q.customer.id)
        base = rt.settings.base_url
        request = CheckoutRequest(
            amount=q.amount,
            description=f"{q.company.name}: invoice {numbers}"
            if len(q.invoices) == 1
            else f"{q.company.name}: invoices {numbers}",
            methods=methods,
            success_url=f"{base}/pay/{token}/return?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base}/pay/{token}/return?cancelled=1",
            expires_at=now + timedelta(minutes=SESSION_MINUTES),
            idempotency_key=(
                f"checkout:{link.id}:{window}:{finished}:"
                f"{hashlib.sha256(basis.encode()).hexdigest()[:24]}"
            ),
            metadata={
                "arbridge_company": str(q.company.id),
                "arbridge_pay_token": str(link.id),
                "arbridge_invoices": ",".join(str(i) for i in due_ids),
                "arbridge_discount": str(q.discount_total.minor),
            },
            customer_email=contact,
        )
        try:
            created = gateway.create_checkout_session(request)
        except Rejected as e:
            if len(methods) < 2 or "card" not in methods:
                raise
            # The account cannot take bank debits yet (ACH not activated): card still works.
            log.warning("checkout with %s refused (%s); retrying with card only", methods, e)
            created = gateway.create_checkout_session(
                replace(
                    request, methods=["card"], idempotency_key=request.idempotency_key + ":card"
                )
            )
        # Two presses at once send the same idempotency key, so Stripe answers both with one
        # session: the second insert meets the unique id and is skipped.
        s.execute(
            dialect_insert(s)(CheckoutSessionRow.__table__)
            .values(
                company_id=q.company.id,
                pay_token_id=link.id,
                stripe_session_id=created.id,
                url=created.url,
                invoice_ids=due_ids,
                currency=q.currency,
                amount_minor=q.amount.minor,
                discount_minor=q.discount_total.minor,
                basis=basis,
                status="open",
                expires_at=created.expires_at or now + timedelta(minutes=SESSION_MINUTES),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["stripe_session_id"])
        )
        if not created.url:
            raise Transient("Stripe returned a session without a URL")
        return created.url


def handle_checkout_return(rt: Runtime, token: str, session_id: str) -> str:
    """The customer is back from Checkout: ask Stripe, and record what it says now (the webhook
    may not have arrived yet, or may be on its way: both paths meet in `record`).

    Returns what happened, for the page to say: "paid", "pending" (a bank payment started),
    "failed", "open" (not paid), "expired", or "unknown" (Stripe could not tell us)."""
    with transaction(rt.sessions) as s:
        link = find_pay_token(s, token)
        row = s.scalar(
            select(CheckoutSessionRow).where(CheckoutSessionRow.stripe_session_id == session_id)
        )
        if row is None or row.pay_token_id != link.id:
            raise NotFound("no such checkout session for this link")
        company = s.get(Company, link.company_id)
        assert company is not None
        gateway = gateway_for(rt, s, company)
    if gateway is None:
        return "unknown"
    checkout = gateway.retrieve_checkout_session(session_id)
    with transaction(rt.sessions) as s:
        row = s.scalar(
            select(CheckoutSessionRow).where(CheckoutSessionRow.stripe_session_id == session_id)
        )
        assert row is not None
        row.status = checkout.status
        if checkout.status != "complete":
            return checkout.status if checkout.status in ("open", "expired") else "unknown"
        paid = checkout.payment_status == "paid"
        seen = from_session(
            _session_as_stripe(checkout),
            "succeeded" if paid else "pending",
            "card" if paid else "us_bank_account",
        )
        if seen is not None:
            record(rt, s, seen)
            recorded = s.scalar(
                select(CollectedPayment.status).where(
                    CollectedPayment.payment_intent_id == seen.payment_intent
                )
            )
            if recorded == "failed":
                return "failed"
        return "paid" if paid else "pending"


def _session_as_stripe(c: CheckoutSession) -> dict[str, Any]:
    return {
        "id": c.id,
        "payment_intent": c.payment_intent,
        "metadata": dict(c.metadata),
        "amount_total": to_stripe_amount(c.amount) if c.amount else 0,
        "currency": c.amount.currency.lower() if c.amount else "usd",
        "payment_method_types": [],
    }


def stripe_expire_session(rt: Runtime, message: OutboxMessage) -> str:
    """Close a Checkout Session another payment made unneeded; one already paid stays paid (its
    payment then arrives as an overpayment, with the one-click refund)."""
    p = message.payload
    closed = gateway_for_row(rt, p["company_id"]).expire_checkout_session(
        p["session_id"], message.key
    )
    return f"{closed.id}:{closed.status}"
