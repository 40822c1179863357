"""What the settings page says about taking payments, from the database only.

Asking Stripe which payment methods an account has on is a network call; the page must render
when Stripe is slow or down. So `check_with_stripe` asks (when the owner connects, finishes
onboarding, or presses "Check again") and keeps the answer in `stripe_checks`, and
`stripe_status` reads that answer back.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.errors import ArbridgeError
from arbridge.runtime import Runtime
from arbridge.services.payments.accounts import (
    StripeStatus,
    gateway_for,
    stripe_connection,
    webhook_url,
)
from arbridge.sync.model import Company, Connection, StripeCheck

log = logging.getLogger(__name__)

NOT_CHECKED = "Not checked with Stripe yet: press Check again."


def _mode(rt: Runtime, conn: Connection | None) -> str | None:
    """Which real Stripe the company uses ("connect", "key", "install-key"), or None when it
    has none (or the demo's simulation)."""
    if rt.settings.stripe_connect:
        return "connect"
    if conn is not None and conn.status == "active":
        return "key"
    if rt.settings.stripe_secret_key:
        return "install-key"
    return None


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


def stripe_status(rt: Runtime, s: Session, company: Company) -> StripeStatus:
    """The payments status for the settings page, from the database (never Stripe)."""
    conn = stripe_connection(s, company.id)
    mode = _mode(rt, conn)
    if mode is None:
        if gateway_for(rt, s, company) is None:
            return StripeStatus("none", None, False, False, "Not connected: add your Stripe key.")
        return StripeStatus(
            "simulated", None, True, True, "Simulated checkout (demo): no real money moves."
        )
    if mode == "connect":
        if conn is None:
            return StripeStatus(
                "connect", None, False, False, "Not connected: connect your Stripe account."
            )
        if conn.status != "active":
            return StripeStatus(
                mode, conn.tenant_id, False, False, "Onboarding with Stripe is not finished yet."
            )
    account = conn.tenant_id if conn is not None else None
    check = s.scalar(select(StripeCheck).where(StripeCheck.company_id == company.id))
    if check is None or check.mode != mode or check.account != account:
        return _with_webhook(rt, conn, StripeStatus(mode, account, False, False, NOT_CHECKED))
    if check.error is not None:
        detail = f"Stripe could not be reached: {check.error}"
    else:
        detail = "Connected to Stripe."
    return _with_webhook(
        rt,
        conn,
        StripeStatus(
            mode,
            account,
            check.card and check.error is None,
            check.ach and check.error is None,
            detail,
        ),
    )


def can_check(rt: Runtime, s: Session, company: Company) -> bool:
    """Is there a real Stripe account to ask (connected, onboarded)?"""
    conn = stripe_connection(s, company.id)
    mode = _mode(rt, conn)
    return mode is not None and (
        mode != "connect" or (conn is not None and conn.status == "active")
    )


def check_with_stripe(rt: Runtime, s: Session, company: Company) -> StripeCheck | None:
    """Ask Stripe which payment methods the company's account has on, and keep the answer
    (or that Stripe could not be reached). Nothing to ask without a real Stripe account."""
    if not can_check(rt, s, company):
        return None
    conn = stripe_connection(s, company.id)
    mode = _mode(rt, conn)
    gateway = gateway_for(rt, s, company)
    if gateway is None or gateway.simulated:
        return None
    check = s.scalar(select(StripeCheck).where(StripeCheck.company_id == company.id))
    if check is None:
        check = StripeCheck(company_id=company.id)
        s.add(check)
    check.mode, check.account = mode, conn.tenant_id if conn is not None else None
    check.checked_at = rt.clock.now()
    try:
        caps = gateway.capabilities()
    except ArbridgeError as e:
        log.warning("could not read Stripe capabilities for %s: %s", company.slug, e)
        check.card, check.ach, check.error = False, False, str(e)[:2000]
        return check
    check.card = caps.get("card_payments") == "active"
    check.ach = caps.get("us_bank_account_ach_payments") == "active"
    check.error = None
    return check
