"""QuickBooks in the browser: Connect (also the App Store launch URL), the OAuth callback,
Disconnect and Reconnect, the deposit-account choice, and POST /webhooks/quickbooks.

Intuit's App Store "Get App Now" signs the user in with Intuit and then opens our Connect URL;
with nobody signed in here, Connect runs OAuth with the openid scopes and the callback signs the
owner in by Intuit's user id (`sub`), creating the company and its owner on the first visit.
The callback first proves the new grant reads the realm it names, then follows the sign-in rules
of sync/people.py (no joining an existing company; one company per realm).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from arbridge.connectors.quickbooks import Grant, IntuitOAuth, is_realm_id
from arbridge.errors import (
    ArbridgeError,
    AuthExpired,
    ConfigError,
    NotFound,
    Rejected,
    SignatureInvalid,
)
from arbridge.providers import get as provider
from arbridge.providers import quickbooks as qbo
from arbridge.sync.model import Company, Connection
from arbridge.sync.people import (
    LedgerIdentity,
    SignInRefused,
    new_owner,
    user_for_ledger_sign_in,
)
from arbridge.sync.quickbooks_store import (
    attach,
    deposit_account,
    disconnect,
    stored_deposit_accounts,
)
from arbridge.sync.store import create_company, log_activity, provider_connection, unused_slug
from arbridge.web import csrf
from arbridge.web.common import company_required, current_user, db, runtime, start_session
from arbridge.webhooks.quickbooks import MalformedWebhook

bp = Blueprint("quickbooks", __name__)
log = logging.getLogger(__name__)
STATE_KEY = "qbo_oauth_state"


def _oauth() -> IntuitOAuth:
    return qbo.oauth(runtime())


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


def _new_company(realm_id: str, info: dict[str, Any], email: str) -> Company:
    """Rule 4 of sync/people.py: a first sign-in for a realm no company holds yet."""
    rt, s = runtime(), db()
    name = str(info.get("name") or f"QuickBooks company {realm_id}")
    return create_company(
        s,
        rt.clock,
        name=name,
        slug=unused_slug(s, name),
        home_currency=str(info.get("currency") or "USD"),
        timezone=rt.settings.default_timezone,
        country=str(info.get("country") or "US"),
        owner_email=email or str(info.get("email") or f"{realm_id}@invalid"),
        sync_interval_minutes=rt.settings.sync_interval_minutes,
    )


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
    if not code or not realm_id or not is_realm_id(realm_id):
        return _refuse("QuickBooks was not connected", "Intuit's answer was incomplete.")
    try:
        oauth = _oauth()
        grant = oauth.exchange(code, realm_id)
        # Before anything else: does this grant read the realm the query string names? The
        # realmId is whatever the browser sent; only Intuit answering for it proves it.
        try:
            info = qbo.company_info(rt, realm_id, _GrantTokens(grant))
        except (Rejected, AuthExpired, NotFound) as e:
            log.warning(
                "QuickBooks OAuth callback: the new grant cannot read realm %s: %s", realm_id, e
            )
            return _refuse(
                "QuickBooks was not connected",
                "We could not open that QuickBooks company with the permission Intuit gave. "
                "Start again from Connect to QuickBooks and choose your company there.",
                403,
            )
        signed_in = current_user()
        if signed_in is None or signed_in.identity_subject is None:
            # Who is this at Intuit: to sign them in, or to link an invited user's identity.
            identity = oauth.user_info(grant.access_token)
            name = " ".join(p for p in (identity.get("givenName"), identity.get("familyName")) if p)
            who = LedgerIdentity(
                provider="quickbooks",
                provider_name="QuickBooks",
                tenant_id=realm_id,
                subject=str(identity["sub"]),
                email=str(identity.get("email") or ""),
                name=name or None,
            )
            user = user_for_ledger_sign_in(s, rt.clock, who, signed_in)
            if user is None:
                company = _new_company(realm_id, info, who.email)
                user = new_owner(s, rt.clock, company, who)
        else:  # a signed-in user renewing or adding the connection: rule 1 still holds
            known = LedgerIdentity(
                "quickbooks", "QuickBooks", realm_id, signed_in.identity_subject, "", None
            )
            user = user_for_ledger_sign_in(s, rt.clock, known, signed_in)
        user.last_sign_in_at = rt.clock.now()
        company = s.get(Company, user.company_id)
        assert company is not None
        conn = attach(s, rt.keyring, rt.clock, company, realm_id, grant)
        slug, user_id, company_id, version = (
            company.slug,
            user.id,
            user.company_id,
            user.session_version or 0,
        )
        s.commit()
        # The settings page shows deposit accounts from the database: list them now, once
        # the new tokens are stored (best effort: "Refresh from QuickBooks" asks again).
        qbo.refresh_deposit_accounts(rt, company, conn)
        s.commit()
    except SignInRefused as e:
        s.rollback()
        log.warning("QuickBooks sign-in refused for realm %s: %s", realm_id, e.title)
        return _refuse(e.title, str(e), e.status)
    except ArbridgeError as e:
        s.rollback()
        log.warning("QuickBooks OAuth callback failed: %s", e)
        return _refuse("QuickBooks was not connected", str(e))
    if signed_in is None:
        start_session(user_id, company_id, version)
    flash("QuickBooks is connected. The first sync runs within a minute.", "ok")
    return redirect(url_for("owner.settings", slug=slug) + "#connections")


def _quickbooks_connection(company_id: int) -> Connection | None:
    return provider_connection(db(), company_id, qbo.PROVIDER.name)


@bp.get("/quickbooks/disconnected")
def disconnected_at_intuit() -> Any:
    """Intuit's Disconnect URL, where Intuit sends the owner after they disconnected arbridge on
    QuickBooks' side. A GET changes nothing (any site can make a browser fetch this URL): it
    asks, and the POST it offers (with a CSRF token) disconnects here too."""
    user = current_user()
    conn = _quickbooks_connection(user.company_id) if user is not None else None
    if conn is None or conn.status == "disconnected":
        return render_template(
            "error.html",
            title="QuickBooks is disconnected",
            message="arbridge no longer reads or writes your books. "
            "Reconnect from Settings any time.",
        )
    company = db().get(Company, conn.company_id)
    return render_template("quickbooks_disconnected.html", company=company)


@bp.post("/c/<slug>/quickbooks/disconnect")
@company_required
def disconnect_now(company: Company) -> Any:
    rt, s = runtime(), db()
    conn = _quickbooks_connection(company.id)
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
    # Only an account QuickBooks listed for this company: the id comes from the browser.
    listed = {account_id for account_id, _ in stored_deposit_accounts(company).accounts}
    if choice and choice not in listed:
        log.info("deposit account %r refused: not among QuickBooks' listed accounts", choice[:40])
        flash("Choose one of the listed accounts.", "error")
        return redirect(url_for("owner.settings", slug=company.slug) + "#connections")
    stored = dict(company.settings or {})
    stored["quickbooks"] = {**stored.get("quickbooks", {}), "deposit_account_id": choice or None}
    company.settings = stored
    log_activity(s, rt.clock, company.id, "settings.changed", "Settings changed: deposit account")
    s.commit()
    flash("Payments will be deposited to the chosen account.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#connections")


@bp.post("/c/<slug>/quickbooks/deposit-accounts/refresh")
@company_required
def refresh_deposit_accounts(company: Company) -> Any:
    """The owner's "Refresh from QuickBooks": the one place (with connecting) the deposit
    accounts are read from QuickBooks; the settings page shows what this kept."""
    rt, s = runtime(), db()
    conn = _quickbooks_connection(company.id)
    if conn is None or conn.status != "active":
        abort(404)
    error = qbo.refresh_deposit_accounts(rt, company, conn)
    s.commit()
    if error:
        flash(f"QuickBooks could not be reached: {error}", "error")
    else:
        flash("Deposit accounts refreshed from QuickBooks.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#connections")


def deposit_choices(company: Company) -> dict[str, Any]:
    """For the settings page, from the database only: the accounts a payment may go to (as
    QuickBooks last listed them, and when), and the current choice."""
    stored = stored_deposit_accounts(company)
    return {
        "accounts": stored.accounts,
        "chosen": deposit_account(company),
        "listed_at": stored.listed_at,
        "error": stored.error,
    }


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    rt = runtime()
    return {
        "quickbooks_available": provider("quickbooks").available(rt.settings),
        "quickbooks_deposit_choices": deposit_choices,
    }


@bp.post("/webhooks/quickbooks")
@csrf.exempt
def webhook() -> Any:
    rt = runtime()
    hooks = provider("quickbooks").webhooks
    assert hooks is not None
    body = request.get_data(cache=False)  # the raw bytes Intuit signed, before any parsing
    with rt.sessions() as s:
        try:
            stored = hooks.receive(s, rt.clock, request.headers, body, hooks.secret(rt.settings))
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
