"""Who may sign in to a company: the owner's invitations and signing out everywhere.

An existing company gains users only through an invitation its owner sends from Settings: an
emailed link that expires and works once (see sync/people.py for the rules a ledger sign-in
follows). The link's GET only shows a button: mail scanners fetch links and must not use them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from arbridge.errors import ArbridgeError, NotFound
from arbridge.readmodels.people import company_users
from arbridge.sync.model import Company, Invitation
from arbridge.sync.people import (
    ROLE_LABELS,
    ROLES,
    SignInRefused,
    accept_invitation,
    change_role,
    company_owner,
    find_invitation,
    invite,
    pending_invitations,
    remove_user,
    revoke_invitation,
)
from arbridge.web.common import company_required, current_user, db, runtime, start_session

bp = Blueprint("people", __name__)
log = logging.getLogger(__name__)
MAX_EMAIL = 254


def _people_url(company: Company) -> str:
    return url_for("owner.settings", slug=company.slug) + "#people"


@bp.post("/c/<slug>/invitations")
@company_required
def send_invitation(company: Company) -> Any:
    rt, s = runtime(), db()
    email = (request.form.get("email") or "").strip()
    if not email or len(email) > MAX_EMAIL or "@" not in email or any(c.isspace() for c in email):
        flash("Enter the email address of the person to invite.", "error")
        return redirect(_people_url(company))
    role = request.form.get("role") or "viewer"
    if role not in ROLES:
        flash("Choose a role for the person you invite.", "error")
        return redirect(_people_url(company))
    try:
        invite(s, rt.clock, company, g.user, email, role)
        s.commit()
    except SignInRefused as e:
        s.rollback()
        log.warning("user %s may not invite to company %s", g.user.id, company.id)
        abort(e.status)
    except ArbridgeError as e:
        s.rollback()
        flash(str(e), "error")
        return redirect(_people_url(company))
    flash(f"Invitation sent to {email}.", "ok")
    return redirect(_people_url(company))


@bp.post("/c/<slug>/invitations/<int:invitation_id>/revoke")
@company_required
def revoke(company: Company, invitation_id: int) -> Any:
    rt, s = runtime(), db()
    try:
        row = revoke_invitation(s, rt.clock, company, g.user, invitation_id)
        email = row.email
        s.commit()
    except SignInRefused as e:
        s.rollback()
        abort(e.status)
    except NotFound:
        s.rollback()
        abort(404)
    flash(f"The invitation to {email} was withdrawn.", "ok")
    return redirect(_people_url(company))


@bp.post("/c/<slug>/users/<int:user_id>/remove")
@company_required
def remove(company: Company, user_id: int) -> Any:
    rt, s = runtime(), db()
    email = _committed(company, lambda: remove_user(s, rt.clock, company, g.user, user_id))
    if email is None:
        return redirect(_people_url(company))
    flash(f"{email} can no longer sign in.", "ok")
    return redirect(_people_url(company))


@bp.post("/c/<slug>/users/<int:user_id>/role")
@company_required
def set_role(company: Company, user_id: int) -> Any:
    rt, s = runtime(), db()
    role = request.form.get("role") or ""
    if role not in ROLES:
        flash("Choose a role: owner, collector or viewer.", "error")
        return redirect(_people_url(company))
    email = _committed(
        company, lambda: change_role(s, rt.clock, company, g.user, user_id, role).email
    )
    if email is None:
        return redirect(_people_url(company))
    flash(f"{email} is now {role}.", "ok")
    return redirect(_people_url(company))


def _committed(company: Company, change: Callable[[], str]) -> str | None:
    """Run a change to a teammate and commit it; its email, or None with the reason flashed.
    A refusal of the signed-in user, or a teammate not in this company, ends the request."""
    s = db()
    try:
        email = change()
        s.commit()
    except SignInRefused as e:
        s.rollback()
        abort(e.status)
    except NotFound:
        s.rollback()
        abort(404)
    except ArbridgeError as e:
        s.rollback()
        flash(str(e), "error")
        return None
    return email


def _invitation_refused() -> Any:
    return render_template(
        "error.html",
        title="This invitation is not valid",
        message="It may have expired or been used already. Ask for a new one.",
    ), 404


@bp.get("/invitations/<token>")
def invitation_page(token: str) -> Any:
    rt, s = runtime(), db()
    try:
        row = find_invitation(s, rt.clock, token)
    except NotFound:
        log.info("refused an invitation link (unknown, used or expired)")
        return _invitation_refused()
    company = s.get(Company, row.company_id)
    response = make_response(
        render_template("invitation.html", token=token, invitation=row, company=company)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/invitations/<token>")
def accept(token: str) -> Any:
    rt, s = runtime(), db()
    try:
        user = accept_invitation(s, rt.clock, token)
        company = s.get(Company, user.company_id)
        assert company is not None
        slug, user_id, company_id = company.slug, user.id, company.id
        version = user.session_version or 0
        s.commit()
    except NotFound as e:
        s.rollback()
        log.info("refused an invitation: %s", e)
        return _invitation_refused()
    start_session(user_id, company_id, version)
    flash(f"Welcome to {company.name} on arbridge.", "ok")
    return redirect(url_for("owner.dashboard", slug=slug))


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> Any:
    # Signing out already ends the user's sessions in every browser (its version is bumped);
    # this button says so where the owner looks for it.
    from arbridge.web.auth import sign_out

    return sign_out()


@bp.app_template_global()
def company_people(company: Company) -> dict[str, Any]:
    """For the settings page: the users, the invitations still open, who may invite."""
    rt, s = runtime(), db()
    users = company_users(s, company.id)
    owner = company_owner(s, company.id)
    me = current_user()
    invitations: list[Invitation] = pending_invitations(s, rt.clock, company.id)
    return {
        "users": users,
        "owner_id": owner.id if owner else None,
        "invitations": invitations,
        "can_invite": me is not None and me.role == "owner",
        "me_id": me.id if me else None,
        "roles": ROLES,
        "role_labels": ROLE_LABELS,
    }
