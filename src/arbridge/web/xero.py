"""Xero in the browser: Sign up / Sign in with Xero, Connect from Settings (the OAuth callback
offers the organisations the grant covers), the payment account, Disconnect, and POST
/webhooks/xero.

Signing in (nobody signed in here; also the App Store's launch URL): OpenID Connect, the
id_token verified (signature, issuer, audience, lifetime, our nonce) before it names anyone. The
grant's organisations are then sorted by the rules of sync/people.py: those of the person's own
companies sign them in (a connection that needed reconnecting takes the new grant); those of
nobody may each become a new company with this person as owner, all sharing the one stored
grant (its refresh token rotates); those of another company are refused, and sign-in never joins
one (teammates join by invitation).

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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from arbridge.connectors.xero import Grant, Tenant, XeroIdentity, XeroUser
from arbridge.errors import ArbridgeError, ConfigError, SignatureInvalid
from arbridge.providers import get as provider
from arbridge.providers import xero
from arbridge.sync import connections
from arbridge.sync.mappers.xero import organisation_timezone
from arbridge.sync.model import Company, Connection, OAuthGrant, User
from arbridge.sync.people import (
    LedgerIdentity,
    SignInRefused,
    identity_users,
    link_identity,
    new_owner,
    tenant_taken,
)
from arbridge.sync.store import create_company, log_activity, provider_connection, unused_slug
from arbridge.sync.xero_store import (
    LABEL,
    ConnectionTokens,
    attach,
    store_xero_prefs,
    stored_payment_accounts,
    tenant_owner,
    tenant_owners,
    xero_prefs,
)
from arbridge.web import csrf
from arbridge.web.common import company_required, current_user, db, runtime, start_session
from arbridge.webhooks.xero import MalformedWebhook

bp = Blueprint("xero", __name__)
log = logging.getLogger(__name__)
STATE_KEY = "xero_oauth_state"
PENDING_KEY = "xero_pending_grant"
SIGN_UP_KEY = "xero_pending_sign_up"


def _refuse(title: str, message: str, status: int = 400) -> Any:
    return render_template("error.html", title=title, message=message), status


def _settings_url(company: Company) -> str:
    return url_for("owner.settings", slug=company.slug) + "#connections"


def _identity() -> XeroIdentity:
    return xero.oauth(runtime())


def _own_company() -> Company | None:
    user = current_user()
    return db().get(Company, user.company_id) if user is not None else None


def _start(mode: str) -> Any:
    try:
        identity = _identity()
    except ConfigError as e:
        log.error("Xero %s refused: %s", mode, e)
        return _refuse("Xero is not set up", "This arbridge has no Xero app configured.")
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    session[STATE_KEY] = {"state": state, "mode": mode, "nonce": nonce}
    return redirect(identity.authorization_url(state, nonce=nonce if mode == "sign-in" else None))


@bp.get("/xero/connect")
def connect() -> Any:
    """Start OAuth: from the settings page, the signed-in owner's company gets the organisation;
    with nobody signed in (Xero's App Store opens this too), it is Sign in with Xero."""
    return _start("connect" if _own_company() is not None else "sign-in")


@bp.get("/xero/sign-in")
def sign_in() -> Any:
    """ "Sign up with Xero" / "Sign in with Xero"."""
    return _start("sign-in")


def _hold(grant: Grant) -> None:
    rt = runtime()
    session[PENDING_KEY] = rt.keyring.encrypt(json.dumps(grant.as_credentials()))


def _held() -> Grant | None:
    sealed = session.pop(PENDING_KEY, None)
    if not sealed:
        return None
    return _grant_of(json.loads(runtime().keyring.decrypt(sealed)))


@bp.get("/xero/callback")
def callback() -> Any:
    pending = session.pop(STATE_KEY, None)
    given = request.args.get("state", "")
    if (
        not isinstance(pending, dict)
        or not isinstance(pending.get("state"), str)
        or not secrets.compare_digest(pending["state"], given)
    ):
        log.warning("Xero OAuth callback with a missing or wrong state: refused")
        return _refuse("This link has expired", "Start again from Connect to Xero.")
    if request.args.get("error"):
        log.info("Xero OAuth declined: %s", request.args.get("error"))
        return _refuse("Xero was not connected", "The connection was cancelled at Xero.")
    code = request.args.get("code")
    if not code:
        return _refuse("Xero was not connected", "Xero's answer was incomplete.")
    if pending.get("mode") == "sign-in":
        return _signed_in_at_xero(code, str(pending.get("nonce") or ""))
    company = _own_company()
    if company is None:
        return _refuse("This link has expired", "Start again from Connect to Xero.")
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


# -- Sign up / Sign in with Xero --------------------------------------------------------------


def _who(person: XeroUser, tenant_id: str) -> LedgerIdentity:
    return LedgerIdentity("xero", "Xero", tenant_id, person.subject, person.email, person.name)


def _sort_tenants(
    person: XeroUser, tenants: list[Tenant]
) -> tuple[list[Tenant], list[tuple[Tenant, int]], list[Tenant]]:
    """The grant's organisations as (new: nobody's yet, yours: with the id of this person's
    company holding it, taken: another company's)."""
    s = db()
    mine = {u.company_id for u in identity_users(s, "xero", person.subject)}
    owners = tenant_owners(s, [t.tenant_id for t in tenants])
    new, yours, taken = [], [], []
    for tenant in tenants:
        owner = owners.get(tenant.tenant_id)
        if owner is None:
            new.append(tenant)
        elif owner in mine:
            yours.append((tenant, owner))
        else:
            taken.append(tenant)
    return new, yours, taken


def _hold_sign_up(
    grant: Grant, person: XeroUser, new: list[Tenant], yours: list[tuple[Tenant, int]]
) -> dict[str, Any]:
    """What the organisation choice needs, encrypted in the session (the grant never reaches a
    form): the choice is checked against the organisations offered here, not what is posted.
    Returns it as `_held_sign_up` reads it back."""
    offered = {
        "new": {t.tenant_id: t.connection_id for t in new},
        "yours": {t.tenant_id: t.connection_id for t, _company in yours},
    }
    sealed = {
        "grant": grant.as_credentials(),
        "person": [person.subject, person.email, person.name],
        **offered,
    }
    session[SIGN_UP_KEY] = runtime().keyring.encrypt(json.dumps(sealed))
    return {"grant": grant, "person": person, **offered}


def _held_sign_up() -> dict[str, Any] | None:
    sealed = session.get(SIGN_UP_KEY)
    if not sealed:
        return None
    held = json.loads(runtime().keyring.decrypt(sealed))
    held["grant"] = _grant_of(held["grant"])
    held["person"] = XeroUser(*held["person"])
    return held


def _new_company(tenant: Tenant, org: dict[str, str | None], person: XeroUser) -> Company:
    """A company made from one organisation at sign-up: its name, base currency, country and
    timezone as Xero's Organisation gives them."""
    rt, s = runtime(), db()
    name = str(org.get("name") or tenant.name or "Xero organisation")[:200]
    zone = organisation_timezone(org.get("timezone")) or rt.settings.default_timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = rt.settings.default_timezone
    return create_company(
        s,
        rt.clock,
        name=name,
        slug=unused_slug(s, name),
        home_currency=str(org.get("currency") or "USD"),
        timezone=zone,
        country=str(org.get("country") or "US"),
        owner_email=person.email or f"{person.subject}@invalid",
        sync_interval_minutes=rt.settings.sync_interval_minutes,
    )


def _signed_in_at_xero(code: str, nonce: str) -> Any:
    try:
        identity = _identity()
        grant = identity.exchange(code)
        person = identity.verify_id_token(grant.id_token, nonce)
        tenants = identity.connections(grant.access_token)
    except ArbridgeError as e:
        log.warning("Sign in with Xero failed: %s", e)
        return _refuse("You are not signed in", f"Xero did not sign you in: {e}", 403)
    s = db()
    signed_in = current_user()
    # An invited teammate, signed in by their invitation link, links their Xero identity.
    linked = signed_in is not None and link_identity(
        s, runtime().clock, signed_in, _who(person, "")
    )
    if linked and signed_in is not None:
        company = s.get(Company, signed_in.company_id)
        assert company is not None
        s.commit()
        flash("You can now sign in with Xero.", "ok")
        return redirect(url_for("owner.dashboard", slug=company.slug))
    new, yours, taken = _sort_tenants(person, tenants)
    if not new and not yours:
        if not taken:
            return _refuse(
                "Xero gave arbridge no organisation",
                "Sign in with Xero again and choose at least one organisation there.",
            )
        log.warning("Sign in with Xero refused: every organisation belongs to another company")
        return _refuse(
            "This Xero organisation is already connected to arbridge",
            "Your Xero sign-in cannot add you to it. Ask its owner to send you an invitation "
            "from Settings, then open the link in the email.",
            403,
        )
    held = _hold_sign_up(grant, person, new, yours)
    if not new:
        return _finish_sign_in(held, [])
    companies = {c.id: c for c in db().scalars(select(Company).where(Company.id.in_(
        [company_id for _t, company_id in yours]
    )))}  # fmt: skip
    return render_template(
        "xero_sign_up.html",
        person=person,
        new=new,
        yours=[(t, companies[company_id]) for t, company_id in yours],
        taken=taken,
    )


@bp.post("/xero/sign-up")
def sign_up() -> Any:
    """The organisations chosen at sign-in: each becomes a company with this person as owner."""
    rt, s = runtime(), db()
    held = _held_sign_up()
    if held is None:
        return _refuse("This link has expired", "Start again from Sign in with Xero.")
    chosen = [t.strip() for t in request.form.getlist("tenant_id") if t.strip()]
    if any(t not in held["new"] for t in chosen):
        log.warning("Xero sign-up: an organisation that was not offered was posted: refused")
        return _refuse("Choose among the organisations listed", "Start again from Sign in.", 400)
    if not chosen and not held["yours"]:
        return _refuse(
            "No organisation chosen",
            "Choose at least one Xero organisation to bring to arbridge.",
            400,
        )
    grant, person = held["grant"], held["person"]
    try:
        proven = xero.prove_tenants(rt, grant, chosen) if chosen else []
        owners = tenant_owners(s, chosen)
        if owners:
            raise tenant_taken("Xero")
        created: list[tuple[Company, User]] = []
        shared: OAuthGrant | None = None
        for tenant, org in proven:
            company = _new_company(tenant, org, person)
            user = new_owner(s, rt.clock, company, _who(person, tenant.tenant_id))
            shared = shared or connections.store_grant(s, rt.keyring, rt.clock, "xero", grant)
            attach(s, rt.keyring, rt.clock, company, tenant.tenant_id, grant, shared=shared)
            store_xero_prefs(company, tenant_connection_id=tenant.connection_id)
            created.append((company, user))
        return _finish_sign_in(held, created, shared)
    except SignInRefused as e:
        s.rollback()
        return _refuse(e.title, str(e), e.status)
    except ArbridgeError as e:
        s.rollback()
        log.warning("Xero sign-up failed: %s", e)
        return _refuse("Xero was not connected", str(e))


def _finish_sign_in(
    held: dict[str, Any],
    created: list[tuple[Company, User]],
    shared: OAuthGrant | None = None,
) -> Any:
    """Sign the person in: to the first company just made, else to their own company that holds
    one of the grant's organisations. Their connections to these organisations that needed
    reconnecting take the new grant."""
    rt, s = runtime(), db()
    grant, person, yours = held["grant"], held["person"], held["yours"]
    renewed = 0
    for conn in s.scalars(
        select(Connection)
        .where(Connection.provider == "xero", Connection.tenant_id.in_(list(yours)))
        .order_by(Connection.id)
    ):
        if conn.status != "active":
            company = s.get(Company, conn.company_id)
            assert company is not None
            shared = shared or connections.store_grant(s, rt.keyring, rt.clock, "xero", grant)
            attach(s, rt.keyring, rt.clock, company, conn.tenant_id, grant, shared=shared)
            store_xero_prefs(company, tenant_connection_id=yours[conn.tenant_id])
            renewed += 1
    if created:
        company, user = created[0]
    else:
        owners = tenant_owners(s, list(yours))
        mine = {u.company_id: u for u in identity_users(s, "xero", person.subject)}
        user = next(mine[owners[t]] for t in yours if owners.get(t) in mine)
        company = s.get(Company, user.company_id)
        assert company is not None
    user.last_sign_in_at = rt.clock.now()
    log_activity(s, rt.clock, company.id, "owner.signed_in", f"{user.email} signed in with Xero")
    slug, user_id, company_id = company.slug, user.id, company.id
    version = user.session_version or 0
    s.commit()
    for each, _user in created:
        # The settings page lists bank accounts from the database (best effort, as on Connect).
        conn = _xero_connection(each.id)
        if conn is not None:
            xero.refresh_payment_accounts(rt, each, conn)
            s.commit()
    start_session(user_id, company_id, version)
    if created:
        names = ", ".join(c.name for c, _u in created)
        more = " Switch between them from the menu." if len(created) > 1 or yours else ""
        flash(
            f"Welcome to arbridge: {names} connected; the first sync runs within a minute.{more}",
            "ok",
        )
        return redirect(url_for("owner.settings", slug=slug) + "#connections")
    if renewed:
        flash("Xero is connected again. Syncing resumes within a minute.", "ok")
    return redirect(url_for("owner.dashboard", slug=slug))


def _grant_of(creds: dict[str, Any]) -> Grant:
    refresh_expires = creds.get("refresh_expires_at")
    return Grant(
        access_token=creds["access_token"],
        refresh_token=creds["refresh_token"],
        access_expires_at=datetime.fromisoformat(creds["access_expires_at"]),
        refresh_expires_at=datetime.fromisoformat(refresh_expires) if refresh_expires else None,
    )


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
