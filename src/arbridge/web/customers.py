"""The owner's customers: the list (balance, overdue, last payment, lateness, flags; sortable,
searchable, paged, as CSV) and a customer's page (contacts, invoices, messages and replies,
payments, sequence, do-not-chase, plans). Every route is scoped to the user's company."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from arbridge.clock import place_timezones, timezone_names
from arbridge.collections.insight import Flag
from arbridge.collections.kpis import two_places
from arbridge.collections.reminder_policy import SequenceError, reminder_policy
from arbridge.collections.reminders import Route
from arbridge.collections.sms import recipient_zone
from arbridge.money import Money
from arbridge.readmodels import customers as reads
from arbridge.readmodels.plans import company_plans
from arbridge.services.messaging.sms_setup import update_phone
from arbridge.services.reminders.facts import customer_route
from arbridge.sync.insight_store import customers as insight_customers
from arbridge.sync.model import CONTACT_CHANNELS, Company, Contact, Customer
from arbridge.sync.store import company_today, log_activity
from arbridge.web.common import company_required, db, get_or_404, id_arg, page_arg, runtime
from arbridge.web.csv_export import csv_response
from arbridge.web.insight import dashboard_insight

bp = Blueprint("customers", __name__, url_prefix="/c/<slug>")
log = logging.getLogger(__name__)
PAGE_SIZE = 50
MAX_EMAIL = 254
MAX_PHONE = 40
MAX_NOTE = 4000
PHONE_CHARS = set("0123456789 +-().")


def _list_args() -> dict[str, Any]:
    sort = request.args.get("sort") or "name"
    if sort not in reads.SORTS:
        sort = "name"
    return {
        "search": (request.args.get("q") or "").strip()[: reads.MAX_SEARCH] or None,
        "sort": sort,
        "descending": request.args.get("dir") == "desc",
    }


@bp.get("/customers")
@company_required
def customers_list(company: Company) -> Any:
    args = _list_args()
    today = company_today(company, runtime().clock)
    flags = _flags(company)
    found = reads.customers_page(
        db(),
        company,
        today,
        page=page_arg(PAGE_SIZE),
        page_size=PAGE_SIZE,
        flag_counts=Counter(f.id for f in flags),
        **args,
    )
    found = replace(found, rows=_flagged(found.rows, flags))
    return render_template(
        "customers.html", company=company, found=found, today=today, sorts=reads.SORTS, **args
    )


def _flags(company: Company) -> list[Flag]:
    """Today's insight flags (slowing, partials_growing, near_limit, over_limit), as the
    dashboard shows them; none while the insight is being computed."""
    found = dashboard_insight(company).found
    return [] if found is None else list(found.flags)


def _flagged(rows: list[reads.CustomerRow], flags: list[Flag]) -> list[reads.CustomerRow]:
    by_customer: dict[int, list[Flag]] = {}
    for f in flags:
        by_customer.setdefault(f.id, []).append(f)
    return [replace(r, insight_flags=tuple(by_customer.get(r.customer.id, ()))) for r in rows]


@bp.get("/customers.csv")
@company_required
def customers_csv(company: Company) -> Any:
    today = company_today(company, runtime().clock)
    flags = _flags(company)
    rows = _flagged(
        reads.customers_export(
            db(), company, today, flag_counts=Counter(f.id for f in flags), **_list_args()
        ),
        flags,
    )
    return csv_response(
        f"customers-{company.slug}-{today.isoformat()}.csv",
        [
            "Customer",
            "Currency",
            f"Balance ({company.home_currency})",
            f"Overdue ({company.home_currency})",
            "Open invoices",
            "Last payment",
            "Days late (average, last 365 days)",
            "Flags",
            "Days to pay (average, last 365 days)",
            "On-time rate (last 365 days)",
            f"Credit limit ({company.home_currency})",
        ],
        (
            [
                r.customer.name,
                r.customer.currency or "",
                r.balance.amount,
                r.overdue.amount,
                r.open_invoices,
                r.last_payment.isoformat() if r.last_payment else "",
                r.lateness,
                "; ".join([*r.flags, *(f"{f.kind}: {f.reason}" for f in r.insight_flags)]),
                "" if r.days_to_pay is None else two_places(r.days_to_pay),
                "" if r.on_time_rate is None else two_places(r.on_time_rate),
                ""
                if r.limit_minor is None
                else Money.from_minor(r.limit_minor, company.home_currency).amount,
            ]
            for r in rows
        ),
    )


@bp.get("/customers/<int:customer_id>")
@company_required
def customer(company: Company, customer_id: int) -> Any:
    s, rt = db(), runtime()
    cust = get_or_404(Customer, customer_id, company)
    today = company_today(company, rt.clock)
    route = customer_route(s, rt, company, cust)
    d = reads.customer_detail(s, company, cust, today)
    d = replace(d, row=_flagged([d.row], _flags(company))[0])
    terms = insight_customers(s, company, cust.id)
    try:
        sequence_names = sorted(reminder_policy(company.settings).sequences)
    except SequenceError:
        sequence_names = ["default"]
    return render_template(
        "customer.html",
        company=company,
        cust=cust,
        d=d,
        terms=terms[0].terms if terms else None,
        history=reads.customer_history(s, company.id, cust.id),
        channels=CONTACT_CHANNELS,
        plans=company_plans(s, company.id, customer_id=cust.id),
        sequence_names=sequence_names,
        timezones=place_timezones(),
        today=today,
        route=route,
        route_zone=_route_zone(route, cust, company),
        now=rt.clock.now(),
    )


def _route_zone(route: Route, cust: Customer, company: Company) -> str:
    """The zone whose hours the customer's reminders arrive in: the contact's, the customer's,
    for a text the number's (where it has one), else the business's."""
    own = (route.contact.timezone if route.contact else None) or cust.timezone
    if route.channel == "sms" and route.contact is not None:
        return str(recipient_zone(own, route.contact.phone, company.timezone))
    return own or company.timezone


def _back(company: Company, cust: Customer, anchor: str) -> Any:
    return redirect(
        url_for("customers.customer", slug=company.slug, customer_id=cust.id) + anchor, code=303
    )


@bp.post("/customers/<int:customer_id>/contact")
@company_required
def save_contact(company: Company, customer_id: int) -> Any:
    """A contact's email, phone, preferred channel and timezone as the owner sets them. arbridge does not
    write contacts back to the ledger; the owner's values are kept over every later sync."""
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    contact = get_or_404(Contact, id_arg(request.form.get("contact_id")), company)
    if contact.customer_id != cust.id:
        abort(404)
    email = (request.form.get("email") or "").strip()
    phone = (request.form.get("phone") or "").strip()
    channel = (request.form.get("preferred_channel") or "").strip()
    zone = (request.form.get("timezone") or "").strip()
    if email and (
        len(email) > MAX_EMAIL or email.count("@") != 1 or any(c.isspace() for c in email)
    ):
        log.info("contact %s: refused an email address", contact.id)
        flash("That email address does not look right (name@example.com).", "error")
        return _back(company, cust, "#contacts")
    if phone and (len(phone) > MAX_PHONE or not set(phone) <= PHONE_CHARS):
        log.info("contact %s: refused a phone number", contact.id)
        flash("A phone number has digits, spaces and + - ( ) . only, at most 40.", "error")
        return _back(company, cust, "#contacts")
    if channel and channel not in CONTACT_CHANNELS:
        log.info("contact %s: refused a preferred channel", contact.id)
        flash("Choose how they prefer to be reached from the list.", "error")
        return _back(company, cust, "#contacts")
    if zone and zone not in timezone_names():
        log.info("contact %s: refused timezone %r", contact.id, zone[:64])
        flash("Choose a timezone from the list.", "error")
        return _back(company, cust, "#contacts")
    contact.set_by_owner(email, phone)
    contact.preferred_channel = channel or None
    contact.timezone = zone or None
    update_phone(s, contact)  # stored in E.164 again, for texts
    log_activity(
        s,
        rt.clock,
        company.id,
        "customer.contact_changed",
        f"{cust.name}: contact {contact.name or contact.email or contact.id} changed",
        customer_id=cust.id,
    )
    s.commit()
    flash("Contact saved.", "ok")
    return _back(company, cust, "#contacts")


