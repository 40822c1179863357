"""QuickBooks in the browser: Connect (also the App Store launch URL), the OAuth callback,
Disconnect and Reconnect, the deposit-account choice, and POST /webhooks/quickbooks.

Intuit's App Store "Get App Now" signs the user in with Intuit and then opens our Connect URL;
with nobody signed in here, Connect runs OAuth with the openid scopes and the callback signs the
owner in by Intuit's user id (`sub`), creating the company and its owner on the first visit.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from arbridge.connectors.quickbooks import Grant, IntuitOAuth, QuickBooksConnector
from arbridge.errors import ArbridgeError, ConfigError, SignatureInvalid
from arbridge.sync.model import Company, Connection, User
from arbridge.sync.quickbooks_store import (
    ConnectionTokens,
    attach,
    deposit_account,
    disconnect,
    quickbooks_config,
)
from arbridge.sync.store import create_company, log_activity
from arbridge.web import csrf
from arbridge.web.common import company_required, current_user, db, runtime
from arbridge.webhooks.quickbooks import MalformedWebhook, receive

bp = Blueprint("quickbooks", __name__)
log = logging.getLogger(__name__)
STATE_KEY = "qbo_oauth_state"


def _oauth() -> IntuitOAuth:
    rt = runtime()
    return IntuitOAuth(quickbooks_config(rt.settings), rt.clock)


def _refuse(title: str, message: str, status: int = 400) -> Any:
    return render_template("error.html", title=title, message=message), status


@bp.get("/quickbooks/connect")
def connect() -> Any:
    """Start OAuth: from the settings page (signed in) or from Intuit's App Store (not yet)."""
    try:
        oauth = _oauth()
    except ConfigError as e:
        log.error("QuickBooks connect refused: %s", e)
        return _refuse(
            "QuickBooks is not set up", "This arbridge has no QuickBooks app configured."
        )
    state = secrets.token_urlsafe(24)
    session[STATE_KEY] = state
    try:
        return redirect(oauth.authorization_url(state))
    except ArbridgeError as e:
        log.warning("could not start QuickBooks OAuth: %s", e)
        return _refuse("QuickBooks is unreachable", "Please try again in a minute.", 502)


@bp.get("/quickbooks/reconnect")
def reconnect() -> Any:
    return redirect(url_for("quickbooks.connect"))


