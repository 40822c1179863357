"""Reminders on the web, the owner's side: sequence, wording, preview, mailbox and call list.
The customer's side (unsubscribe, replies on the pay page) is web/replies.py."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from arbridge.collections.reminder_policy import (
    CHANNELS,
    ESCALATIONS,
    WEEKDAYS,
    SequenceError,
    parse_sequence,
    reminder_policy,
)
from arbridge.collections.templates import (
    CALL_GUIDE,
    DEFAULT_TEMPLATES,
    MERGE_FIELDS,
    EmailTemplate,
    TemplateProblem,
    template_for,
)
from arbridge.collections.templates import check as check_template
from arbridge.inputs import InputError, parse_day, parse_int
from arbridge.readmodels import reminders as reads
from arbridge.readmodels.calls import live_calls
from arbridge.services.messaging.queue import queue_test_message
from arbridge.services.reminders.calls import MAX_PROMISE_DAYS, OUTCOMES, CallRefused, log_call
from arbridge.services.reminders.case_file import case_file as build_case_file
from arbridge.services.reminders.holds import resolve_hold
from arbridge.services.reminders.preview import preview, preview_lines
from arbridge.services.reminders.rendering import render_reminder
from arbridge.services.reminders.run import refer_to_agency, withdraw_agency_referral
from arbridge.services.reminders.sequences import UnknownSequence, follow_sequence
from arbridge.sync import pay_links
from arbridge.sync.model import (
    CallTask,
    Company,
    Customer,
    Invoice,
    InvoiceHold,
    MailMessage,
)
from arbridge.sync.store import company_today, log_activity, owner
from arbridge.web.common import company_required, db, get_or_404, id_arg, runtime, safe_next

bp = Blueprint("reminders", __name__)
SEQUENCE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
log = logging.getLogger(__name__)
MAX_MESSAGE = 2000


# ---------------------------------------------------------------------------------------------
# The owner's side.


def _stored(company: Company) -> dict[str, Any]:
    return dict((company.settings or {}).get("reminders") or {})


def _save(company: Company, reminders: dict[str, Any], what: str) -> None:
    rt, s = runtime(), db()
    settings = dict(company.settings or {})
    settings["reminders"] = reminders
    company.settings = settings
    log_activity(s, rt.clock, company.id, "settings.changed", f"Reminder settings changed: {what}")
    s.commit()


def _sample_invoice(company: Company, invoice_id: int | None) -> Invoice | None:
    if invoice_id:
        return get_or_404(Invoice, invoice_id, company)
    return reads.first_open_invoice(db(), company.id)


def _render_email(company: Company, inv: Invoice, template_name: str, tpl: EmailTemplate | None):
    rt = runtime()
    customer, contact = reads.preview_recipient(db(), inv)
    return render_reminder(
        rt,
        company,
        customer,
        contact,
        [(inv, "")],
        template_name,
        company_today(company, rt.clock),
        template=tpl,
        sample=True,  # inert links: the preview shows a real customer's invoice
    )


@bp.get("/sample-link")
def sample_link() -> Any:
    """Where every link of a preview or test email goes: a real email links to the customer's
    own payment page or unsubscribe page instead."""
    return render_template(
        "error.html",
        title="This is a sample link",
        message="In a preview or test email, links lead here. In the real email this link "
        "opens the customer's own page: their payment page, statement or unsubscribe.",
    )


@bp.get("/c/<slug>/reminders")
@company_required
def page(company: Company) -> Any:
    rt = runtime()
    as_of_raw = request.args.get("as_of")
    as_of, status = None, 200
    if as_of_raw:
        try:
            as_of = parse_day(as_of_raw)
        except InputError as e:
            flash(f"{e}; showing today.", "error")
            status = 400
    prev = preview(rt, company, as_of)
    try:
        policy = reminder_policy(company.settings)
        error = None
    except SequenceError as e:
        policy, error = reminder_policy({}), str(e)
    names = sorted(set(DEFAULT_TEMPLATES) | set(_stored(company).get("templates") or {}))
    sequence_name = request.args.get("sequence") or "default"
    sequence = policy.sequences.get(sequence_name) or policy.sequence(None)
    customers = reads.customers_with_sequence(db(), company.id)
    chosen = request.args.get("template") or "overdue"
    inv = _sample_invoice(company, id_arg(request.args.get("invoice_id")))
    rendered, render_error = None, None
    if inv is not None:
        try:
            rendered = _render_email(company, inv, chosen, None)
        except (TemplateProblem, SequenceError) as e:
            render_error = str(e)
    return render_template(
        "reminders.html",
        company=company,
        prev=prev,
        lines=preview_lines(prev),
        policy=policy,
        settings_error=error,
        sequence=sequence,
        sequence_name=sequence_name,
        sequence_names=sorted(policy.sequences),
        customers=customers,
        channels=CHANNELS,
        escalations=ESCALATIONS,
        weekdays=WEEKDAYS,
        template_names=names,
        chosen=chosen,
        template=template_for(chosen, _stored(company).get("templates")),
        sample=inv,
        rendered=rendered,
        render_error=render_error,
        merge_fields=MERGE_FIELDS,
    ), status


def _whole(
    form: Any, name: str, default: int | None, minimum: int, maximum: int, what: str
) -> int | None:
    raw = form.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return parse_int(raw, minimum=minimum, maximum=maximum)
    except InputError as e:
        raise SequenceError(f"{what}: {str(e)[0].lower()}{str(e)[1:]}") from e


@bp.post("/c/<slug>/reminders/sequence")
@company_required
def save_sequence(company: Company) -> Any:
    f = request.form
    rows = [
        {
            "offset_days": off,
            "channel": ch,
            "template": tpl,
            "min_balance": mb,
            "escalation": esc,
        }
        for off, ch, tpl, mb, esc in zip(
            f.getlist("offset_days"),
            f.getlist("channel"),
            f.getlist("template"),
            f.getlist("min_balance"),
            f.getlist("escalation"),
            strict=False,
        )
        if off.strip()
    ]
    stored = _stored(company)
    name = (f.get("sequence_name") or "default").strip().lower()
    sequences = dict(stored.get("sequences") or {})
    try:
        if not SEQUENCE_NAME.match(name):
            raise SequenceError("a sequence name is lowercase letters, digits and dashes")
        if not rows and name != "default":
            sequences.pop(
                name, None
            )  # an emptied sequence is removed: its customers get the default
        else:
            sequences[name] = [s.to_dict() for s in parse_sequence(name, rows).steps]
        candidate = {
            **stored,
            "sequences": sequences,
            "quiet_start": _whole(f, "quiet_start", 8, 0, 23, "the sending window's start"),
            "quiet_end": _whole(f, "quiet_end", 18, 1, 24, "the sending window's end"),
            "weekdays": [d for d in WEEKDAYS if d in f.getlist("weekdays")],
            "max_sync_age_minutes": _whole(
                f, "max_sync_age_minutes", 60, 5, 1440, "the re-sync age"
            ),
            "signature": (f.get("signature") or "")[:1000],
            "statement_day": _whole(f, "statement_day", None, 0, 28, "the statement day") or None,
        }
        reminder_policy({"reminders": candidate})
    except (SequenceError, ValueError) as e:
        log.info("reminder sequence refused: %s", e)
        flash(f"Not saved: {e}", "error")
        return redirect(url_for("reminders.page", slug=company.slug) + "#sequence")
    _save(company, candidate, f"sequence {name}")
    flash(f"Reminder sequence {name} saved.", "ok")
    return redirect(url_for("reminders.page", slug=company.slug, sequence=name) + "#sequence")


@bp.post("/c/<slug>/customers/<int:customer_id>/sequence")
@company_required
def customer_sequence(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    name = (request.form.get("sequence") or "").strip() or None
    try:
        shown = follow_sequence(s, rt.clock, company, cust, name)
    except UnknownSequence as e:
        s.rollback()
        flash(str(e), "error")
        return redirect(url_for("reminders.page", slug=company.slug) + "#customers")
    s.commit()
    flash(f"{cust.name} now follows the {shown} sequence.", "ok")
    back = url_for("reminders.page", slug=company.slug) + "#customers"
    return redirect(safe_next(request.form.get("next"), back))


@bp.post("/c/<slug>/customers/<int:customer_id>/revoke-statement-links")
@company_required
def revoke_statement_links(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    count = pay_links.revoke_statement_links(s, rt.clock, cust)
    log_activity(
        s,
        rt.clock,
        company.id,
        "pay_link.revoked",
        f"{count} statement link(s) withdrawn for {cust.name}",
        customer_id=cust.id,
    )
    s.commit()
    flash(f"{count} statement link(s) for {cust.name} no longer work.", "ok")
    return redirect(url_for("reminders.page", slug=company.slug) + "#customers")


@bp.post("/c/<slug>/reminders/template")
@company_required
def save_template(company: Company) -> Any:
    name = (request.form.get("name") or "").strip()
    subject = (request.form.get("subject") or "").strip()
    text = request.form.get("text") or ""
    html = request.form.get("html") or ""
    target = url_for("reminders.page", slug=company.slug, template=name) + "#templates"
    if not name or len(name) > 40 or not subject or not text.strip():
        flash("A template needs a name, a subject and a text.", "error")
        return redirect(target)
    tpl = EmailTemplate(subject, text, html or None)
    inv = _sample_invoice(company, None)
    try:
        if inv is not None:
            _render_email(company, inv, name, tpl)
        else:  # no open invoice to try it on: sample values
            check_template(tpl)
    except TemplateProblem as e:
        flash(f"Not saved: {e}", "error")
        return redirect(target)
    stored = _stored(company)
    templates = dict(stored.get("templates") or {})
    if request.form.get("reset"):
        templates.pop(name, None)
    else:
        templates[name] = {"subject": subject, "text": text, "html": html}
    _save(company, {**stored, "templates": templates}, f"template {name}")
    flash(f"Template {name} saved.", "ok")
    return redirect(target)


@bp.post("/c/<slug>/reminders/test-send")
@company_required
def test_send(company: Company) -> Any:
    rt, s = runtime(), db()
    inv = _sample_invoice(company, id_arg(request.form.get("invoice_id")))
    name = request.form.get("template") or "overdue"
    if inv is None:
        flash("There is no open invoice to show in a test email.", "error")
        return redirect(url_for("reminders.page", slug=company.slug))
    try:
        rendered = _render_email(company, inv, name, None)
    except TemplateProblem as e:
        flash(str(e), "error")
        return redirect(url_for("reminders.page", slug=company.slug))
    user = owner(s, company)
    queue_test_message(s, rt.clock, company.id, user.email, rendered)
    log_activity(s, rt.clock, company.id, "reminders.test", f"Test email ({name}) to {user.email}")
    s.commit()
    flash(f"Test email queued to {user.email}.", "ok")
    return redirect(url_for("reminders.page", slug=company.slug, template=name))


@bp.get("/c/<slug>/reminders/email.html")
@company_required
def email_html(company: Company) -> Any:
    inv = _sample_invoice(company, id_arg(request.args.get("invoice_id")))
    if inv is None:
        abort(404)
    try:
        rendered = _render_email(company, inv, request.args.get("template") or "overdue", None)
    except TemplateProblem as e:
        return Response(str(e), mimetype="text/plain", status=400)
    response = Response(rendered.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


@bp.post("/c/<slug>/invoices/<int:invoice_id>/pause")
@company_required
def pause(company: Company, invoice_id: int) -> Any:
    rt, s = runtime(), db()
    inv = get_or_404(Invoice, invoice_id, company)
    inv.paused = not inv.paused
    log_activity(
        s,
        rt.clock,
        company.id,
        "reminders.paused" if inv.paused else "reminders.resumed",
        f"Reminders {'paused' if inv.paused else 'resumed'} for invoice {inv.number}",
        invoice_id=inv.id,
    )
    s.commit()
    flash(f"Reminders {'paused' if inv.paused else 'resumed'} for {inv.number}.", "ok")
    return redirect(
        safe_next(request.form.get("next"), url_for("reminders.page", slug=company.slug))
    )


@bp.post("/c/<slug>/customers/<int:customer_id>/do-not-chase")
@company_required
def do_not_chase(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    cust.do_not_chase = not cust.do_not_chase
    log_activity(
        s,
        rt.clock,
        company.id,
        "reminders.do_not_chase",
        f"{cust.name}: {'do not chase' if cust.do_not_chase else 'reminders on again'}",
        customer_id=cust.id,
    )
    s.commit()
    flash(f"{cust.name}: {'do not chase' if cust.do_not_chase else 'reminders on'}.", "ok")
    return redirect(
        safe_next(request.form.get("next"), url_for("reminders.page", slug=company.slug))
    )


# Mailbox, call list, disputes, agency.


@bp.get("/c/<slug>/mailbox")
@company_required
def mailbox(company: Company) -> Any:
    box = reads.mailbox(db(), company)
    return render_template("mailbox.html", company=company, mails=box.mails, queued=box.queued)


@bp.get("/c/<slug>/mailbox/<int:mail_id>")
@company_required
def mail(company: Company, mail_id: int) -> Any:
    m = get_or_404(MailMessage, mail_id, company)
    return render_template("mail_message.html", company=company, m=m)


@bp.get("/c/<slug>/calls")
@company_required
def calls(company: Company) -> Any:
    s = db()
    today = company_today(company, runtime().clock)
    found = reads.call_list(s, company.id)
    return render_template(
        "calls.html",
        company=company,
        calls=live_calls(s, company.id, today),
        holds=found.holds,
        referred=found.referred,
        guide=CALL_GUIDE,
        today=today,
        outcomes=OUTCOMES,
        max_promise=today + timedelta(days=MAX_PROMISE_DAYS),
    )


@bp.post("/c/<slug>/calls/<int:task_id>/done")
@company_required
def call_done(company: Company, task_id: int) -> Any:
    """The call's outcome: reached, voicemail, promised DATE (holds reminders until then) or a
    dispute (holds the invoices until the owner closes it), as the pay page's replies do."""
    rt, s = runtime(), db()
    task = get_or_404(CallTask, task_id, company)
    back = redirect(url_for("reminders.calls", slug=company.slug) + "#calls")
    if task.done_at is not None:
        flash("That call was already logged.", "ok")
        return back
    raw_day = (request.form.get("promised_on") or "").strip()
    try:
        promised = parse_day(raw_day) if raw_day else None
        logged = log_call(
            s,
            rt,
            task,
            (request.form.get("outcome") or "").strip(),
            today=company_today(company, rt.clock),
            note=request.form.get("note") or "",
            promised_on=promised,
        )
    except (InputError, CallRefused) as e:
        log.info("call %s: outcome refused", task.id)
        flash(str(e) if isinstance(e, CallRefused) else "Give the date as YYYY-MM-DD.", "error")
        return back
    s.commit()
    held = f" Reminders paused for {', '.join(logged.held)}." if logged.held else ""
    flash(f"Call logged: {task.outcome}.{held}", "ok")
    return back


