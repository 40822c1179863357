"""Owner sign-in with one-time links (the demo and `arbridge companies sign-in-link` issue them).

A GET only shows a button: mail scanners and link previews fetch links, and must not use them up.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, session, url_for

from arbridge.errors import NotFound
from arbridge.sync.model import Company
from arbridge.sync.people import companies_of, email_sign_in_links, end_sessions
from arbridge.sync.store import log_activity, redeem_sign_in_token
from arbridge.web.common import current_user, db, runtime, start_session

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)


@bp.get("/")
def index() -> Any:
    user = current_user()
    if user is None:
        return redirect(url_for("auth.signed_out"))
    company = db().get(Company, user.company_id)
    assert company is not None
    return redirect(url_for("owner.dashboard", slug=company.slug))


@bp.get("/signed-out")
def signed_out() -> Any:
    return render_template("signed_out.html", can_email=bool(runtime().settings.smtp_url))


@bp.post("/sign-in/email")
def email_link() -> Any:
    """ "Email me a sign-in link": the same answer whether or not the address can sign in (nothing
    to learn about who uses arbridge); at most a few links an hour to one user."""
    rt, s = runtime(), db()
    if rt.settings.smtp_url:
        email_sign_in_links(s, rt.clock, (request.form.get("email") or "")[:254])
        s.commit()
    return render_template(
        "error.html",
        title="Check your email",
        message="If that address can sign in to arbridge, a sign-in link is on its way. "
        f"It works once, for {rt.settings.login_link_minutes} minutes.",
    )


@bp.get("/sign-in/<token>")
def sign_in_page(token: str) -> Any:
    return render_template("sign_in.html", token=token)


@bp.post("/sign-in/<token>")
def sign_in(token: str) -> Any:
    rt = runtime()
    s = db()
    try:
        user = redeem_sign_in_token(s, rt.clock, token)
        company = s.get(Company, user.company_id)
        assert company is not None
        log_activity(s, rt.clock, company.id, "owner.signed_in", f"{user.email} signed in")
        slug, user_id, company_id = company.slug, user.id, company.id
        version = user.session_version or 0
        s.commit()
    except NotFound as e:
        s.rollback()
        log.info("refused a sign-in link: %s", e)
        return render_template(
            "error.html",
            title="This sign-in link is not valid",
            message="It may have expired or been used already. Ask for a new one.",
        ), 404
    start_session(user_id, company_id, version)
    return redirect(url_for("owner.dashboard", slug=slug))


@bp.post("/sign-out")
def sign_out() -> Any:
    """Ends this user's sessions on the server too: a copy of the cookie stops working."""
    user = current_user()
    if user is not None:
        s = db()
        end_sessions(s, user.id)
        s.commit()
    session.clear()
    return redirect(url_for("auth.signed_out"))


@bp.post("/switch-company")
def switch_company() -> Any:
    """One person owning several companies (one Xero consent, several organisations) moves
    between them: only to a company where their own ledger identity has a user."""
    user = current_user()
    if user is None:
        return redirect(url_for("auth.signed_out"))
    wanted = request.form.get("slug", "")
    s = db()
    found = next(((u, c) for u, c in companies_of(s, user) if c.slug == wanted), None)
    if found is None:
        log.warning("user %s asked to switch to company %r, not theirs: refused", user.id, wanted)
        abort(404)
    other, company = found
    rt = runtime()
    other.last_sign_in_at = rt.clock.now()
    log_activity(s, rt.clock, company.id, "owner.signed_in", f"{other.email} switched in")
    slug, version = company.slug, other.session_version or 0
    user_id, company_id = other.id, company.id
    s.commit()
    start_session(user_id, company_id, version)
    return redirect(url_for("owner.dashboard", slug=slug))


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    def my_companies() -> list[Company]:
        user = current_user()
        return [c for _u, c in companies_of(db(), user)] if user is not None else []

    return {"my_companies": my_companies}
