"""Xero in the browser: Connect from Settings (the OAuth callback offers the organisations the
grant covers), the payment account, Disconnect, and POST /webhooks/xero.

Connecting: the signed-in owner consents at Xero; the callback lists the grant's organisations
(GET /connections) and the owner picks the one for this company; it is attached only after the
grant has shown it reads it (listed, and its Organisation answered), and never when another
company holds it. The grant waits for the choice encrypted in the session, never in a form.

Webhooks: Xero proves the endpoint before sending events ("intent to receive"): a correctly
signed POST must get 200 with an empty body and a wrongly signed one 401, within 5 seconds. So
the route only verifies and stores; the worker handles the stored events later.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from arbridge.connectors.xero import Grant, XeroIdentity
from arbridge.errors import ArbridgeError, ConfigError, SignatureInvalid
from arbridge.providers import get as provider
from arbridge.providers import xero
from arbridge.sync import connections
from arbridge.sync.model import Company, Connection
from arbridge.sync.store import log_activity, provider_connection
from arbridge.sync.xero_store import (
    LABEL,
    ConnectionTokens,
    attach,
    store_xero_prefs,
    stored_payment_accounts,
    tenant_owner,
    xero_prefs,
)
from arbridge.web import csrf
from arbridge.web.common import company_required, current_user, db, runtime
from arbridge.webhooks.xero import MalformedWebhook

bp = Blueprint("xero", __name__)
log = logging.getLogger(__name__)
STATE_KEY = "xero_oauth_state"
PENDING_KEY = "xero_pending_grant"


def _refuse(title: str, message: str, status: int = 400) -> Any:
    return render_template("error.html", title=title, message=message), status


def _settings_url(company: Company) -> str:
    return url_for("owner.settings", slug=company.slug) + "#connections"


def _identity() -> XeroIdentity:
    return xero.oauth(runtime())


def _own_company() -> Company | None:
    user = current_user()
    return db().get(Company, user.company_id) if user is not None else None


@bp.get("/xero/connect")
def connect() -> Any:
    """Start OAuth from the settings page: the signed-in owner's company gets the organisation."""
    if _own_company() is None:
        return _refuse(
            "Sign in first",
            "Sign in to arbridge, then connect Xero from your company's Settings.",
            403,
        )
    try:
        identity = _identity()
    except ConfigError as e:
        log.error("Xero connect refused: %s", e)
        return _refuse("Xero is not set up", "This arbridge has no Xero app configured.")
    state = secrets.token_urlsafe(24)
    session[STATE_KEY] = state
    return redirect(identity.authorization_url(state))


def _hold(grant: Grant) -> None:
    rt = runtime()
    session[PENDING_KEY] = rt.keyring.encrypt(json.dumps(grant.as_credentials()))


def _held() -> Grant | None:
    sealed = session.pop(PENDING_KEY, None)
    if not sealed:
        return None
    creds = json.loads(runtime().keyring.decrypt(sealed))
    refresh_expires = creds.get("refresh_expires_at")
    return Grant(
        access_token=creds["access_token"],
        refresh_token=creds["refresh_token"],
        access_expires_at=datetime.fromisoformat(creds["access_expires_at"]),
        refresh_expires_at=datetime.fromisoformat(refresh_expires) if refresh_expires else None,
    )


@bp.get("/xero/callback")
def callback() -> Any:
    company = _own_company()
    expected = session.pop(STATE_KEY, None)
    given = request.args.get("state", "")
    if company is None or not expected or not secrets.compare_digest(expected, given):
        log.warning("Xero OAuth callback with a missing or wrong state: refused")
        return _refuse("This link has expired", "Start again from Connect to Xero.")
    if request.args.get("error"):
        log.info("Xero OAuth declined: %s", request.args.get("error"))
        return _refuse("Xero was not connected", "The connection was cancelled at Xero.")
    code = request.args.get("code")
    if not code:
        return _refuse("Xero was not connected", "Xero's answer was incomplete.")
    try:
        identity = _identity()
        grant = identity.exchange(code)
        tenants = identity.connections(grant.access_token)
    except ArbridgeError as e:
        log.warning("Xero OAuth callback failed: %s", e)
        return _refuse("Xero was not connected", str(e))
    owners = {t.tenant_id: tenant_owner(db(), t.tenant_id) for t in tenants}
    _hold(grant)
    return render_template(
        "xero_tenants.html",
        company=company,
        tenants=[
            (t, owners[t.tenant_id] is not None and owners[t.tenant_id] != company.id)
            for t in tenants
        ],
    )