@bp.post("/c/<slug>/holds/<int:hold_id>/resolve")
@company_required
def resolve(company: Company, hold_id: int) -> Any:
    rt, s = runtime(), db()
    hold = get_or_404(InvoiceHold, hold_id, company)
    resolve_hold(s, rt, hold, (request.form.get("resolution") or "resolved").strip())
    s.commit()
    flash("Closed: reminders for the invoice resume.", "ok")
    return redirect(url_for("reminders.calls", slug=company.slug))


@bp.route("/c/<slug>/customers/<int:customer_id>/agency", methods=["GET", "POST"])
@company_required
def agency(company: Company, customer_id: int) -> Any:
    """GET asks first (referring stops every automatic reminder to the account); a POST without
    that confirmation only asks. One rule for both: two rules on one path turned an id out of
    range into 405 instead of 404."""
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    if request.method == "GET":
        return render_template("agency_confirm.html", company=company, customer=cust)
    if request.form.get("confirmed") != "yes":
        return redirect(url_for("reminders.agency", slug=company.slug, customer_id=cust.id))
    refer_to_agency(s, rt, company, cust.id, "referred by the owner")
    s.commit()
    flash(
        f"{cust.name} referred to a collection agency; automatic reminders stopped. "
        "Undo it below if that was a mistake.",
        "ok",
    )
    return redirect(url_for("reminders.calls", slug=company.slug) + "#agency")


@bp.post("/c/<slug>/customers/<int:customer_id>/agency/undo")
@company_required
def agency_undo(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    if withdraw_agency_referral(s, rt, company, cust.id):
        s.commit()
        flash(f"{cust.name} is no longer referred; automatic reminders resume.", "ok")
    else:
        flash(f"{cust.name} was not referred to an agency.", "error")
    return redirect(url_for("reminders.calls", slug=company.slug) + "#agency")


@bp.get("/c/<slug>/customers/<int:customer_id>/case-file.json")
@company_required
def case_file(company: Company, customer_id: int) -> Any:
    cust = get_or_404(Customer, customer_id, company)
    data = build_case_file(db(), company, cust)
    response = Response(json.dumps(data, indent=2), mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="case-file-{company.slug}-{cust.id}.json"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def reminder_summary(company: Company) -> dict[str, Any]:
    return reads.reminder_summary(db(), company.id)
