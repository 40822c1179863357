"""Stripe's news in: verify and store each delivery once, and translate one event's object into
what it says about our payment (`observe`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.connectors.stripe.gateway import (
    CHARGE_KEY,
    INSTALLMENT_KEY,
    PLAN_KEY,
    from_stripe_amount,
)
from arbridge.errors import ArbridgeError, SignatureInvalid
from arbridge.inputs import InputError, parse_id
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.payments.webhook_secrets import install_webhook_secrets
from arbridge.sync.db import retry_on_disconnect, transaction
from arbridge.sync.model import (
    CollectedPayment,
    Connection,
)
from arbridge.webhooks.inbox import Stored, store, store_alone
from arbridge.webhooks.stripe import MalformedEvent, signed_by, stripe_event, unverified_event

log = logging.getLogger(__name__)

# The Stripe events arbridge listens to (the endpoint it creates subscribes to exactly these).
STRIPE_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "payment_intent.processing",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
    "charge.dispute.funds_reinstated",
)


# --- Stripe's news in -----------------------------------------------------------------------------
def _hinted_companies(s: Session, event: Mapping[str, Any]) -> list[int]:
    """Which companies the (unverified) event points at: only to try their secrets first."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return []
    found: list[int] = []
    meta = obj.get("metadata")
    named = _meta_id(meta.get("arbridge_company")) if isinstance(meta, dict) else None
    if named is not None:
        found.append(named)
    intents = [
        obj.get("payment_intent"),
        obj.get("id") if obj.get("object") == "payment_intent" else None,
    ]
    names = [pi for pi in intents if isinstance(pi, str) and 0 < len(pi) <= 255]
    if names:
        found += s.scalars(
            select(CollectedPayment.company_id).where(CollectedPayment.payment_intent_id.in_(names))
        ).all()
    return found


def _connection_secrets(
    rt: Runtime, s: Session, event: Mapping[str, Any]
) -> Iterator[tuple[str, Connection]]:
    """Each Stripe connection's own endpoint secret, the companies the event points at first,
    decrypted one at a time as they are tried.

    The order only saves work: a secret is trusted for its own connection's company only."""
    conns = s.scalars(
        select(Connection).where(
            Connection.provider == "stripe",
            Connection.status == "active",
            Connection.webhook_secret_encrypted.is_not(None),
        )
    ).all()
    hinted = _hinted_companies(s, event)
    for conn in sorted(conns, key=lambda c: (c.company_id not in hinted, c.id)):
        try:
            yield rt.keyring.decrypt(conn.webhook_secret_encrypted or ""), conn
        except ArbridgeError as e:
            log.warning("the webhook secret of Stripe connection %s is unreadable: %s", conn.id, e)


def ingest_stripe(
    rt: Runtime, body: bytes, header: str | None, *, only_secret: str | None = None
) -> Stored:
    """Verify a delivery and store its event once (the route and the simulation both come here).

    The secret that signed it decides whose it is: a business's own endpoint secret makes it
    that business's event (whatever the body says); the install's secret leaves it to the
    Connect account the event names. Nothing unverified is stored. Storing is safe to repeat
    (each event once), so a dead pooled connection costs one more try, not the delivery."""
    return retry_on_disconnect(lambda: _ingest(rt, body, header, only_secret))


def ingest_install_stripe(rt: Runtime, body: bytes, header: str | None) -> Stored | None:
    """Only the common delivery (see `_install_event`), verified and stored as `ingest_stripe`
    would; None: any other, for `ingest_stripe` (web/stripe_front.py answers the common one
    without Flask's request machinery)."""
    return retry_on_disconnect(lambda: _install_event(rt, body, header))


def _install_event(rt: Runtime, body: bytes, header: str | None) -> Stored | None:
    """The common delivery, signed with the install's own secret and naming no Connect account:
    nothing to read first and one row pair to write, so one statement in autocommit (PostgreSQL:
    one round trip instead of BEGIN, INSERT, COMMIT). None: any other case, which `_ingest`
    verifies and stores in a transaction."""
    now = rt.clock.now()
    try:
        signed_by(body, header, ((secret, None) for secret in install_webhook_secrets(rt)), now)
    except SignatureInvalid:
        return None  # perhaps a business's own endpoint secret: the general way tries them all
    event = stripe_event(body, now, tenant_id=None)
    if event.tenant_id:
        return None  # its connection's last-event time is written too
    headers = {"stripe-signature": header or ""}
    return store_alone(rt.engine, rt.clock, "stripe", headers, body, event)


