"""Reminders on the web, the owner's side: sequence, wording, preview, mailbox and call list.
The customer's side (unsubscribe, replies on the pay page) is web/replies.py."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import escape

from arbridge.clock import local_text
from arbridge.collections.reminder_policy import (
    CHANNELS,
    ESCALATIONS,
    WEEKDAYS,
    SequenceError,
    parse_sequence,
    reminder_policy,
)
from arbridge.collections.reminder_words import (
    ESCALATION_WORDS,
    channel_words,
    mail_kind,
    sequence_title,
    step_in_words,
    template_title,
)
from arbridge.collections.reminders import CustomerMessage
from arbridge.collections.templates import (
    CALL_GUIDE,
    DEFAULT_TEMPLATES,
    MERGE_FIELD_LABELS,
    EmailTemplate,
    TemplateProblem,
    is_plain,
    template_for,
)
from arbridge.collections.templates import check as check_template
from arbridge.inputs import InputError, parse_day, parse_int
from arbridge.money import Money
from arbridge.readmodels import reminders as reads
from arbridge.readmodels.calls import live_calls
from arbridge.runtime import Runtime
from arbridge.services.messaging.queue import queue_test_message
from arbridge.services.reminders.calls import MAX_PROMISE_DAYS, OUTCOMES, CallRefused, log_call
from arbridge.services.reminders.case_file import case_file as build_case_file
from arbridge.services.reminders.holds import resolve_hold
from arbridge.services.reminders.preview import Preview, dry_run_rows, not_reminded, preview
from arbridge.services.reminders.rendering import render_reminder
from arbridge.services.reminders.run import refer_to_agency, withdraw_agency_referral
from arbridge.services.reminders.sequences import (
    UnknownSequence,
    follow_sequence,
    realign_highest_steps,
)
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
from arbridge.web.common import (
    company_required,
    current_user,
    db,
    get_or_404,
    id_arg,
    runtime,
    safe_next,
)
from arbridge.web.csv_export import csv_response
from arbridge.wording import counted, verb

bp = Blueprint("reminders", __name__)
SEQUENCE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
log = logging.getLogger(__name__)
MAX_MESSAGE = 2000
MAX_SUBJECT = 250
MAX_WORDING = 50_000  # characters of a wording's text or HTML


# ---------------------------------------------------------------------------------------------
# The owner's side.


def _stored(company: Company) -> dict[str, Any]:
    return dict((company.settings or {}).get("reminders") or {})


def _save(company: Company, reminders: dict[str, Any], what: str, *, realign: bool = False) -> None:
    """Store the reminder settings; with `realign` (the default sequence's steps changed), each
    invoice's highest step claimed is counted again in the new steps, in the same commit."""
    rt, s = runtime(), db()
    settings = dict(company.settings or {})
    settings["reminders"] = reminders
    company.settings = settings
    if realign:
        realign_highest_steps(s, company)
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


# The day's plan shows this many messages a page (a day with 40,000 invoices due is a list to
# download, not a page: issue 14 measured 169 MB of HTML), and the customer list as many rows.
PLAN_ROWS = 50
CUSTOMER_ROWS = 50


def _page_number(name: str) -> int:
    try:
        return parse_int(request.args.get(name) or "1", minimum=1, maximum=1_000_000)
    except InputError:
        return 1


def _as_of() -> tuple[date | None, int]:
    """The day asked for (None: today) and the status to answer with (400: not a date)."""
    as_of_raw = request.args.get("as_of")
    if as_of_raw:
        try:
            return parse_day(as_of_raw), 200
        except InputError as e:
            flash(f"{e}; showing today.", "error")
            return None, 400
    return None, 200


@bp.get("/c/<slug>/reminders")
@company_required
def page(company: Company) -> Any:
    return _page(company)


def _page(
    company: Company,
    draft: EmailTemplate | None = None,
    draft_name: str | None = None,
    wording_error: str | None = None,
    steps_draft: StepsDraft | None = None,
) -> Any:
    """The reminders page; `draft` (the Preview button without JavaScript): the wording as
    typed, shown in the editor and the preview, not saved."""
    rt = runtime()
    as_of, status = _as_of()
    prev = preview(rt, company, as_of)
    plan = _plan_page(company, prev)
    customers_page = _page_number("customers_page")
    try:
        policy = reminder_policy(company.settings)
        error = None
    except SequenceError as e:
        policy, error = reminder_policy({}), str(e)
    names = sorted(set(DEFAULT_TEMPLATES) | set(_stored(company).get("templates") or {}))
    sequence_name = steps_draft.name if steps_draft else request.args.get("sequence") or "default"
    sequence = policy.sequences.get(sequence_name) or policy.sequence(None)
    customers = reads.customers_with_sequence(
        db(), company.id, limit=CUSTOMER_ROWS + 1, offset=(customers_page - 1) * CUSTOMER_ROWS
    )
    chosen = draft_name or request.args.get("template") or "overdue"
    inv = _sample_invoice(company, id_arg(request.values.get("invoice_id")))
    template = draft or template_for(chosen, _stored(company).get("templates"))
    rendered, render_error = _wording_preview(company, inv, chosen, draft)
    return render_template(
        "reminders.html",
        company=company,
        prev=prev,
        dry_run=dry_run_rows(rt, prev, plan.shown),
        not_reminded=not_reminded(prev),
        plan=plan,
        customers_page=customers_page,
        more_customers=len(customers) > CUSTOMER_ROWS,
        policy=policy,
        settings_error=error,
        sequence=sequence,
        sequence_name=sequence_name,
        sequence_names=sorted(policy.sequences),
        customers=customers[:CUSTOMER_ROWS],
        channels=CHANNELS,
        escalations=ESCALATIONS,
        weekdays=WEEKDAYS,
        template_names=names,
        chosen=chosen,
        template=template,
        plain=is_plain(template),
        draft=draft is not None,
        sample=inv,
        rendered=rendered,
        render_error=render_error,
        wording_error=wording_error,
        steps_draft=steps_draft,
        merge_fields=MERGE_FIELD_LABELS,
    ), status


@dataclass(frozen=True)
class PlanPage:
    """What the dry run's table says about the whole day when it shows a page of it."""

    page: int
    pages: int
    first: int  # the first and last message shown, counted from 1
    last: int
    messages: int
    invoices: int
    held: int
    csv_url: str
    prev_url: str | None
    next_url: str | None
    shown: Sequence[CustomerMessage]  # this page's messages


def plan_page(prev: Preview, page_url: Callable[[int], str], csv_url: str) -> PlanPage:
    """A page of the day's plan (the `plan_page` asked for, within range), its totals and its
    pager's links (`page_url(n)`); the reminders page and the onboarding choice show it alike."""
    messages = prev.loaded.day.messages
    pages = max(1, -(-len(messages) // PLAN_ROWS))
    page = min(_page_number("plan_page"), pages)
    return PlanPage(
        page=page,
        pages=pages,
        first=(page - 1) * PLAN_ROWS + 1,
        last=min(page * PLAN_ROWS, len(messages)),
        messages=len(messages),
        invoices=sum(len(m.invoices) for m in messages),
        held=sum(1 for m in messages if m.held),
        csv_url=csv_url,
        prev_url=page_url(page - 1) if page > 1 else None,
        next_url=page_url(page + 1) if page < pages else None,
        shown=messages[(page - 1) * PLAN_ROWS : page * PLAN_ROWS],
    )


def _plan_page(company: Company, prev: Preview) -> PlanPage:
    day = prev.loaded.as_of.isoformat()

    def page_url(n: int) -> str:
        return url_for("reminders.page", slug=company.slug, as_of=day, plan_page=n) + "#preview"

    return plan_page(prev, page_url, url_for("reminders.plan_csv", slug=company.slug, as_of=day))


@bp.get("/c/<slug>/reminders/plan.csv")
@company_required
def plan_csv(company: Company) -> Any:
    """The whole of a day's plan (the page shows it a part at a time), in the page's words: one
    row per invoice."""
    as_of, status = _as_of()
    if status != 200:
        abort(400)
    return plan_csv_response(runtime(), company, preview(runtime(), company, as_of))


def plan_csv_response(rt: Runtime, company: Company, prev: Preview) -> Response:
    """The whole of a dry run as CSV, one row per invoice, in the page's words."""
    day = prev.loaded.day
    rows = (
        (
            r.customer,
            r.to or "",
            i.number,
            i.when,
            r.step,
            r.channel,
            local_text(r.send_at, company.timezone) if r.send_at else "",
            d.invoice.currency,
            Money.from_minor(d.invoice.balance_minor, d.invoice.currency).amount,
            f"not sent: {r.held}" if r.held else "will send",
        )
        for m, r in zip(day.messages, dry_run_rows(rt, prev), strict=True)
        for d, i in zip(m.invoices, r.invoices, strict=True)
    )
    return csv_response(
        f"reminders-{company.slug}-{day.as_of.isoformat()}.csv",
        (
            "customer",
            "to",
            "invoice",
            "invoice step",
            "step",
            "channel",
            f"goes out ({company.timezone})",
            "currency",
            "balance",
            "state",
        ),
        rows,
    )


def _wording_preview(
    company: Company, inv: Invoice | None, name: str, draft: EmailTemplate | None
) -> tuple[Any, str | None]:
    """The email as the owner's wording renders it for a real invoice, with inert links."""
    if inv is None:
        return None, None
    try:
        return _render_email(company, inv, name, draft), None
    except (TemplateProblem, SequenceError) as e:
        log.info("wording %s does not render for %s: %s", name, company.slug, e)
        return None, str(e)


@bp.post("/c/<slug>/reminders/preview")
@company_required
def preview_wording(company: Company) -> Any:
    """The wording as typed, rendered for a real invoice with inert sample links; nothing is
    saved. Asked by the editor's script as the owner types (it wants the preview part only),
    or by the Preview button without JavaScript (the whole page, the draft in the editor)."""
    f = request.form
    name = (f.get("name") or "overdue").strip()[:40] or "overdue"
    subject = (f.get("subject") or "")[:MAX_SUBJECT]
    text = (f.get("text") or "")[:MAX_WORDING]
    html = (f.get("html") or "")[:MAX_WORDING]
    draft = EmailTemplate(subject, text, html or None)
    if f.get("part") == "html":
        # The HTML version alone, into the preview's frame (the script posts it there).
        inv = _sample_invoice(company, id_arg(f.get("invoice_id")))
        rendered, render_error = _wording_preview(company, inv, name, draft)
        if rendered is None:
            return _email_document(
                f"<p>{escape(render_error or 'No open invoice to preview with.')}</p>"
            )
        return _email_document(rendered.html)
    if request.headers.get("X-Requested-With") != "fetch":
        return _page(company, draft, name)
    inv = _sample_invoice(company, id_arg(f.get("invoice_id")))
    rendered, render_error = _wording_preview(company, inv, name, draft)
    if not subject.strip() or not text.strip():
        render_error = "A wording needs a subject and a text."
    return render_template(
        "_wording_preview.html",
        company=company,
        sample=inv,
        rendered=rendered,
        render_error=render_error,
        chosen=name,
        draft=True,
    )


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
        # The page again with the form as typed and the reason above it (a redirect showed the
        # stored steps: a new step, a signature typed in the same save, gone).
        log.info("reminder sequence refused: %s", e)
        body, _status = _page(company, steps_draft=_steps_draft(f, rows, name, f"Not saved: {e}."))
        return body, 400
    # The invoices' highest steps are places in the default sequence's steps: counted again.
    _save(
        company,
        candidate,
        f"the steps of the {sequence_title(name)} sequence",
        realign=name == "default",
    )
    flash(f"Steps of the {sequence_title(name)} sequence saved.", "ok")
    return redirect(url_for("reminders.page", slug=company.slug, sequence=name) + "#sequence")


@dataclass(frozen=True)
class StepsDraft:
    """The steps form as the owner filled it in, to show again with why it was refused."""

    steps: list[SimpleNamespace]
    policy: SimpleNamespace
    name: str
    error: str


def _steps_draft(form: Any, rows: list[dict[str, str]], name: str, error: str) -> StepsDraft:
    weekdays = form.getlist("weekdays")
    return StepsDraft(
        steps=[SimpleNamespace(**row) for row in rows],
        policy=SimpleNamespace(
            quiet_start=form.get("quiet_start", ""),
            quiet_end=form.get("quiet_end", ""),
            statement_day=form.get("statement_day", ""),
            max_sync_age_minutes=form.get("max_sync_age_minutes", ""),
            weekdays=[i for i, d in enumerate(WEEKDAYS) if d in weekdays],
            signature=(form.get("signature") or "")[:1000],
        ),
        name=name[:40],
        error=error,
    )


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
    flash(f"{cust.name} now follows the {sequence_title(shown)} sequence.", "ok")
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
        f"{counted(count, 'statement link')} withdrawn for {cust.name}",
        customer_id=cust.id,
    )
    s.commit()
    flash(
        f"{counted(count, 'statement link')} for {cust.name} no longer "
        f"{verb(count, 'works', 'work')}.",
        "ok",
    )
    return redirect(url_for("reminders.page", slug=company.slug) + "#customers")


@bp.post("/c/<slug>/reminders/template")
@company_required
def save_template(company: Company) -> Any:
    name = (request.form.get("name") or "").strip()
    subject = (request.form.get("subject") or "").strip()
    text = request.form.get("text") or ""
    html = request.form.get("html") or ""
    target = url_for("reminders.page", slug=company.slug, template=name) + "#templates"
    tpl = EmailTemplate(subject, text, html or None)

    def refused(problem: str) -> Any:
        """The page again with the wording as typed in the editor and the reason beside it (a
        redirect showed the stored wording, the owner's edits gone, the reason a page away)."""
        log.info("wording %r refused: %s", name, problem)
        body, _status = _page(company, tpl, name, wording_error=f"Not saved: {problem}")
        return body, 400

    if not name or len(name) > 40:
        abort(400)
    if not subject or not text.strip():
        return refused("a wording needs a subject and a text")
    inv = _sample_invoice(company, None)
    try:
        if inv is not None:
            _render_email(company, inv, name, tpl)
        else:  # no open invoice to try it on: sample values
            check_template(tpl)
    except TemplateProblem as e:
        return refused(str(e))
    stored = _stored(company)
    templates = dict(stored.get("templates") or {})
    if request.form.get("reset"):
        templates.pop(name, None)
    else:
        templates[name] = {"subject": subject, "text": text, "html": html}
    _save(company, {**stored, "templates": templates}, f"the wording {template_title(name)}")
    flash(f"Wording saved: {template_title(name)}.", "ok")
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
    log_activity(
        s,
        rt.clock,
        company.id,
        "reminders.test",
        f"Test email ({template_title(name)}) to {user.email}",
    )
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
    return _email_document(rendered.html)


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
    box = reads.mailbox(db(), company, runtime().clock.now())
    return render_template(
        "mailbox.html",
        company=company,
        mails=box.mails,
        queued=box.queued,
        dropped=box.dropped,
        kind=mail_kind,
    )


# A link in a sent email that acts for whoever opens it: a customer's pay page (it takes
# promises and disputes too) and unsubscribe link, an invitation, a sign-in.
_ACTING_LINK = re.compile(r"(?:https?://[^\s\"'<>/]+)?/(?:pay|u|invitations|sign-in)/[\w.~-]+")
HIDDEN_LINK = "[link not shown to your role]"


def _as_shown(body: str) -> str:
    """A sent email's body as the signed-in user may read it: an owner reads it as it went;
    a collector or viewer (who change nothing, and see no pay link) reads it without the
    links that act for the customer or sign someone in."""
    user = g.get("user") or current_user()
    if user is not None and user.role == "owner":
        return body
    return _ACTING_LINK.sub(HIDDEN_LINK, body)


@bp.get("/c/<slug>/mailbox/<int:mail_id>")
@company_required
def mail(company: Company, mail_id: int) -> Any:
    m = get_or_404(MailMessage, mail_id, company)
    return render_template(
        "mail_message.html", company=company, m=m, body=_as_shown(m.text_body), kind=mail_kind
    )


@bp.get("/c/<slug>/mailbox/<int:mail_id>/email.html")
@company_required
def mail_html(company: Company, mail_id: int) -> Any:
    """The HTML version of a sent email, as the recipient saw it (framed by its mailbox page)."""
    m = get_or_404(MailMessage, mail_id, company)
    if not m.html_body:
        abort(404)
    return _email_document(_as_shown(m.html_body))


def _email_document(html: str) -> Response:
    """An email's HTML served on its own: styles inline only, no script, no request to anywhere;
    framed only by our own pages (the mailbox and the wording preview)."""
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


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
    again = " It stays on your list to try again." if task.done_at is None else ""
    flash(f"Call logged: {task.outcome}.{held}{again}", "ok")
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


# Steps, wordings and channels in words on every page (collections/reminder_words.py).
bp.add_app_template_filter(step_in_words, "step_words")
bp.add_app_template_filter(template_title, "template_title")
bp.add_app_template_filter(channel_words, "channel_words")
bp.add_app_template_filter(sequence_title, "sequence_title")
bp.add_app_template_filter(lambda e: ESCALATION_WORDS.get(e, e), "escalation_words")


@bp.app_template_global()
def reminder_summary(company: Company) -> dict[str, Any]:
    return reads.reminder_summary(db(), company.id)