@bp.post("/customers/<int:customer_id>/notes")
@company_required
def add_note(company: Company, customer_id: int) -> Any:
    """The owner's note on a customer, kept in the customer's history with who and when."""
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    note = (request.form.get("note") or "").strip()
    if not note or len(note) > MAX_NOTE:
        log.info("customer %s: refused a note of %d characters", cust.id, len(note))
        flash(f"A note has some text, at most {MAX_NOTE} characters.", "error")
        return _back(company, cust, "#history")
    log_activity(s, rt.clock, company.id, "customer.note", note, customer_id=cust.id)
    s.commit()
    flash("Note added.", "ok")
    return _back(company, cust, "#history")


@bp.post("/customers/<int:customer_id>/timezone")
@company_required
def save_timezone(company: Company, customer_id: int) -> Any:
    """The customer's timezone: reminders go out in their morning (empty: the business's)."""
    rt, s = runtime(), db()
    cust = get_or_404(Customer, customer_id, company)
    zone = (request.form.get("timezone") or "").strip()
    if zone and zone not in timezone_names():
        log.info("customer %s: refused timezone %r", cust.id, zone[:64])
        flash("Choose a timezone from the list.", "error")
        return _back(company, cust, "#contacts")
    cust.timezone = zone or None
    log_activity(
        s,
        rt.clock,
        company.id,
        "customer.timezone_changed",
        f"{cust.name}: timezone {zone or 'the business’s'}",
        customer_id=cust.id,
    )
    s.commit()
    flash("Timezone saved.", "ok")
    return _back(company, cust, "#contacts")
