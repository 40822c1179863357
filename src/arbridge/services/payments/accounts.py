"""Which Stripe a business takes payments through: connect by key or Connect onboarding, the
webhook endpoint arbridge creates in the business's account, disconnect, and the status the
settings page shows."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.connectors.stripe import (
    PaymentGateway,
    StripeGateway,
)
from arbridge.errors import ArbridgeError, RateLimited, Rejected, Transient
from arbridge.runtime import Runtime
from arbridge.services.payments.events import STRIPE_EVENTS
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.sync.activity import log_activity
from arbridge.sync.model import (
    Company,
    Connection,
)
from arbridge.sync.store import ledger_connection, owner

log = logging.getLogger(__name__)


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


def gateway_for_row(rt: Runtime, company_id: int) -> PaymentGateway:
    """The business's Stripe, for an outbox row that acts there."""
    with rt.sessions() as session:
        company = session.get(Company, company_id)
        gateway = gateway_for(rt, session, company) if company else None
    if gateway is None:
        raise Rejected("Stripe is no longer connected for this business")
    return gateway
