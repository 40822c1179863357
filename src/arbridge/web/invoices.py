"""The owner's invoices list: search, filters, sorting, paging, CSV, pausing or resuming
reminders for many invoices at once, and sending invoices never sent to their customers.
Every route is scoped to the user's company."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from arbridge.collections.aging import BUCKET_LABELS
from arbridge.collections.insight import lateness
from arbridge.inputs import InputError, parse_id
from arbridge.readmodels import invoices as reads
from arbridge.readmodels.forecast import Expected, expected
from arbridge.services.delivery.send import queue_sends
from arbridge.sync.insight_store import behaviours
from arbridge.sync.model import Company, Invoice
from arbridge.sync.store import company_today, log_activity
from arbridge.web.common import company_required, db, get_or_404, page_arg, runtime, safe_next
from arbridge.web.csv_export import csv_response
from arbridge.web.insight import dashboard_insight
from arbridge.wording import counted

bp = Blueprint("invoices", __name__, url_prefix="/c/<slug>")
log = logging.getLogger(__name__)
PAGE_SIZE = 50
MAX_BULK = 500


def _week(company: Company, f: reads.Filters) -> tuple[Expected | None, Decimal | None]:
    """The forecast's week the list is filtered to (None: not filtered), and the figure the
    dashboard shows for it (None: not computed yet)."""
    if f.expected is None:
        return None, None
    s, today = db(), company_today(company, runtime().clock)
    found = dashboard_insight(company, lateness=True).found
    if found is None or found.lateness is None or found.as_of != today:
        late = {
            b.customer_id: lateness(b.year_days_late, b.year_count)
            for b in behaviours(s, company, today)
        }
        figure = None
    else:
        late = found.lateness
        fc = found.forecast
        figure = fc.later if f.expected == "later" else fc.weeks[int(f.expected) - 1].amount
    return expected(s, company, today, f.expected, late), figure


def _filters() -> reads.Filters:
    """The list's filters from the query string; a malformed one is a 400 saying what it takes."""
    try:
        return reads.Filters.from_args(request.args)
    except InputError as e:
        abort(400, f"{e}.")


@bp.get("/invoices")
@company_required
def invoices_list(company: Company) -> Any:
    s = db()
    f = _filters()
    page = page_arg(PAGE_SIZE)
    if page > reads.MAX_PAGES:
        abort(404)
    today = company_today(company, runtime().clock)
    week, figure = _week(company, f)
    found = reads.invoices_page(s, company, today, f, page=page, page_size=PAGE_SIZE, week=week)
    total = found.week_total
    return render_template(
        "invoices.html",
        company=company,
        f=f,
        args={"slug": company.slug, **f.args()},
        found=found,
        week=week,
        week_total=total if total is not None or week is None else week.total(s, company),
        week_figure=figure,
        weeks=reads.WEEKS,
        statuses=reads.STATUSES,
        buckets=BUCKET_LABELS,
        holds=reads.HOLDS,
        delivery=reads.DELIVERY,
        currencies=reads.currencies(s, company.id),
        today=today,
        max_rows=reads.MAX_PAGES * PAGE_SIZE,
    )


@bp.get("/invoices.csv")
@company_required
def invoices_csv(company: Company) -> Any:
    f = _filters()
    today = company_today(company, runtime().clock)
    week, _ = _week(company, f)
    rows = reads.invoices_export(db(), company, today, f, week=week)
    return csv_response(
        f"invoices-{company.slug}-{today.isoformat()}.csv",
        [
            "Invoice",
            "Customer",
            "Issued",
            "Due",
            "Days overdue",
            "Currency",
            "Total",
            "Balance",
            "Status",
            "Flags",
            *([f"Expected that week ({company.home_currency})"] if week else []),
        ],
        (
            [
                r.invoice.number or r.invoice.source_id,
                r.customer,
                r.invoice.issued_on.isoformat(),
                r.invoice.due_on.isoformat(),
                r.days_overdue if r.invoice.is_open and r.days_overdue > 0 else "",
                r.invoice.currency,
                r.invoice.total.amount,
                r.invoice.balance.amount,
                r.invoice.status,
                "; ".join(r.flags),
                *([r.expected] if week else []),
            ]
            for r in rows
        ),
    )


