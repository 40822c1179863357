"""Texts on the web: POST /webhooks/twilio (Twilio's replies and delivery reports: verified,
stored once, handled from the inbox),
and the owner's SMS setup: the business's own Twilio account, the wording of a text, consent to
text a contact, and text replies to close."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, flash, redirect, request, url_for

from arbridge.collections.reminder_policy import MAX_SMS_TEMPLATE
from arbridge.collections.sms import sms_sample
from arbridge.errors import SignatureInvalid
from arbridge.readmodels import texts as reads
from arbridge.services.messaging.sms import WEBHOOK_PATH
from arbridge.services.messaging.sms_setup import (
    SmsSetupError,
    remove_sms_account,
    save_sms_account,
    set_consent,
)
from arbridge.services.reminders.text_replies import receive_twilio
from arbridge.sync.model import Company, Contact, SmsReply
from arbridge.sync.store import log_activity
from arbridge.web import csrf
from arbridge.web.common import company_required, current_user, db, get_or_404, runtime
from arbridge.webhooks.twilio import MalformedTwilio

bp = Blueprint("texts", __name__)
log = logging.getLogger(__name__)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@bp.post(WEBHOOK_PATH)
@csrf.exempt  # Twilio signs the request instead (X-Twilio-Signature)
def twilio_webhook() -> Any:
    rt = runtime()
    # The URL Twilio called, as the business configured it (a proxy in front may change the
    # scheme or host Flask sees), with the query Twilio signed.
    query = request.query_string.decode("utf-8", "replace")
    url = f"{rt.settings.base_url}{WEBHOOK_PATH}" + (f"?{query}" if query else "")
    form = list(request.form.items(multi=True))
    signature = request.headers.get("X-Twilio-Signature")
    try:
        outcome = receive_twilio(rt, url, form, signature)
    except MalformedTwilio as e:
        log.warning("refused a malformed Twilio request from %s: %s", request.remote_addr, e)
        return {"error": f"not a Twilio request: {e}"}, 400
    except SignatureInvalid as e:
        log.warning("refused a Twilio request from %s: %s", request.remote_addr, e)
        return {"error": "invalid signature"}, 403
    log.info("Twilio request: %s", outcome)
    return Response(EMPTY_TWIML, mimetype="text/xml")


@bp.app_template_global()
def sms_setup(company: Company) -> reads.SmsSetup:
    return reads.sms_setup(db(), runtime(), company)


@bp.app_template_global()
def sms_wording(company: Company) -> reads.SmsWording:
    return reads.sms_wording(company)


@bp.app_template_global()
def sms_replies(company: Company) -> list[tuple[SmsReply, str | None]]:
    return reads.waiting_replies(db(), company.id)


@bp.post("/c/<slug>/settings/sms")
@company_required
def save_account(company: Company) -> Any:
    rt, s = runtime(), db()
    back = redirect(url_for("owner.settings", slug=company.slug) + "#sms", code=303)
    if request.form.get("remove"):
        if remove_sms_account(s, rt, company):
            s.commit()
            flash("Your Twilio account is removed.", "ok")
        return back
    try:
        save_sms_account(
            s,
            rt,
            company,
            request.form.get("account_sid") or "",
            request.form.get("auth_token") or "",
            request.form.get("sender") or "",
        )
    except SmsSetupError as e:
        s.rollback()
        log.info("refused Twilio settings for %s: %s", company.slug, e)
        flash(str(e), "error")
        return back
    s.commit()
    flash("Texts now go through your Twilio account.", "ok")
    return back


@bp.post("/c/<slug>/reminders/sms-wording")
@company_required
def save_wording(company: Company) -> Any:
    rt, s = runtime(), db()
    back = redirect(url_for("reminders.page", slug=company.slug) + "#sms-wording", code=303)
    wording = (request.form.get("sms_template") or "").strip()
    if len(wording) > MAX_SMS_TEMPLATE:
        flash(f"A text's wording has at most {MAX_SMS_TEMPLATE} characters.", "error")
        return back
    _body, length, problem = sms_sample(wording)
    if problem:
        flash(f"The wording was not saved: {problem}", "error")
        return back
    stored = dict(company.settings or {})
    stored["reminders"] = {**(stored.get("reminders") or {}), "sms_template": wording}
    company.settings = stored
    log_activity(s, rt.clock, company.id, "reminders.sms_wording", "Text message wording saved")
    s.commit()
    assert length is not None
    flash(f"Wording saved: {length.describe()}.", "ok")
    return back


@bp.post("/c/<slug>/contacts/<int:contact_id>/sms-consent")
@company_required
def consent(company: Company, contact_id: int) -> Any:
    rt, s = runtime(), db()
    contact = get_or_404(Contact, contact_id, company)
    back = redirect(
        url_for("customers.customer", slug=company.slug, customer_id=contact.customer_id)
        + "#contacts",
        code=303,
    )
    given = request.form.get("consent") == "yes"
    user = current_user()
    try:
        set_consent(
            s, rt, contact, given, request.form.get("note") or "", user.email if user else None
        )
    except SmsSetupError as e:
        s.rollback()
        flash(str(e), "error")
        return back
    s.commit()
    flash("Consent to text recorded." if given else "Consent to text withdrawn.", "ok")
    return back


@bp.post("/c/<slug>/sms-replies/<int:reply_id>/done")
@company_required
def reply_done(company: Company, reply_id: int) -> Any:
    rt, s = runtime(), db()
    reply = get_or_404(SmsReply, reply_id, company)
    if reply.handled_at is None:
        reply.handled_at = rt.clock.now()
        s.commit()
    return redirect(url_for("reminders.calls", slug=company.slug) + "#text-replies", code=303)