def _ingest(rt: Runtime, body: bytes, header: str | None, only_secret: str | None) -> Stored:
    if only_secret is None and (stored := _install_event(rt, body, header)) is not None:
        return stored
    now = rt.clock.now()
    with transaction(rt.sessions) as s:
        candidates: Iterable[tuple[str, Connection | None]]
        if only_secret is not None:
            candidates = [(only_secret, None)]
        else:
            unverified = unverified_event(body)
            candidates = chain(
                ((secret, None) for secret in install_webhook_secrets(rt)),
                _connection_secrets(rt, s, unverified),
            )
        conn = signed_by(body, header, candidates, now)
        event = stripe_event(body, now, tenant_id=conn.tenant_id if conn is not None else None)
        if conn is None and event.tenant_id:
            conn = s.scalar(
                select(Connection).where(
                    Connection.provider == "stripe", Connection.tenant_id == event.tenant_id
                )
            )
        if conn is not None:
            conn.webhook_last_event_at = now
        return store(s, rt.clock, "stripe", {"stripe-signature": header or ""}, body, [event])


@dataclass(frozen=True)
class Observed:
    """What one Stripe object says about a payment."""

    payment_intent: str
    status: str
    company_id: int | None
    invoice_ids: tuple[int, ...] = ()
    amount: Money | None = None
    discount_minor: int = 0
    method: str | None = None
    session_id: str | None = None
    refunded: Money | None = None
    reason: str | None = None
    dispute_id: str | None = None
    dispute_status: str | None = None  # Stripe's: needs_response, won, lost, warning_closed...
    # An installment plan's payment: the plan and the installment's number (its metadata).
    plan_id: int | None = None
    installment: int | None = None


# Stripe's codes for a bank debit that failed, in words a customer understands.
BANK_FAILURES = {
    "insufficient_funds": "there was not enough money in the account",
    "account_closed": "the bank account is closed",
    "no_account": "the bank could not find the account",
    "invalid_account_number": "the bank could not find the account",
    "account_frozen": "the bank account is frozen",
    "bank_account_restricted": "the bank account does not accept this kind of payment",
    "debit_not_authorized": "the bank says the account holder did not authorise the debit",
    "generic_decline": "the bank declined the payment",
}


def plain_failure(error: Mapping[str, Any] | None) -> str | None:
    """Stripe's last_payment_error in plain words (its own message when the code is unknown)."""
    if not error:
        return None
    code = error.get("code") or error.get("decline_code")
    # Stripe's message is a sentence; ours go inside one ("...: {reason}."), so without its stop.
    message = str(error["message"]).strip().rstrip(".") if error.get("message") else None
    return BANK_FAILURES.get(str(code)) or message or None


def _meta_id(raw: Any) -> int | None:
    """An id we wrote into Stripe metadata, or None: ASCII digits that an id column can hold
    (isdigit() takes '²', which int() refuses, and digits no id column holds)."""
    try:
        return parse_id(str(raw)) if raw is not None else None
    except InputError:
        return None


# Far above any amount Stripe charges in any currency (its own limit is 99,999,999 minor units
# in most), far below what an amount column holds.
MAX_STRIPE_MINOR = 10**12


def _company(meta: Mapping[str, Any]) -> int:
    """The company an event's metadata names (we wrote it): refused when it is not an id."""
    company_id = _meta_id(meta["arbridge_company"])
    if company_id is None:
        raise MalformedEvent(f"the event names company {meta['arbridge_company']!r:.40}, not an id")
    return company_id


def _discount(meta: Mapping[str, Any]) -> int:
    """The discount we wrote into the metadata, in minor units (none: 0)."""
    raw = meta.get("arbridge_discount") or 0
    text = str(raw) if not isinstance(raw, bool) else ""
    found = int(text) if text.isascii() and text.isdigit() and len(text) <= 13 else None
    if found is None or found > MAX_STRIPE_MINOR:
        raise MalformedEvent(f"the event's discount is not an amount: {raw!r:.40}")
    return found


def _money(obj: Mapping[str, Any], key: str) -> Money:
    """An amount of the event's object in its currency: Stripe's whole minor units, never
    negative and within what Stripe charges; refused otherwise (a signed event says it)."""
    amount, currency = obj.get(key), obj.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MalformedEvent(f"the event's {key} is not an amount: {amount!r:.40}")
    if not 0 <= amount <= MAX_STRIPE_MINOR:
        raise MalformedEvent(f"the event's {key} is not a plausible amount: {amount}")
    if not isinstance(currency, str):
        raise MalformedEvent(f"the event's currency is not a currency: {currency!r:.40}")
    try:
        return from_stripe_amount(amount, currency.upper())
    except ValueError as e:
        raise MalformedEvent(f"the event's currency is not one we know: {currency!r:.40}") from e


