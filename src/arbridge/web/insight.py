"""The owner's insight pages: flagged customers, credit limits and their proposed raises (approve
or decline in one click), the cash forecast, the KPI trends, and CSV exports of each table."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal
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

from arbridge.clock import day_text, local_date, local_hour_text
from arbridge.collections.aging import BUCKET_LABELS
from arbridge.collections.exports import to_csv
from arbridge.collections.kpis import DEFAULT_PERIOD_DAYS, KPI_FIELDS, two_places
from arbridge.collections.policy import policy
from arbridge.errors import ArbridgeError
from arbridge.inputs import InputError, parse_decimal
from arbridge.money import Money, exponent
from arbridge.sync.insight_cache import Shown, Snapshot, shown
from arbridge.sync.insight_store import (
    aging_by_customer,
    customer_proposal,
    trends_list,
)
from arbridge.sync.model import Company, Customer
from arbridge.sync.store import company_today, log_activity
from arbridge.web.common import company_required, db, get_or_404, runtime

bp = Blueprint("insight", __name__, url_prefix="/c/<slug>")
log = logging.getLogger(__name__)


def _today(company: Company) -> date:
    return company_today(company, runtime().clock)


def dashboard_insight(company: Company, details: bool = False, lateness: bool = False) -> Shown:
    """Today's insight for the dashboard (with `details`, for the insight page; with `lateness`,
    each customer's lateness alone, for the forecast week's invoices list), as stored while
    nothing behind it changed (sync.insight_cache), once per request; a big company's stale one
    is shown as it was while the worker computes the current one."""
    wants = 2 if details else 1 if lateness else 0
    cached = g.get("dashboard_insight")
    if cached is None or cached[0] != company.id or wants > cached[1]:
        rt = runtime()
        found = shown(
            db(),
            company,
            _today(company),
            DEFAULT_PERIOD_DAYS,
            rt.clock.now(),
            rt.settings.insight_inline_invoices,
            details=details,
            lateness=lateness,
        )
        g.dashboard_insight = cached = (company.id, wants, found)
    return cached[2]


@bp.app_template_global()
def insight_note(company: Company) -> str | None:
    """What the page says of figures older than the data ("Figures as of 10:42 CST,
    updating…", on the business's clock, the zone named), or of none yet; None while they are
    current."""
    found = dashboard_insight(company)
    if found.found is None:
        return "Figures are being computed; they appear here in a minute or two."
    if not found.stale:
        return None
    at = found.found.computed_at
    if at is None or local_date(at, company.timezone) != _today(company):
        return f"Figures as of {day_text(found.found.as_of)}, updating…"
    return f"Figures as of {local_hour_text(at, company.timezone)}, updating…"


@bp.app_template_global()
def credit_warnings(company: Company) -> list[Any]:
    """The near_limit and over_limit flags, for the dashboard's warning."""
    found = dashboard_insight(company).found
    if found is None:
        return []
    return [f for f in found.flags if f.kind in ("near_limit", "over_limit")]


@bp.app_template_global()
def home_amount(company: Company, amount: Decimal) -> str:
    """A home-currency amount as the pages show money ($1,234.50)."""
    return Money(amount, company.home_currency).format()


@bp.app_template_global()
def home_minor(company: Company, minor: int) -> str:
    """Minor units of the home currency as the pages show money."""
    return Money.from_minor(minor, company.home_currency).format()


FLAG_LABELS = {
    "slowing": "Paying later",
    "partials_growing": "More partial payments",
    "near_limit": "Near credit limit",
    "over_limit": "Over credit limit",
}


@bp.app_template_global()
def flag_label(kind: str) -> str:
    return FLAG_LABELS.get(kind, kind)


bp.add_app_template_global(two_places, "two_places")


@bp.app_template_global()
def kpi_trend_rows(company: Company) -> list[Any]:
    """The KPIs of the last 12 calendar months, for the dashboard's trend chart."""
    found = dashboard_insight(company).found
    return [] if found is None else found.trends


@bp.app_template_global()
def insight_summary(company: Company) -> Snapshot | None:
    """The dashboard's: the forecast, the flags and how many raises are proposed (None: not
    computed yet)."""
    return dashboard_insight(company).found


@bp.get("/insight")
@company_required
def page(company: Company) -> Any:
    found = dashboard_insight(company, details=True).found
    data = None
    if found is not None and found.details is not None:
        data = found.details.insight(found, policy(company.settings))
    home = company.home_currency

    def money(minor: int | None) -> str:
        return "—" if minor is None else Money.from_minor(minor, home).format()

    def plain(minor: int) -> str:
        return str(Money.from_minor(minor, home).amount)

    return render_template(
        "insight.html",
        company=company,
        data=data,
        money=money,
        plain=plain,
        projected=None if data is None else two_places(data.forecast.projected_dso),
        as_of=_today(company) if found is None else found.as_of,
    )


def _customer(company: Company, customer_id: int) -> Customer:
    return get_or_404(Customer, customer_id, company)


@bp.post("/insight/customers/<int:customer_id>/limit/approve")
@company_required
def approve(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    customer = _customer(company, customer_id)
    today = _today(company)
    proposal = customer_proposal(s, company, customer.id, today)
    if proposal is None:
        flash(f"No higher limit is proposed for {customer.name} any more.", "error")
        return redirect(url_for("insight.page", slug=company.slug) + "#proposals")
    customer.credit_limit_minor = proposal.proposed_minor
    customer.limit_reviewed_on = today
    text = Money.from_minor(proposal.proposed_minor, company.home_currency).format()
    log_activity(
        s,
        rt.clock,
        company.id,
        "credit_limit.approved",
        f"Credit limit of {customer.name} raised to {text}",
        customer_id=customer.id,
        limit_minor=proposal.proposed_minor,
        previous_minor=proposal.limit_minor,
    )
    s.commit()
    flash(f"{customer.name}'s credit limit is now {text}.", "ok")
    return redirect(url_for("insight.page", slug=company.slug) + "#proposals")


@bp.post("/insight/customers/<int:customer_id>/limit/decline")
@company_required
def decline(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    customer = _customer(company, customer_id)
    today = _today(company)
    if customer_proposal(s, company, customer.id, today) is None:
        flash(f"No higher limit is proposed for {customer.name} any more.", "error")
        return redirect(url_for("insight.page", slug=company.slug) + "#proposals")
    # The next proposal needs a new run of on-time payments after today.
    customer.limit_reviewed_on = today
    log_activity(
        s,
        rt.clock,
        company.id,
        "credit_limit.declined",
        f"Higher credit limit for {customer.name} declined",
        customer_id=customer.id,
    )
    s.commit()
    flash(f"{customer.name}'s credit limit stays as it is.", "ok")
    return redirect(url_for("insight.page", slug=company.slug) + "#proposals")


@bp.post("/insight/customers/<int:customer_id>/limit")
@company_required
def set_limit(company: Company, customer_id: int) -> Any:
    """The owner sets a customer's limit (empty: the company's default applies)."""
    rt, s = runtime(), db()
    customer = _customer(company, customer_id)
    raw = (request.form.get("limit") or "").strip()
    try:
        amount = parse_decimal(raw, places=exponent(company.home_currency)) if raw else None
        if amount is not None and not Decimal(0) <= amount <= Decimal(10) ** 12:
            raise InputError("the limit is an amount from 0 to 1000000000000")
        minor = None if amount is None else Money.rounded(amount, company.home_currency).minor
    except (InputError, ArbridgeError, ArithmeticError, ValueError) as e:
        log.info("refused a credit limit for customer %s: %s", customer.id, e)
        flash(f"{customer.name}: {e}", "error")
        return redirect(url_for("insight.page", slug=company.slug) + "#limits")
    customer.credit_limit_minor = minor
    shown = (
        "the default" if minor is None else Money.from_minor(minor, company.home_currency).format()
    )
    log_activity(
        s,
        rt.clock,
        company.id,
        "credit_limit.set",
        f"Credit limit of {customer.name} set to {shown}",
        customer_id=customer.id,
        limit_minor=minor,
    )
    s.commit()
    flash(f"{customer.name}'s credit limit is now {shown}.", "ok")
    return redirect(url_for("insight.page", slug=company.slug) + "#limits")


# CSV exports of every table: aging by customer, flagged customers, forecast, KPIs by month.
EXPORTS = ("aging-by-customer", "flagged-customers", "forecast", "kpis-by-month")


def _csv(company: Company, name: str, text: str) -> Any:
    filename = f"{company.slug}-{name}-{_today(company).isoformat()}.csv"
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/export/<name>.csv")
@company_required
def export(company: Company, name: str) -> Any:
    if name not in EXPORTS:
        abort(404)
    s, today = db(), _today(company)
    home = company.home_currency
    found = dashboard_insight(company, details=True).found
    if found is None or found.details is None:
        flash("The figures are being computed: download them again in a minute or two.", "error")
        return redirect(url_for("insight.page", slug=company.slug))
    if name == "kpis-by-month":
        header = ["Month", "Start", "End", "Days", *KPI_FIELDS]
        rows = [
            [m["month"], m["start"], m["end"], m["days"], *(m[k] for k in KPI_FIELDS)]
            for m in trends_list(found.trends)
        ]
        return _csv(company, name, to_csv(header, rows))
    data = found.details.insight(found, policy(company.settings))
    if name == "forecast":
        fc = data.forecast
        rows = [
            [f"Week {i}", w.start.isoformat(), w.end.isoformat(), w.amount]
            for i, w in enumerate(fc.weeks, 1)
        ]
        rows.append(["Later", (fc.weeks[-1].end + timedelta(days=1)).isoformat(), "", fc.later])
        header = ["Week", "Start", "End", f"Expected ({home})"]
        return _csv(company, name, to_csv(header, rows))
    if name == "flagged-customers":
        header = ["Customer", "Ledger id", "Payment terms", "Flag", "Reason"]
        rows = [
            [f.customer, f.customer_id, data.customers[f.id].terms, f.kind, f.reason]
            for f in data.flags
        ]
        return _csv(company, name, to_csv(header, rows))
    aging = aging_by_customer(s, company, today)
    header = [
        "Customer",
        "Ledger id",
        "Payment terms",
        *(f"{label} ({home})" for label in BUCKET_LABELS.values()),
        f"Total ({home})",
        "Open invoices",
    ]
    ordered = sorted(aging.items(), key=lambda kv: (-kv[1].open_balance.amount, kv[0]))
    rows = []
    for cid, a in ordered:
        c = data.customers.get(cid)
        rows.append(
            [
                c.name if c else "",
                c.source_id if c else "",
                c.terms if c else "",
                *(a.buckets[b].amount for b in BUCKET_LABELS),
                a.open_balance.amount,
                a.open_invoices,
            ]
        )
    return _csv(company, name, to_csv(header, rows))