def _slug_for(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "company"
    slug, n = base, 1
    while db().scalar(select(Company.id).where(Company.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


def _owner_by_intuit(sub: str) -> User | None:
    return db().scalar(
        select(User).where(User.identity_provider == "quickbooks", User.identity_subject == sub)
    )


def _sign_up(grant: Grant, realm_id: str, identity: dict[str, Any]) -> User:
    """First sign-in from the App Store: the company (named as in QuickBooks) and its owner."""
    rt, s = runtime(), db()
    existing = s.scalar(
        select(Connection).where(
            Connection.provider == "quickbooks", Connection.tenant_id == realm_id
        )
    )
    if existing is not None:
        # Another person at an already-connected company: they join it as a user.
        company = s.get(Company, existing.company_id)
    else:
        info = QuickBooksConnector(
            quickbooks_config(rt.settings), realm_id, _GrantTokens(grant), rt.clock
        ).company_info()
        name = str(info.get("name") or f"QuickBooks company {realm_id}")
        company = create_company(
            s,
            rt.clock,
            name=name,
            slug=_slug_for(name),
            home_currency=str(info.get("currency") or "USD"),
            timezone=rt.settings.default_timezone,
            country=str(info.get("country") or "US"),
            owner_email=str(identity.get("email") or info.get("email") or f"{realm_id}@invalid"),
        )
    assert company is not None
    user = s.scalar(
        select(User).where(User.company_id == company.id, User.identity_subject.is_(None))
    )
    email = str(identity.get("email") or "")
    if existing is not None or user is None:
        user = User(company_id=company.id, email=email, created_at=rt.clock.now())
        s.add(user)
    user.identity_provider, user.identity_subject = "quickbooks", str(identity["sub"])
    name = " ".join(p for p in (identity.get("givenName"), identity.get("familyName")) if p)
    user.name = name or user.name
    s.flush()
    log_activity(s, rt.clock, company.id, "owner.signed_up", f"{email} signed in with Intuit")
    return user


class _GrantTokens:
    """A TokenSource over a grant not stored yet (the callback, before the company exists)."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant

    def access_token(self) -> str:
        return self.grant.access_token

    def refresh(self, stale: str) -> str:
        raise ArbridgeError("the new QuickBooks grant was refused")

    def give_up(self, reason: str) -> None:
        log.warning("new QuickBooks grant refused: %s", reason)


@bp.get("/quickbooks/callback")
def callback() -> Any:
    rt, s = runtime(), db()
    expected = session.pop(STATE_KEY, None)
    given = request.args.get("state", "")
    if not expected or not secrets.compare_digest(expected, given):
        log.warning("QuickBooks OAuth callback with a missing or wrong state: refused")
        return _refuse("This link has expired", "Start again from Connect to QuickBooks.")
    if request.args.get("error"):
        log.info("QuickBooks OAuth declined: %s", request.args.get("error"))
        return _refuse("QuickBooks was not connected", "The connection was cancelled at Intuit.")
    code, realm_id = request.args.get("code"), request.args.get("realmId")
    if not code or not realm_id or not realm_id.isdigit():
        return _refuse("QuickBooks was not connected", "Intuit's answer was incomplete.")
    try:
        oauth = _oauth()
        grant = oauth.exchange(code, realm_id)
        user = current_user()
        if user is None:
            identity = oauth.user_info(grant.access_token)
            user = _owner_by_intuit(str(identity["sub"])) or _sign_up(grant, realm_id, identity)
            session.clear()
            session.permanent = True
            session["user_id"], session["company_id"] = user.id, user.company_id
        user.last_sign_in_at = rt.clock.now()
        company = s.get(Company, user.company_id)
        assert company is not None
        attach(s, rt.keyring, rt.clock, company, realm_id, grant)
        slug = company.slug
        s.commit()
    except ArbridgeError as e:
        s.rollback()
        log.warning("QuickBooks OAuth callback failed: %s", e)
        return _refuse("QuickBooks was not connected", str(e))
    flash("QuickBooks is connected. The first sync runs within a minute.", "ok")
    return redirect(url_for("owner.settings", slug=slug) + "#connections")


@bp.get("/quickbooks/disconnected")
def disconnected_at_intuit() -> Any:
    """Intuit's Disconnect URL: the owner disconnected from QuickBooks' side; the grant is gone."""
    rt, s = runtime(), db()
    user = current_user()
    if user is not None:
        conn = s.scalar(
            select(Connection).where(
                Connection.company_id == user.company_id, Connection.provider == "quickbooks"
            )
        )
        if conn is not None and conn.status != "disconnected":
            disconnect(s, rt.keyring, rt.clock, conn, None)
            s.commit()
    return render_template(
        "error.html",
        title="QuickBooks is disconnected",
        message="arbridge no longer reads or writes your books. Reconnect from Settings any time.",
    )


@bp.post("/c/<slug>/quickbooks/disconnect")
@company_required
def disconnect_now(company: Company) -> Any:
    rt, s = runtime(), db()
    conn = s.scalar(
        select(Connection).where(
            Connection.company_id == company.id, Connection.provider == "quickbooks"
        )
    )
    if conn is None:
        abort(404)
    try:
        oauth: IntuitOAuth | None = _oauth()
    except ConfigError:
        oauth = None
    disconnect(s, rt.keyring, rt.clock, conn, oauth)
    s.commit()
    flash("QuickBooks is disconnected.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#connections")


@bp.post("/c/<slug>/quickbooks/deposit-account")
@company_required
def deposit(company: Company) -> Any:
    rt, s = runtime(), db()
    choice = (request.form.get("deposit_account_id") or "").strip()
    if choice and not choice.isdigit():
        flash("Choose one of the listed accounts.", "error")
        return redirect(url_for("owner.settings", slug=company.slug) + "#connections")
    stored = dict(company.settings or {})
    stored["quickbooks"] = {**stored.get("quickbooks", {}), "deposit_account_id": choice or None}
    company.settings = stored
    log_activity(s, rt.clock, company.id, "settings.changed", "Settings changed: deposit account")
    s.commit()
    flash("Payments will be deposited to the chosen account.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#connections")


def deposit_choices(company: Company, connection: Connection | None) -> dict[str, Any]:
    """For the settings page: the accounts a payment may go to, and the current choice."""
    chosen = deposit_account(company)
    if connection is None or connection.provider != "quickbooks" or connection.status != "active":
        return {"accounts": [], "chosen": chosen}
    rt = runtime()
    try:
        config = quickbooks_config(rt.settings)
        tokens = ConnectionTokens(
            rt.sessions, rt.keyring, rt.clock, connection.id, IntuitOAuth(config, rt.clock)
        )
        accounts = QuickBooksConnector(
            config, connection.tenant_id, tokens, rt.clock, sleep=lambda _s: None
        ).deposit_accounts()
    except ArbridgeError as e:
        log.warning("could not list QuickBooks deposit accounts: %s", e)
        accounts = []
    return {"accounts": accounts, "chosen": chosen}


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    rt = runtime()
    return {
        "quickbooks_available": bool(rt.settings.qbo_client_id and rt.settings.qbo_client_secret),
        "quickbooks_deposit_choices": deposit_choices,
    }


@bp.post("/webhooks/quickbooks")
@csrf.exempt
def webhook() -> Any:
    rt = runtime()
    body = request.get_data(cache=False)  # the raw bytes Intuit signed, before any parsing
    with rt.sessions() as s:
        try:
            stored = receive(s, rt.clock, request.headers, body, rt.settings.qbo_webhook_verifier)
            s.commit()
        except SignatureInvalid as e:
            s.rollback()
            log.warning("QuickBooks webhook refused: %s", e)
            return {"error": "invalid signature"}, 401
        except MalformedWebhook as e:
            s.rollback()
            log.warning("QuickBooks webhook refused: %s", e)
            return {"error": "malformed payload"}, 400
    return {"stored": stored.new, "duplicates": stored.duplicates}, 200
