"""Reminders on the web, the customer's side: the unsubscribe link (GET confirms, POST acts:
mail scanners prefetch links) and replies on the pay page (a question or dispute, a promise to
pay), which pause reminders for the invoice."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from arbridge.clock import day_text
from arbridge.errors import NotFound
from arbridge.inputs import InputError, parse_day
from arbridge.readmodels import reminders as reads
from arbridge.services.reminders.holds import record_hold, reply_limit_reached
from arbridge.services.reminders.unsubscribe import contact_for_unsubscribe
from arbridge.services.reminders.unsubscribe import unsubscribe as unsubscribe_contact
from arbridge.sync.model import Company, Contact, Invoice, InvoiceHold
from arbridge.sync.pay_links import LinkGone, check_live
from arbridge.sync.store import company_today, find_pay_token
from arbridge.web import csrf
from arbridge.web.common import db, get_or_404, runtime

bp = Blueprint("replies", __name__)
log = logging.getLogger(__name__)
MAX_MESSAGE = 2000


def _contact_for(token: str) -> Contact:
    contact_id = contact_for_unsubscribe(runtime().settings.secret_key or "", token)
    contact = db().get(Contact, contact_id) if contact_id is not None else None
    if contact is None:
        log.info("refused an unsubscribe link (unknown or tampered)")
        abort(404)
    return contact


@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> Any:
    contact = _contact_for(token)
    company = db().get(Company, contact.company_id)
    return render_template(
        "unsubscribe.html", contact=contact, company=company, token=token, done=False
    )


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058 one-click: the mail client POSTs without our form; the token is the key
def unsubscribe(token: str) -> Any:
    contact = _contact_for(token)
    rt, s = runtime(), db()
    unsubscribe_contact(s, rt, contact.id)
    s.commit()
    company = s.get(Company, contact.company_id)
    return render_template(
        "unsubscribe.html", contact=contact, company=company, token=token, done=True
    )


@bp.app_template_global()
def live_holds(invoice_id: int) -> list[InvoiceHold]:
    return reads.live_holds(db(), invoice_id)


@bp.post("/pay/<token>/respond")
def respond(token: str) -> Any:
    """The customer's reply on the pay page: a question or dispute, or a promise to pay."""
    rt, s = runtime(), db()
    try:
        link = find_pay_token(s, token)
        check_live(link, rt.clock.now())
    except LinkGone:
        abort(410)
    except NotFound:
        abort(404)
    inv = get_or_404(Invoice, link.invoice_id, link.company_id)  # a statement link has none
    back = redirect(url_for("pay.pay_page", token=token) + "#respond")
    if reply_limit_reached(s, rt, link):
        log.info("customer replies over the limit on link %s", link.id)
        return render_template(
            "error.html",
            title="We have your messages",
            message="You have sent several messages in a short time, and we have them all. "
            "To send another, please try again in an hour, or reply to our email.",
        ), 429
    if not inv.is_open:
        flash("This invoice is no longer open: there is nothing to reply to.", "error")
        return back
    kind = request.form.get("kind")
    message = (request.form.get("message") or "").strip()
    company = s.get(Company, inv.company_id)
    assert company is not None
    today = company_today(company, rt.clock)
    if len(message) > MAX_MESSAGE:
        flash(f"Please keep the message under {MAX_MESSAGE} characters.", "error")
        return back
    if kind == "dispute":
        if not message:
            flash("Please tell us what your question or concern is.", "error")
            return back
        record_hold(s, rt, inv, "dispute", message=message, link_id=link.id)
        s.commit()
        flash("Thank you. We have your message and will reply soon; reminders are paused.", "ok")
        return back
    if kind == "promise":
        try:
            promised = parse_day(request.form.get("promised_on"))
        except InputError:
            flash("Please choose the date you will pay.", "error")
            return back
        if not today <= promised <= today + timedelta(days=60):
            flash("Please choose a date between today and 60 days from now.", "error")
            return back
        record_hold(
            s, rt, inv, "promise", message=message or None, promised_on=promised, link_id=link.id
        )
        s.commit()
        flash(
            f"Thank you. We have noted that you will pay by {day_text(promised)}.",
            "ok",
        )
        return back
    abort(400)
