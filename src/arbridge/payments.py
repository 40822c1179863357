"""Getting paid: payment links to Stripe Checkout, and Stripe's events back into the model.

The amount always comes from the server's current balances, never from the URL or the form.
Every Stripe event (and the customer's return from Checkout, which may beat the webhook) goes
through `record`, which locks the payment's row and moves its state only forward, so duplicate
and out-of-order events leave the same result. Side effects (ledger write-back, receipts,
refunds) are queued in the outbox inside the same transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import chain
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arbridge.clock import local_date
from arbridge.collections.payments import (
    Discount,
    Due,
    amount_to_pay,
    apply_payment,
    discount_from_terms,
    early_payment_discount,
    transition,
)
from arbridge.collections.policy import policy
from arbridge.connectors.stripe import (
    CheckoutRequest,
    CheckoutSession,
    PaymentGateway,
    StripeGateway,
)
from arbridge.connectors.stripe.gateway import from_stripe_amount, to_stripe_amount
from arbridge.connectors.stripe.simulated import SimulatedStripe
from arbridge.errors import ArbridgeError, NotFound, RateLimited, Rejected, Transient
from arbridge.handlers import STRIPE_EVENTS, ledger_payment_payload
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    CheckoutSessionRow,
    CollectedAllocation,
    CollectedPayment,
    Company,
    Connection,
    Contact,
    Customer,
    Invoice,
    OutboxMessage,
    PayToken,
    WebhookEvent,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.pay_links import check_live, statement_invoices
from arbridge.sync.store import find_pay_token, ledger_connection, owner
from arbridge.webhooks.inbox import Stored, store
from arbridge.webhooks.stripe import signed_by, stripe_event, unverified_event

log = logging.getLogger(__name__)

SESSION_MINUTES = 60
KEY_WINDOW_MINUTES = 50  # shorter than a session's life, so a key never names an expired one
LEDGER_PAYMENT, LEDGER_DISCOUNT, LEDGER_REVERSAL = (
    "ledger_payment",
    "ledger_discount",
    "ledger_reversal",
)
STRIPE_REFUND, EMAIL = "stripe_refund", "email"
STRIPE_EXPIRE = "stripe_expire_session"


# --- Which Stripe -------------------------------------------------------------------------------
def simulated_webhook_secret(rt: Runtime) -> str:
    """The demo's simulated Stripe signs its events with a secret derived from the instance's."""
    assert rt.settings.secret_key
    return (
        "whsec_sim_"
        + hmac.new(rt.settings.secret_key.encode(), b"simulated-stripe", hashlib.sha256).hexdigest()
    )


def webhook_secret(rt: Runtime) -> str | None:
    """The install's own endpoint's secret (platform, or a single business's install key)."""
    return rt.settings.stripe_webhook_secret or (
        None if rt.settings.stripe_secret_key else simulated_webhook_secret(rt)
    )


def install_webhook_secrets(rt: Runtime) -> list[str]:
    """Secrets that sign for the whole install: its endpoint's, and (with no Stripe key, so
    the demo's simulation may be in use) the simulation's, which nobody outside can know."""
    found = [rt.settings.stripe_webhook_secret] if rt.settings.stripe_webhook_secret else []
    if not rt.settings.stripe_secret_key:
        found.append(simulated_webhook_secret(rt))
    return found


def stripe_connection(session: Session, company_id: int) -> Connection | None:
    return session.scalar(
        select(Connection).where(
            Connection.company_id == company_id, Connection.provider == "stripe"
        )
    )


def gateway_for(rt: Runtime, session: Session, company: Company) -> PaymentGateway | None:
    """The company's own Stripe account, the platform acting for it, or the demo's simulation."""
    settings = rt.settings
    conn = stripe_connection(session, company.id)
    if settings.stripe_connect:
        if conn is None or conn.status != "active" or not settings.stripe_secret_key:
            return None
        return StripeGateway(
            settings.stripe_secret_key, account=conn.tenant_id, api_base=settings.stripe_api_base
        )
    if conn is not None and conn.status == "active" and conn.credentials_encrypted:
        key = json.loads(rt.keyring.decrypt(conn.credentials_encrypted))["api_key"]
        return StripeGateway(key, api_base=settings.stripe_api_base)
    if settings.stripe_secret_key:
        return StripeGateway(settings.stripe_secret_key, api_base=settings.stripe_api_base)
    ledger = ledger_connection(session, company.id)
    if ledger is not None and ledger.provider == "demo":
        return simulated_stripe(rt)
    return None


@dataclass(frozen=True)
class StripeStatus:
    mode: str  # "connect", "key", "install-key", "simulated", "none"
    account: str | None
    card: bool
    ach: bool
    detail: str
    # Are Stripe's events arriving? (Only a connection of the company's own can tell.)
    webhook_url: str = ""
    webhook_secret: bool = False  # a signing secret is there to verify this account's events
    webhook_created: bool = False  # arbridge created the endpoint in the business's account
    last_event_at: datetime | None = None


def stripe_status(rt: Runtime, session: Session, company: Company) -> StripeStatus:
    """What the settings page says about taking payments (asks Stripe which methods are on)."""
    conn = stripe_connection(session, company.id)
    settings = rt.settings
    if settings.stripe_connect:
        if conn is None:
            return StripeStatus(
                "connect", None, False, False, "Not connected: connect your Stripe account."
            )
        mode = "connect"
    elif conn is not None and conn.status == "active":
        mode = "key"
    elif settings.stripe_secret_key:
        mode = "install-key"
    else:
        gw = gateway_for(rt, session, company)
        if gw is None:
            return StripeStatus("none", None, False, False, "Not connected: add your Stripe key.")
        return StripeStatus(
            "simulated", None, True, True, "Simulated checkout (demo): no real money moves."
        )
    if mode == "connect" and conn is not None and conn.status != "active":
        return StripeStatus(
            mode, conn.tenant_id, False, False, "Onboarding with Stripe is not finished yet."
        )
    gw = gateway_for(rt, session, company)
    assert isinstance(gw, StripeGateway)
    try:
        caps = gw.capabilities()
    except ArbridgeError as e:
        log.warning("could not read Stripe capabilities for %s: %s", company.slug, e)
        return StripeStatus(
            mode,
            conn.tenant_id if conn else None,
            False,
            False,
            f"Stripe could not be reached: {e}",
        )
    card = caps.get("card_payments") == "active"
    ach = caps.get("us_bank_account_ach_payments") == "active"
    return _with_webhook(
        rt,
        conn,
        StripeStatus(mode, conn.tenant_id if conn else None, card, ach, "Connected to Stripe."),
    )


def _with_webhook(rt: Runtime, conn: Connection | None, status: StripeStatus) -> StripeStatus:
    if conn is None:
        return status
    own = status.mode == "key"
    return replace(
        status,
        webhook_url=webhook_url(rt),
        webhook_secret=bool(conn.webhook_secret_encrypted)
        if own
        else bool(rt.settings.stripe_webhook_secret),
        webhook_created=own and bool(conn.webhook_endpoint_id),
        last_event_at=conn.webhook_last_event_at,
    )


def webhook_url(rt: Runtime) -> str:
    return f"{rt.settings.base_url}/webhooks/stripe"


def _endpoint_idempotency_key(rt: Runtime, company: Company) -> str:
    """One key per connect: it makes Stripe's own retries of the request safe. Never reused by
    a later connect, whose first step deletes this company's earlier endpoints: a replayed
    response would hand back a deleted endpoint."""
    return f"arbridge:webhook-endpoint:{company.id}:{secrets.token_hex(8)}"


def _delete_endpoint(rt: Runtime, conn: Connection) -> str | None:
    """Delete the endpoint arbridge created in the business's account (with the key that made
    it); returns what went wrong, for the owner, or None."""
    endpoint = conn.webhook_endpoint_id
    if not endpoint or not conn.credentials_encrypted:
        return None
    try:
        key = json.loads(rt.keyring.decrypt(conn.credentials_encrypted))["api_key"]
        StripeGateway(key, api_base=rt.settings.stripe_api_base).delete_webhook_endpoint(
            endpoint, idempotency_key=f"arbridge:webhook-endpoint-delete:{endpoint}"
        )
    except ArbridgeError as e:
        log.warning("could not delete Stripe webhook endpoint %s: %s", endpoint, e)
        return f"the webhook endpoint {endpoint} could not be deleted in Stripe ({e})"
    conn.webhook_endpoint_id = None
    return None


def connect_with_key(rt: Runtime, s: Session, company: Company, api_key: str) -> str:
    """A single business's own (restricted) key: check it with Stripe, keep it encrypted."""
    api_key = api_key.strip()
    if not api_key.startswith(("sk_", "rk_")):
        raise Rejected(
            "that does not look like a Stripe secret or restricted key (sk_... or rk_...)"
        )
    gateway = StripeGateway(api_key, api_base=rt.settings.stripe_api_base)
    account = gateway.account()
    conn = stripe_connection(s, company.id)
    if conn is not None and conn.status == "active" and conn.webhook_endpoint_id:
        _delete_endpoint(rt, conn)  # made with the key being replaced; best effort
        conn.webhook_secret_encrypted = None  # that endpoint's secret signs nothing now
    # Stripe's events for this account come to its own endpoint, signed with its own secret.
    try:
        endpoint = gateway.create_webhook_endpoint(
            webhook_url(rt),
            STRIPE_EVENTS,
            metadata={"arbridge_company": str(company.id)},
            idempotency_key=_endpoint_idempotency_key(rt, company),
        )
    except (Rejected, Transient, RateLimited) as e:
        # e.g. a base URL Stripe will not call (http://127.0.0.1): the key still works, and the
        # settings page asks for the signing secret of an endpoint the owner makes.
        log.warning("no Stripe webhook endpoint created for %s: %s", company.slug, e)
        endpoint = None
    credentials = rt.keyring.encrypt(json.dumps({"api_key": api_key}))
    if conn is None:
        conn = Connection(company_id=company.id, provider="stripe", created_at=rt.clock.now())
        s.add(conn)
    elif conn.tenant_id != account["id"]:
        # Another account: a secret pasted for the old one signs nothing of the new one's.
        conn.webhook_secret_encrypted, conn.webhook_last_event_at = None, None
    conn.tenant_id, conn.credentials_encrypted, conn.status = account["id"], credentials, "active"
    if endpoint is not None:
        conn.webhook_endpoint_id = endpoint[0]
        conn.webhook_secret_encrypted = rt.keyring.encrypt(endpoint[1])
        conn.webhook_last_event_at = None
    else:
        conn.webhook_endpoint_id = None
    log_activity(
        s, rt.clock, company.id, "stripe.connected", f"Stripe account {account['id']} connected"
    )
    return account["id"]


def set_webhook_secret(rt: Runtime, s: Session, company: Company, secret: str) -> None:
    """The owner pastes the signing secret of the endpoint they made in Stripe (a restricted key
    usually may not create one); kept encrypted like the key."""
    secret = secret.strip()
    conn = stripe_connection(s, company.id)
    if conn is None or conn.status != "active" or not conn.credentials_encrypted:
        raise Rejected("connect Stripe with your key first")
    if not secret.startswith("whsec_") or not 10 <= len(secret) <= 200 or not secret.isascii():
        raise Rejected("that does not look like a Stripe signing secret (whsec_...)")
    conn.webhook_secret_encrypted = rt.keyring.encrypt(secret)
    conn.webhook_last_event_at = None
    log_activity(
        s, rt.clock, company.id, "stripe.webhook_secret", "Stripe webhook signing secret saved"
    )


def start_onboarding(
    rt: Runtime, s: Session, company: Company, return_url: str, refresh_url: str
) -> str:
    """Platform mode: create (once) the business's connected account and send the owner to Stripe."""
    if not (rt.settings.stripe_connect and rt.settings.stripe_secret_key):
        raise Rejected("Stripe Connect is not configured on this arbridge")
    platform = StripeGateway(rt.settings.stripe_secret_key, api_base=rt.settings.stripe_api_base)
    conn = stripe_connection(s, company.id)
    if conn is None:
        account = platform.create_connected_account(
            country=company.country,
            email=owner(s, company).email,
            business_name=company.name,
            reference=str(company.id),
        )
        conn = Connection(
            company_id=company.id,
            provider="stripe",
            tenant_id=account,
            status="needs_reconnect",
            status_detail="onboarding",
            created_at=rt.clock.now(),
        )
        s.add(conn)
    return platform.onboarding_link(conn.tenant_id, refresh_url=refresh_url, return_url=return_url)


def finish_onboarding(rt: Runtime, s: Session, company: Company) -> bool:
    conn = stripe_connection(s, company.id)
    if conn is None or not rt.settings.stripe_secret_key:
        return False
    account = StripeGateway(
        rt.settings.stripe_secret_key, account=conn.tenant_id, api_base=rt.settings.stripe_api_base
    ).account()
    if account.get("charges_enabled"):
        conn.status, conn.status_detail = "active", None
        log_activity(
            s,
            rt.clock,
            company.id,
            "stripe.connected",
            f"Stripe account {conn.tenant_id} ready to take payments",
        )
        return True
    return False


def disconnect_stripe(rt: Runtime, s: Session, company: Company) -> str | None:
    """Disconnect, deleting the webhook endpoint arbridge created; returns a problem to show."""
    conn = stripe_connection(s, company.id)
    problem = None
    if conn is not None:
        problem = _delete_endpoint(rt, conn)
        conn.status, conn.credentials_encrypted = "disconnected", None
        conn.webhook_secret_encrypted, conn.webhook_last_event_at = None, None
        log_activity(
            s,
            rt.clock,
            company.id,
            "stripe.disconnected",
            "Stripe disconnected" + (f"; {problem}" if problem else ""),
        )
    return problem


def simulated_stripe(rt: Runtime) -> SimulatedStripe:
    return SimulatedStripe(
        rt.settings.instance_path / "simulated-stripe.json",
        rt.clock,
        rt.settings.base_url,
        simulated_webhook_secret(rt),
        # The simulation's events are verified with the simulation's own secret, whatever
        # secrets the install has configured for real Stripe.
        deliver=lambda body, header: ingest_stripe(
            rt, body, header, only_secret=simulated_webhook_secret(rt)
        ),
    )


def settle_simulated_payments(rt: Runtime) -> int:
    """The demo's bank payments clear (or bounce) when their time comes."""
    if not (rt.settings.instance_path / "simulated-stripe.json").exists():
        return 0
    return simulated_stripe(rt).settle_due()


# --- What is owed -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quote:
    company: Company
    customer: Customer
    invoices: Sequence[Invoice]
    state: str  # payable, pending, paid, voided, closed
    due: Sequence[Due] = field(default_factory=tuple)
    discount: Discount | None = None

    @property
    def currency(self) -> str:
        return self.invoices[0].currency

    @property
    def balance(self) -> Money:
        return Money.from_minor(
            sum(i.balance_minor for i in self.invoices if i.status == "open"), self.currency
        )

    @property
    def amount(self) -> Money:
        return amount_to_pay(self.due, self.currency)

    @property
    def discount_total(self) -> Money:
        return Money.from_minor(sum(d.discount.minor for d in self.due), self.currency)


def quote(rt: Runtime, session: Session, link: PayToken) -> Quote:
    """What this payment link asks for right now, from the current balances."""
    check_live(link, rt.clock.now())  # LinkGone: expired or withdrawn
    if link.invoice_id is not None:
        invoices = [session.get(Invoice, link.invoice_id)]
    else:
        invoices = list(statement_invoices(session, link))
    invoices = [i for i in invoices if i is not None and i.company_id == link.company_id]
    company = session.get(Company, link.company_id)
    customer = session.get(Customer, link.customer_id) if link.customer_id else None
    if company is None or customer is None:
        raise NotFound("no such payment link")
    if not invoices:
        if link.invoice_id is None:
            # A statement whose invoices were all settled (through another link, a cheque):
            # nothing to pay, said plainly rather than as a missing link.
            return Quote(company, customer, [], "paid")
        raise NotFound("no such payment link")
    if len({i.currency for i in invoices}) > 1:
        # A statement in several currencies pays the home currency's invoices; the rest stay.
        invoices = [i for i in invoices if i.currency == invoices[0].currency]
    first = invoices[0]
    if all(i.status == "voided" for i in invoices):
        return Quote(company, customer, invoices, "voided")
    open_ = [i for i in invoices if i.status == "open" and i.balance_minor > 0]
    if any(i.payment_pending for i in open_):
        return Quote(company, customer, invoices, "pending")
    if not open_:
        return Quote(
            company, customer, invoices, "paid" if first.status in ("paid", "open") else "closed"
        )
    pol = policy(company.settings)
    today = local_date(rt.clock.now(), company.timezone)
    due, best = [], None
    for inv in open_:
        # The owner's offer wins; otherwise the ledger's own terms ("2% 10 Net 30") may offer one.
        percent, days = pol.discount_percent, pol.discount_days
        if not percent and (from_terms := discount_from_terms(inv.terms)):
            percent, days = from_terms
        d = early_payment_discount(inv.balance, inv.issued_on, today, percent, days)
        due.append(Due(inv.id, inv.balance, d.amount if d else Money.zero(inv.currency)))
        if d and (best is None or d.ends_on < best.ends_on):
            best = d
    return Quote(company, customer, open_, "payable", due, best)


def _basis(q: Quote) -> str:
    return ",".join(f"{d.invoice_id}:{d.balance.minor}:{d.discount.minor}" for d in q.due)


def methods_for(gateway: PaymentGateway, q: Quote) -> list[str]:
    pol = policy(q.company.settings)
    methods = ["card"] if pol.accept_card else []
    if pol.accept_ach and q.currency == "USD":
        methods.append("us_bank_account")
    return methods


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
        basis, now = _basis(q), rt.clock.now()
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
        contact = s.scalar(
            select(Contact.email)
            .where(Contact.customer_id == q.customer.id, Contact.email.is_not(None))
            .order_by(Contact.is_primary.desc())
        )
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
                "arbridge_invoices": ",".join(str(d.invoice_id) for d in q.due),
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
                invoice_ids=[d.invoice_id for d in q.due],
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


# --- Stripe's news in -----------------------------------------------------------------------------
def _hinted_companies(s: Session, event: Mapping[str, Any]) -> list[int]:
    """Which companies the (unverified) event points at: only to try their secrets first."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return []
    found: list[int] = []
    meta = obj.get("metadata")
    if isinstance(meta, dict) and str(meta.get("arbridge_company") or "").isdigit():
        found.append(int(meta["arbridge_company"]))
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
    Connect account the event names. Nothing unverified is stored."""
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


def _meta_ints(meta: Mapping[str, Any], key: str) -> tuple[int, ...]:
    raw = str(meta.get(key) or "")
    return tuple(int(x) for x in raw.split(",") if x.strip().isdigit())


def _from_session(obj: Mapping[str, Any], status: str, method: str | None) -> Observed | None:
    meta = obj.get("metadata") or {}
    pi = obj.get("payment_intent")
    pi = pi.get("id") if isinstance(pi, dict) else pi
    if not pi or "arbridge_company" not in meta:
        return None  # not a session arbridge opened
    methods = obj.get("payment_method_types") or []
    return Observed(
        payment_intent=pi,
        status=status,
        company_id=int(meta["arbridge_company"]),
        invoice_ids=_meta_ints(meta, "arbridge_invoices"),
        amount=from_stripe_amount(obj["amount_total"], obj["currency"].upper()),
        discount_minor=int(meta.get("arbridge_discount") or 0),
        method=method or (methods[0] if len(methods) == 1 else None),
        session_id=obj.get("id"),
    )


def observe(event_type: str, obj: Mapping[str, Any]) -> Observed | None:
    """Turn one Stripe event's object into what it says about our payment (None: not ours)."""
    # Checkout names the methods offered, not the one used: a session paid on completion was
    # paid by card; one that completes unpaid (and settles by async_payment_*) is a bank debit.
    if event_type == "checkout.session.completed":
        paid = obj.get("payment_status") == "paid"
        return _from_session(
            obj, "succeeded" if paid else "pending", "card" if paid else "us_bank_account"
        )
    if event_type == "checkout.session.async_payment_succeeded":
        return _from_session(obj, "succeeded", "us_bank_account")
    if event_type == "checkout.session.async_payment_failed":
        return _from_session(obj, "failed", "us_bank_account")
    if event_type in ("payment_intent.processing", "payment_intent.payment_failed"):
        meta = obj.get("metadata") or {}
        if "arbridge_company" not in meta:
            return None
        error = (obj.get("last_payment_error") or {}).get("message")
        return Observed(
            payment_intent=obj["id"],
            status="pending" if event_type.endswith("processing") else "failed",
            company_id=int(meta["arbridge_company"]),
            invoice_ids=_meta_ints(meta, "arbridge_invoices"),
            amount=from_stripe_amount(obj["amount"], obj["currency"].upper()),
            discount_minor=int(meta.get("arbridge_discount") or 0),
            method=(obj.get("payment_method_types") or [None])[0],
            reason=error,
        )
    if event_type == "charge.refunded":
        pi = obj.get("payment_intent")
        if not pi:
            return None
        return Observed(
            payment_intent=pi,
            status="refunded",
            company_id=None,
            refunded=from_stripe_amount(obj["amount_refunded"], obj["currency"].upper()),
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
    if event.company_id is not None and seen.company_id is None:
        # A refund or dispute names only the PaymentIntent: it must be one of this account's.
        paid_to = s.scalar(
            select(CollectedPayment.company_id).where(
                CollectedPayment.payment_intent_id == seen.payment_intent
            )
        )
        if paid_to is not None and paid_to != event.company_id:
            raise Rejected(
                f"event {event.event_id} is about another company's payment "
                "but came for this account"
            )
    record(rt, s, seen)


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
        seen = _from_session(
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
            _refund(rt, s, row, seen.refunded)
        elif current == "disputed" and seen.refunded is not None:
            # Refunded during an inquiry: the invoices were reopened by the dispute already;
            # keep the total, so a dispute closed in the business's favour re-applies the rest.
            row.refunded_minor = max(row.refunded_minor, seen.refunded.minor)
        return
    if seen.status == "disputed" and row.dispute_status in DISPUTE_CLOSED:
        log.info("stripe dispute %s opened after it closed: a late event", seen.dispute_id)
        return
    if seen.status == "dispute_closed":
        _dispute_closed(rt, s, row, current, seen)
        return
    new = transition(current, seen.status)
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
        _plan(row, invoices)
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
        _notify_owner(
            rt, s, company, f"payment-failed:{row.payment_intent_id}", "A payment failed", message
        )
    elif new == "disputed":
        row.dispute_id, row.dispute_status = seen.dispute_id, seen.dispute_status
        _reverse(
            rt,
            s,
            company,
            row,
            Money.from_minor(row.amount_minor - row.unapplied_minor, row.currency),
            "disputed",
        )


def row_money(row: CollectedPayment) -> Money:
    return Money.from_minor(row.amount_minor, row.currency)


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
    return list(found)


def _plan(row: CollectedPayment, invoices: Sequence[Invoice]) -> None:
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
            inv.balance if inv.status == "open" else Money.zero(inv.currency),
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
        inv.balance_minor -= a.amount.minor + a.discount.minor
        if inv.balance_minor == 0:
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
            row.ledger_key = f"ledger_payment:{row.payment_intent_id}"
            enqueue(
                s,
                rt.clock,
                company_id=company.id,
                kind=LEDGER_PAYMENT,
                key=row.ledger_key,
                payload=ledger_payment_payload(
                    conn,
                    customer_source_id=customer.source_id,
                    currency=amount.currency,
                    amount=sum((a for _, a in paid_lines)),
                    received_on=local_date(now, company.timezone),
                    reference=row.payment_intent_id,
                    lines=paid_lines,
                ),
            )
        discount_lines = [
            (by_id[a.invoice_id].source_id, a.discount.amount)
            for a in applied
            if a.discount.amount > 0
        ]
        if discount_lines:
            enqueue(
                s,
                rt.clock,
                company_id=company.id,
                kind=LEDGER_DISCOUNT,
                key=f"ledger_discount:{row.payment_intent_id}",
                payload={
                    "connection_id": conn.id,
                    "customer_source_id": customer.source_id,
                    "currency": amount.currency,
                    "issued_on": local_date(now, company.timezone).isoformat(),
                    "reference": f"Early-payment discount, {row.payment_intent_id}",
                    "lines": [
                        {"invoice_source_id": i, "amount": str(a)} for i, a in discount_lines
                    ],
                },
            )
    if left.amount > 0:
        message = (
            f"{amount.format()} arrived but only {(amount - left).format()} was still owed: "
            f"{left.format()} is an overpayment. Refund it from the payments list."
        )
        log_activity(
            s,
            rt.clock,
            company.id,
            "payment.overpaid",
            message,
            payment_intent=row.payment_intent_id,
        )
        _notify_owner(
            rt, s, company, f"overpaid:{row.payment_intent_id}", "A customer overpaid", message
        )
    if customer is not None:
        _receipt(rt, s, company, customer, row, numbers)
    _notify_owner(
        rt,
        s,
        company,
        f"paid:{row.payment_intent_id}",
        f"Payment received: {amount.format()}",
        f"{customer.name if customer else 'A customer'} paid {amount.format()} for invoice {numbers} through arbridge.",
    )


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
            .where(OutboxMessage.key == f"ledger_discount:{row.payment_intent_id}")
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
                inv.balance_minor = left
                inv.status = "open" if inv.balance_minor else "paid"
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
        log_activity(
            s,
            rt.clock,
            company.id,
            "payment.overpaid",
            text,
            payment_intent=row.payment_intent_id,
        )
        _notify_owner(
            rt, s, company, f"overpaid:{row.payment_intent_id}", "A customer overpaid", text
        )
        return lines


def _line(inv: Invoice, minor: int) -> dict[str, str]:
    return {
        "invoice_source_id": inv.source_id,
        "amount": str(Money.from_minor(minor, inv.currency).amount),
    }


def _expire_other_sessions(
    rt: Runtime, s: Session, company: Company, row: CollectedPayment, invoices: Sequence[Invoice]
) -> None:
    """Another link's Checkout Session for these invoices (a second tab, an older reminder, a
    statement) could still be paid: close each one at Stripe, through the outbox."""
    ids = {inv.id for inv in invoices}
    if not ids:
        return
    others = s.scalars(
        select(CheckoutSessionRow)
        .where(
            CheckoutSessionRow.company_id == company.id,
            CheckoutSessionRow.status == "open",
            CheckoutSessionRow.expires_at > rt.clock.now(),
        )
        .with_for_update()
    ).all()
    for other in others:
        if other.stripe_session_id == row.checkout_session_id or not ids & set(
            other.invoice_ids or ()
        ):
            continue
        other.status = "expired"  # never handed out again, whatever Stripe answers
        enqueue(
            s,
            rt.clock,
            company_id=company.id,
            kind=STRIPE_EXPIRE,
            key=f"stripe_expire:{other.stripe_session_id}",
            payload={"company_id": company.id, "session_id": other.stripe_session_id},
        )


def _discounts(row: CollectedPayment, invoices: Sequence[Invoice]) -> dict[int, Money]:
    """The discount the customer was offered when the session opened, per invoice (oldest first)."""
    if not row.discount_minor or not invoices:
        return {}
    # Spread the session's discount over its invoices in proportion to their balances, exactly.
    currency = invoices[0].currency
    balances = [inv.balance_minor if inv.status == "open" else 0 for inv in invoices]
    whole = sum(balances) or 1
    shares, given = {}, 0
    for inv, bal in zip(invoices, balances, strict=True):
        share = row.discount_minor * bal // whole
        shares[inv.id] = share
        given += share
    if invoices:
        shares[invoices[0].id] += row.discount_minor - given
    return {k: Money.from_minor(v, currency) for k, v in shares.items()}


def _refund(rt: Runtime, s: Session, row: CollectedPayment, refunded_total: Money) -> None:
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
        _reverse(rt, s, company, row, Money.from_minor(reopen, row.currency), reason="refunded")
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


def _reverse(
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
        # The early-payment discount stays granted (its credit note stays in the ledger).
        inv.balance_minor += back
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
    _notify_owner(
        rt,
        s,
        company,
        f"{reason}:{row.payment_intent_id}:{row.refunded_minor}",
        f"A payment was {reason}",
        f"{amount.format()} of payment {row.payment_intent_id} was {reason}; the invoice is open again.",
    )


def _dispute_closed(
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
        _reverse(
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
    due = [
        Due(inv.id, inv.balance if inv.status == "open" else zero, zero)
        for inv in invoices
        if inv.status == "open" and inv.balance_minor > 0
    ]
    applied, left = apply_payment(money, due)
    by_id = {inv.id: inv for inv in invoices}
    allocation = {a.invoice_id: a for a in row.allocations}
    for a in applied:
        inv = by_id[a.invoice_id]
        allocation[inv.id].amount_minor += a.amount.minor
        inv.balance_minor -= a.amount.minor
        if inv.balance_minor == 0:
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
    _notify_owner(
        rt, s, company, f"dispute-won:{row.payment_intent_id}", "A dispute was won", message
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
    if row.ledger_key is None or row.ledger_key.startswith("ledger_payment:"):
        root = row.ledger_key
    else:
        before = s.scalar(select(OutboxMessage.payload).where(OutboxMessage.key == row.ledger_key))
        root = (before or {}).get("root", (before or {}).get("payment_key"))
    prefix = f"ledger_reversal:{row.payment_intent_id}:"
    last = (row.ledger_key or "").removeprefix(prefix)
    number = int(last) + 1 if row.ledger_key != last and last.isdigit() else 1
    customer = s.get(Customer, row.customer_id) if row.customer_id else None
    key = f"{prefix}{number}"
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=LEDGER_REVERSAL,
        key=key,
        payload={
            "connection_id": conn.id,
            "root": root,
            "after": row.ledger_key,
            "repost": repost,
            "currency": row.currency,
            "reference": row.payment_intent_id,
            "customer_source_id": customer.source_id if customer else None,
            "received_on": local_date(
                row.succeeded_at or rt.clock.now(), company.timezone
            ).isoformat(),
        },
    )
    row.ledger_key = key


# --- Mail (through the outbox's "email" kind) -------------------------------------------------
def _notify_owner(
    rt: Runtime, s: Session, company: Company, key: str, subject: str, text: str
) -> None:
    try:
        to = owner(s, company).email
    except NotFound:
        return
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=EMAIL,
        key=f"owner:{company.id}:{key}",
        payload={"to": to, "subject": subject, "text": text, "mail": "owner"},
    )


def _receipt(
    rt: Runtime,
    s: Session,
    company: Company,
    customer: Customer,
    row: CollectedPayment,
    numbers: str,
) -> None:
    to = s.scalar(
        select(Contact.email)
        .where(Contact.customer_id == customer.id, Contact.email.is_not(None))
        .order_by(Contact.is_primary.desc())
    )
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
    text = (
        f"Thank you: {company.name} received your payment of {amount.format()} for invoice {numbers}.\n"
        f"Reference: {row.payment_intent_id}\n"
    )
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=EMAIL,
        key=f"receipt:{row.payment_intent_id}",
        payload={
            "to": to,
            "subject": f"Receipt from {company.name}: {amount.format()}",
            "text": text,
            "mail": "receipt",
            "customer_id": customer.id,
        },
    )


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


def refund_status(s: Session, row: CollectedPayment) -> RefundStatus | None:
    if row.refund_key is None:
        return None
    msg = s.scalar(select(OutboxMessage).where(OutboxMessage.key == row.refund_key))
    if msg is None:
        return None
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
    key = f"stripe_refund:{row.payment_intent_id}:overpayment:{number}"
    enqueue(
        s,
        rt.clock,
        company_id=company.id,
        kind=STRIPE_REFUND,
        key=key,
        payload={
            "company_id": company.id,
            "payment_intent": row.payment_intent_id,
            "amount_minor": amount.minor,
            "currency": amount.currency,
            "refunded_before": row.refunded_minor,
            "earlier": earlier,
        },
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