@bp.post("/invoices/bulk")
@company_required
def bulk(company: Company) -> Any:
    """Pause or resume reminders for the ticked invoices. Every id must be one of this
    company's invoices: another company's (or a made-up) id is a 404 and nothing changes."""
    rt, s = runtime(), db()
    back = safe_next(request.form.get("next"), url_for("invoices.invoices_list", slug=company.slug))
    action = request.form.get("action")
    if action not in ("pause", "resume", "send"):
        abort(400, "Choose pause, resume or send.")
    raw = request.form.getlist("invoice_id")
    if not raw:
        flash("Tick at least one invoice first.", "error")
        return redirect(back, code=303)
    if len(raw) > MAX_BULK:
        abort(400, f"At most {MAX_BULK} invoices at once.")
    try:
        ids = {parse_id(v) for v in raw}
    except InputError:
        abort(404)
    found = s.scalars(
        select(Invoice).where(Invoice.company_id == company.id, Invoice.id.in_(ids))
    ).all()
    if len(found) != len(ids):
        log.info(
            "bulk %s refused: %d of %d ids not this company's",
            action,
            len(ids) - len(found),
            len(ids),
        )
        abort(404)
    if action == "send":
        return _sent(company, [inv.id for inv in found], back)
    paused = action == "pause"
    changed = [inv for inv in found if inv.paused != paused]
    for inv in changed:
        inv.paused = paused
        log_activity(
            s,
            rt.clock,
            company.id,
            "reminders.paused" if paused else "reminders.resumed",
            f"Reminders {'paused' if paused else 'resumed'} for invoice {inv.number}",
            invoice_id=inv.id,
        )
    s.commit()
    flash(
        f"Reminders {'paused' if paused else 'resumed'} for {counted(len(changed), 'invoice')}"
        + (f"; {len(found) - len(changed)} already were." if len(changed) < len(found) else "."),
        "ok",
    )
    return redirect(back, code=303)


@bp.post("/invoices/<int:invoice_id>/send")
@company_required
def send_invoice(company: Company, invoice_id: int) -> Any:
    """Send one invoice to its customer, once (through the outbox; a second click is nothing)."""
    back = safe_next(
        request.form.get("next"),
        url_for("owner.invoice", slug=company.slug, invoice_id=invoice_id),
    )
    get_or_404(Invoice, invoice_id, company)
    return _sent(company, [invoice_id], back)


@bp.post("/invoices/send-unsent")
@company_required
def send_unsent(company: Company) -> Any:
    """Send every open invoice never sent (the dashboard's "Send all"), each once."""
    s = db()
    ids = s.scalars(
        select(Invoice.id)
        .where(Invoice.company_id == company.id, Invoice.is_unsent)
        .order_by(Invoice.issued_on, Invoice.id)
        .limit(MAX_BULK)
    ).all()
    return _sent(company, ids, url_for("owner.dashboard", slug=company.slug) + "#unsent")


def _sent(company: Company, ids: list[int], back: str) -> Any:
    rt, s = runtime(), db()
    user = g.get("user")
    done = queue_sends(
        s, rt.clock, company, ids, by=user.email if user else None, retry_failed=True
    )
    s.commit()
    said = [f"{counted(done.queued, 'invoice')} on their way to your customers"]
    if done.already:
        said.append(f"{done.already} already on their way")
    if done.not_unsent:
        said.append(f"{done.not_unsent} sent before, paid or voided: not sent again")
    flash("; ".join(said) + ".", "ok" if done.queued or done.already else "error")
    return redirect(back, code=303)