@bp.post("/xero/attach")
def attach_tenant() -> Any:
    """The owner's choice among the grant's organisations."""
    rt, s = runtime(), db()
    company = _own_company()
    grant = _held()
    if company is None or grant is None:
        return _refuse("This link has expired", "Start again from Connect to Xero.")
    tenant_id = (request.form.get("tenant_id") or "").strip()
    other = tenant_owner(s, tenant_id) if tenant_id else None
    if other is not None and other != company.id:
        return _refuse(
            "Xero was not connected",
            "That Xero organisation is already connected to another arbridge company.",
            409,
        )
    try:
        tenant = xero.prove_tenant(rt, grant, tenant_id)
        conn = attach(s, rt.keyring, rt.clock, company, tenant_id, grant)
        store_xero_prefs(company, tenant_connection_id=tenant.connection_id)
        s.commit()
        # The settings page shows the bank accounts from the database: list them now, once the
        # new tokens are stored (best effort: "Refresh from Xero" asks again).
        xero.refresh_payment_accounts(rt, company, conn)
        s.commit()
    except ArbridgeError as e:
        s.rollback()
        log.warning("Xero organisation %s not attached: %s", tenant_id, e)
        return _refuse("Xero was not connected", str(e))
    flash(
        f"Xero ({tenant.name or tenant_id}) is connected. The first sync runs within a minute.",
        "ok",
    )
    return redirect(_settings_url(company))


def _xero_connection(company_id: int) -> Connection | None:
    return provider_connection(db(), company_id, xero.PROVIDER.name)


@bp.post("/c/<slug>/xero/payment-account")
@company_required
def payment_account(company: Company) -> Any:
    rt, s = runtime(), db()
    choice = (request.form.get("payment_account_id") or "").strip()
    listed = {i for i, _name in stored_payment_accounts(company).accounts}
    if choice and choice not in listed:
        flash("Choose one of the listed accounts.", "error")
        return redirect(_settings_url(company))
    store_xero_prefs(company, payment_account_id=choice or None)
    log_activity(s, rt.clock, company.id, "settings.changed", "Settings changed: Xero account")
    s.commit()
    flash("Payments collected by arbridge will be recorded into the chosen account.", "ok")
    return redirect(_settings_url(company))


@bp.post("/c/<slug>/xero/payment-accounts/refresh")
@company_required
def refresh_payment_accounts(company: Company) -> Any:
    rt, s = runtime(), db()
    conn = _xero_connection(company.id)
    if conn is None or conn.status != "active":
        abort(404)
    error = xero.refresh_payment_accounts(rt, company, conn)
    s.commit()
    if error:
        flash(f"Xero could not be reached: {error}", "error")
    else:
        flash("Bank accounts refreshed from Xero.", "ok")
    return redirect(_settings_url(company))


@bp.post("/c/<slug>/xero/disconnect")
@company_required
def disconnect_now(company: Company) -> Any:
    """Remove this organisation from the grant at Xero (DELETE /connections/{id}: the grant's
    other organisations stay connected), then forget the tokens here."""
    rt, s = runtime(), db()
    conn = _xero_connection(company.id)
    if conn is None:
        abort(404)
    tenant_connection = xero_prefs(company).get("tenant_connection_id")
    if conn.status == "active" and tenant_connection:
        try:
            identity = _identity()
            tokens = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, conn.id, identity)
            identity.delete_connection(tokens.access_token(), str(tenant_connection))
        except ArbridgeError as e:  # the grant may be dead already; disconnecting must work
            log.warning("removing Xero connection %s failed: %s", tenant_connection, e)
    s.refresh(conn)
    connections.disconnect(s, rt.keyring, rt.clock, conn, None, label=LABEL)
    s.commit()
    flash("Xero is disconnected.", "ok")
    return redirect(_settings_url(company))


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    rt = runtime()
    return {
        "xero_available": provider("xero").available(rt.settings),
        "xero_payment_accounts": stored_payment_accounts,
    }


@bp.post("/webhooks/xero")
@csrf.exempt
def webhook() -> Any:
    rt = runtime()
    hooks = provider("xero").webhooks
    assert hooks is not None
    body = request.get_data(cache=False)  # the raw bytes Xero signed, before any parsing
    with rt.sessions() as s:
        try:
            stored = hooks.receive(s, rt.clock, request.headers, body, hooks.secret(rt.settings))
            s.commit()
        except SignatureInvalid as e:
            s.rollback()
            log.warning("Xero webhook refused: %s", e)
            return "", 401
        except MalformedWebhook as e:
            # Signed by Xero but not its payload: answering 200 keeps Xero from disabling the
            # webhook over one odd delivery; there is nothing in it to store.
            s.rollback()
            log.warning("Xero webhook with an unreadable body ignored: %s", e)
            return "", 200
    log.info("Xero webhook: %s stored, %s duplicate(s)", stored.new, stored.duplicates)
    return "", 200