def _meta_ints(meta: Mapping[str, Any], key: str) -> tuple[int, ...]:
    raw = str(meta.get(key) or "")
    ids = (_meta_id(x) for x in raw.split(","))
    return tuple(i for i in ids if i is not None)


def _meta_number(raw: Any) -> int | None:
    """An installment's number from metadata (0 is the deposit)."""
    text = str(raw) if raw is not None else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else None


PAYMENT_INTENT_EVENTS = {
    "payment_intent.processing": "pending",
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
}


def from_session(obj: Mapping[str, Any], status: str, method: str | None) -> Observed | None:
    meta = obj.get("metadata") or {}
    pi = obj.get("payment_intent")
    pi = pi.get("id") if isinstance(pi, dict) else pi
    if not pi or "arbridge_company" not in meta:
        return None  # not a session arbridge opened
    methods = obj.get("payment_method_types") or []
    return Observed(
        payment_intent=pi,
        status=status,
        company_id=_company(meta),
        invoice_ids=_meta_ints(meta, "arbridge_invoices"),
        amount=_money(obj, "amount_total"),
        discount_minor=_discount(meta),
        method=method or (methods[0] if len(methods) == 1 else None),
        session_id=obj.get("id"),
        plan_id=_meta_id(meta.get(PLAN_KEY)),
        installment=_meta_number(meta.get(INSTALLMENT_KEY)),
    )


def observe(event_type: str, obj: Mapping[str, Any]) -> Observed | None:
    """Turn one Stripe event's object into what it says about our payment (None: not ours)."""
    # Checkout names the methods offered, not the one used: a session paid on completion was
    # paid by card; one that completes unpaid (and settles by async_payment_*) is a bank debit.
    if event_type == "checkout.session.completed":
        paid = obj.get("payment_status") == "paid"
        return from_session(
            obj, "succeeded" if paid else "pending", "card" if paid else "us_bank_account"
        )
    if event_type == "checkout.session.async_payment_succeeded":
        return from_session(obj, "succeeded", "us_bank_account")
    if event_type == "checkout.session.async_payment_failed":
        return from_session(obj, "failed", "us_bank_account")
    if event_type in PAYMENT_INTENT_EVENTS:
        meta = obj.get("metadata") or {}
        if "arbridge_company" not in meta:
            return None
        if event_type == "payment_intent.succeeded" and CHARGE_KEY not in meta:
            # A Checkout payment's success arrives as the session's own event.
            return None
        error = plain_failure(obj.get("last_payment_error"))
        return Observed(
            payment_intent=obj["id"],
            status=PAYMENT_INTENT_EVENTS[event_type],
            company_id=_company(meta),
            invoice_ids=_meta_ints(meta, "arbridge_invoices"),
            amount=_money(obj, "amount"),
            discount_minor=_discount(meta),
            method=(obj.get("payment_method_types") or [None])[0],
            reason=error if event_type == "payment_intent.payment_failed" else None,
            plan_id=_meta_id(meta.get(PLAN_KEY)),
            installment=_meta_number(meta.get(INSTALLMENT_KEY)),
        )
    if event_type == "charge.refunded":
        pi = obj.get("payment_intent")
        if not pi:
            return None
        return Observed(
            payment_intent=pi,
            status="refunded",
            company_id=None,
            refunded=_money(obj, "amount_refunded"),
        )
    if event_type in DISPUTE_EVENTS:
        pi = obj.get("payment_intent")
        if not pi:
            return None
        return Observed(
            payment_intent=pi,
            status=DISPUTE_EVENTS[event_type],
            company_id=None,
            reason=obj.get("reason"),
            dispute_id=obj.get("id"),
            # The funds came back: whatever the dispute's status says yet, the business won.
            dispute_status=obj.get("status")
            if event_type != "charge.dispute.funds_reinstated" or obj.get("status") in DISPUTE_KEPT
            else "won",
        )
    return None


# Stripe's dispute events -> what they say about the payment. A dispute closes "won" (funds
# reinstated; Stripe also sends charge.dispute.funds_reinstated), "lost", or, for an inquiry that
# never became a chargeback, "warning_closed" (the money never left).
DISPUTE_EVENTS = {
    "charge.dispute.created": "disputed",
    "charge.dispute.closed": "dispute_closed",
    "charge.dispute.funds_reinstated": "dispute_closed",
}
DISPUTE_KEPT = ("won", "warning_closed")  # closed with the money staying with the business
DISPUTE_CLOSED = ("won", "lost", "warning_closed")
AFTER_SUCCESS = ("refunded", "disputed", "dispute_closed")
