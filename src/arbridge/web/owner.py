"""The owner's pages: dashboard, invoices, settings. Every route is scoped to the user's company."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from arbridge.collections.aging import BUCKET_LABELS
from arbridge.collections.late_fees import late_fee_policy, policy_in_words, with_base_rate
from arbridge.collections.plans import standard_agreement
from arbridge.collections.policy import PLAN_FREQUENCIES, merged, policy
from arbridge.errors import ArbridgeError
from arbridge.readmodels import delivery as delivery_reads
from arbridge.readmodels import fees as fee_reads
from arbridge.readmodels import owner as owner_reads
from arbridge.readmodels.timeline import invoice_timeline
from arbridge.services.documents.logo import LogoRefused, set_logo
from arbridge.services.reminders.rendering import statement_link_days
from arbridge.sync import pay_links
from arbridge.sync.model import Company, Invoice, InvoiceHold
from arbridge.sync.runner import sync_connection
from arbridge.sync.schedule import reschedule
from arbridge.sync.store import (
    aging_report,
    company_today,
    ledger_connection,
    log_activity,
    recent_activity,
)
from arbridge.web.common import can, company_required, db, get_or_404, page_arg, runtime
from arbridge.web.forms import (
    CompanyForm,
    CreditForm,
    DeliveryForm,
    LateFeesForm,
    PaymentsForm,
    PlansForm,
    RemindersForm,
)
from arbridge.wording import counted

bp = Blueprint("owner", __name__, url_prefix="/c/<slug>")
log = logging.getLogger(__name__)
PAGE_SIZE = 100


@bp.app_template_global()
def nav_counts(company: Company) -> dict[str, int]:
    """The navigation's counts (calls to make, replies waiting): one query per page (the
    dashboard's call list line reads them too)."""
    found = g.get("nav_counts")
    if found is None or found[0] != company.id:
        today = company_today(company, runtime().clock)
        g.nav_counts = found = (company.id, owner_reads.nav_counts(db(), company.id, today))
    return found[1]


@bp.get("/")
@company_required
def dashboard(company: Company) -> Any:
    s = db()
    today = company_today(company, runtime().clock)
    selected = request.args.get("bucket")
    if selected not in BUCKET_LABELS:
        selected = None
    try:
        after, before = (
            owner_reads.parse_cursor(raw) if raw else None
            for raw in (request.args.get("after"), request.args.get("before"))
        )
    except ValueError:
        abort(404)
    page = owner_reads.open_invoices_page(
        s,
        company,
        today,
        aging_bucket=selected,
        page=page_arg(PAGE_SIZE),
        page_size=PAGE_SIZE,
        after=after,
        before=before,
    )
    return render_template(
        "dashboard.html",
        company=company,
        aging=aging_report(s, company, today),
        rows=page.rows,
        labels=BUCKET_LABELS,
        selected=selected,
        pages={
            "page": page.page,
            "prev": page.prev,
            "next": page.next,
            "first": page.first,
            "last": page.last,
        },
        connection=ledger_connection(s, company.id),
        activity=recent_activity(s, company.id, limit=10),
        unsent=delivery_reads.unsent_invoices(s, company.id),
    )


@bp.get("/invoices/<int:invoice_id>")
@company_required
def invoice(company: Company, invoice_id: int) -> Any:
    rt = runtime()
    inv = get_or_404(Invoice, invoice_id, company)
    today = company_today(company, rt.clock)
    link = None
    if inv.is_open and can("owner.pay_link"):
        token = pay_links.shown_link(db(), rt.keyring, inv, rt.clock.now())
        link = f"{rt.settings.base_url}/pay/{token}" if token else None
    return render_template(
        "invoice.html",
        company=company,
        row=owner_reads.invoice_row(inv, company, today),
        inv=inv,
        timeline=invoice_timeline(db(), company, inv),
        link=link,
        **_invoice_fees(company, inv),
    )


def _invoice_fees(company: Company, inv: Invoice) -> dict[str, Any]:
    """The invoice's late fees and interest, and whether its customer is exempt."""
    s = db()
    return {
        "fee_charges": fee_reads.charges(s, company.id, invoice_id=inv.id),
        "fees_exempt": fee_reads.is_exempt(s, inv.customer_id),
        "fees_on": late_fee_policy(company.settings).charges_anything,
        "live_holds": s.scalars(
            select(InvoiceHold).where(
                InvoiceHold.invoice_id == inv.id, InvoiceHold.resolved_at.is_(None)
            )
        ).all(),
    }


@bp.post("/invoices/<int:invoice_id>/pay-link")
@company_required
def pay_link(company: Company, invoice_id: int) -> Any:
    """Create the invoice's payment link, or keep the live one created here before (a second
    click adds no link), then back to the invoice page, which shows it on every visit."""
    rt, s = runtime(), db()
    inv = get_or_404(Invoice, invoice_id, company)
    _, created = pay_links.owner_link(s, rt.clock, rt.keyring, inv)
    if created:
        log_activity(
            s,
            rt.clock,
            company.id,
            "pay_link.created",
            f"Payment link created for invoice {inv.number}",
            invoice_id=inv.id,
        )
    s.commit()
    flash("Payment link created." if created else "This invoice's payment link is below.", "ok")
    url = url_for("owner.invoice", slug=company.slug, invoice_id=inv.id)
    return redirect(url + "#payment-link", code=303)


@bp.post("/sync")
@company_required
def sync_now(company: Company) -> Any:
    rt, s = runtime(), db()
    conn = ledger_connection(s, company.id)
    if conn is None:
        flash("Connect a ledger first.", "error")
    else:
        s.close()
        try:
            result = sync_connection(rt.sessions, conn.id, rt.connector_for(conn), rt.clock)
        except ArbridgeError as e:
            flash(f"Sync failed: {e}", "error")
        else:
            changed = sum(result.upserted.values()) + sum(result.deleted.values())
            flash(f"Synced with your ledger: {counted(changed, 'change')}.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#connections")


def _forms(company: Company) -> dict[str, Any]:
    stored = merged(company.settings)
    pol = policy(company.settings)
    fees = late_fee_policy(company.settings)
    return {
        "company_form": CompanyForm(
            prefix="company",
            data={
                "name": company.name,
                "timezone": company.timezone,
                "sync_interval_minutes": company.sync_interval_minutes,
            },
        ),
        "reminders_form": RemindersForm(
            prefix="reminders",
            data={
                "reminders_enabled": pol.reminders_enabled,
                "collections_hour": company.collections_hour,
                "max_per_week": pol.max_reminders_per_week,
                "statement_link_days": statement_link_days(company),
            },
        ),
        "payments_form": PaymentsForm(
            prefix="payments",
            data={
                "accept_card": pol.accept_card,
                "accept_ach": pol.accept_ach,
                "discount_percent": pol.discount_percent,
                "discount_days": pol.discount_days,
            },
        ),
        "plans_form": PlansForm(
            prefix="plans",
            data={
                "plans_enabled": pol.plans_enabled,
                "plan_min_balance": pol.plan_min_balance,
                "plan_max_installments": str(pol.plan_max_installments),
                "plan_frequencies": list(pol.plan_frequencies),
                "plan_deposit_percent": pol.plan_deposit_percent,
                "plan_fee_amount": pol.plan_fee_amount,
                "plan_fee_percent": pol.plan_fee_percent,
                "plan_good_standing_only": pol.plan_good_standing_only,
                "plan_good_standing_days": pol.plan_good_standing_days,
                "plan_agreement_text": pol.plan_agreement_text or "",
            },
        ),
        "late_fees_form": LateFeesForm(
            prefix="late_fees",
            data={
                "late_fees_enabled": fees.enabled,
                "late_fee_preset": fees.preset,
                "late_fee_grace_days": fees.grace_days,
                "late_fee_flat": fees.flat_fee,
                "late_fee_percent": fees.fee_percent,
                "late_fee_annual_rate": fees.annual_rate,
                "late_fee_cap": fees.cap,
                "late_fee_min_balance": fees.min_balance,
                # Offered only while fees are on: turned on again, they start from that day.
                "late_fee_charge_from": fees.charge_from if fees.enabled else None,
                "late_fee_base_rate": fees.base_rates[-1][1] if fees.base_rates else None,
                "late_fee_base_rate_on": fees.base_rates[-1][0] if fees.base_rates else None,
                "late_fee_quickbooks_item": stored["late_fees"].get("quickbooks_item_id") or "",
                "late_fee_xero_account": stored["late_fees"].get("xero_account_code") or "",
            },
        ),
        "late_fees_policy": fees,
        "late_fees_words": policy_in_words(fees, company.home_currency),
        "credit_form": CreditForm(
            prefix="credit",
            data={
                "credit_default_limit": pol.credit_default_limit,
                "credit_on_time_run": pol.credit_on_time_run,
                "credit_raise_percent": pol.credit_raise_percent,
            },
        ),
        "delivery_form": DeliveryForm(
            prefix="delivery", data={"auto_send": stored["delivery"].get("auto_send") is True}
        ),
        "stored": stored,
        "policy_problems": pol.problems + fees.problems,
        "standard_agreement": standard_agreement(company.name),
    }


def _late_fees(saved: dict[str, Any], form: LateFeesForm, today: date) -> dict[str, Any]:
    """The "late_fees" settings from the form; the base rate joins its history (each value with
    the day it took effect), so invoices overdue earlier keep the rate of their own half-year.

    `charge_from`: the day the owner gives; left empty, the business's today when fees are turned
    on (so old invoices are not back-charged), the saved day while they stay on (a policy saved
    before the day existed keeps none: its old meaning), none while they are off (turned on
    again, they start from that day's today)."""

    def text(value: Decimal | None) -> str | None:
        return str(value) if value else None

    rates = saved.get("base_rates") or []
    if form.late_fee_base_rate.data is not None and form.late_fee_base_rate_on.data is not None:
        rates = with_base_rate(rates, form.late_fee_base_rate_on.data, form.late_fee_base_rate.data)
    enabled = form.late_fees_enabled.data
    charge_from = form.late_fee_charge_from.data if enabled else None
    if charge_from is None and enabled:
        # "On" as the rules read it: an unreadable saved day had turned fees off.
        was_on = late_fee_policy({"late_fees": saved}).enabled
        charge_from = saved.get("charge_from") if was_on else today.isoformat()
    return {
        **saved,
        "enabled": enabled,
        "charge_from": charge_from.isoformat() if isinstance(charge_from, date) else charge_from,
        "preset": form.late_fee_preset.data,
        "grace_days": form.late_fee_grace_days.data or 0,
        "flat_fee": text(form.late_fee_flat.data),
        "fee_percent": text(form.late_fee_percent.data),
        "annual_rate": text(form.late_fee_annual_rate.data),
        "cap": str(form.late_fee_cap.data) if form.late_fee_cap.data is not None else None,
        "min_balance": text(form.late_fee_min_balance.data),
        "base_rates": rates,
        "quickbooks_item_id": (form.late_fee_quickbooks_item.data or "").strip() or None,
        "xero_account_code": (form.late_fee_xero_account.data or "").strip() or None,
    }


def _delivery(saved: dict[str, Any], auto_send: bool, company: Company) -> dict[str, Any]:
    """Automatic sending from today on: the invoices already there wait for the owner's own
    Send on the dashboard, so turning it on never sends a backlog at once."""
    if not auto_send:
        return {**saved, "auto_send": False, "auto_send_since": None}
    since = saved.get("auto_send_since") if saved.get("auto_send") is True else None
    today = company_today(company, runtime().clock)
    return {**saved, "auto_send": True, "auto_send_since": since or today.isoformat()}


def _render_settings(company: Company, forms: dict[str, Any], status: int = 200) -> Any:
    s = db()
    errors, error_count = owner_reads.unresolved_sync_errors(s, company.id, limit=20)
    return render_template(
        "settings.html",
        company=company,
        connection=ledger_connection(s, company.id),
        sync_errors=errors,
        sync_error_count=error_count,
        fee_charges=fee_reads.charges(s, company.id, limit=100),
        fee_exempt=fee_reads.exempt_customers(s, company.id),
        logo_size=s.scalar(select(func.length(Company.logo)).where(Company.id == company.id)),
        **forms,
    ), status


@bp.post("/settings/logo")
@company_required
def save_logo(company: Company) -> Any:
    """The logo on the business's PDF documents: a PNG or JPEG up to 512 KB, checked here."""
    upload = request.files.get("logo")
    data = b""
    if upload:
        with upload.stream:  # a large upload is spooled to a temporary file: closed here
            data = upload.read()
    try:
        set_logo(db(), company, data)
    except LogoRefused as e:
        log.info("company %s: logo refused: %s", company.id, e)
        flash(str(e), "error")
        return _render_settings(company, _forms(company), status=400)
    log_activity(db(), runtime().clock, company.id, "settings.logo", "Logo uploaded")
    db().commit()
    flash("Logo saved: it appears on your statements and letters.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#business")


@bp.post("/settings/logo/remove")
@company_required
def remove_logo(company: Company) -> Any:
    set_logo(db(), company, None)
    log_activity(db(), runtime().clock, company.id, "settings.logo", "Logo removed")
    db().commit()
    flash("Logo removed.", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#business")


@bp.get("/settings")
@company_required
def settings(company: Company) -> Any:
    return _render_settings(company, _forms(company))


@bp.post("/settings/<section>")
@company_required
def save_settings(company: Company, section: str) -> Any:
    rt, s = runtime(), db()
    forms = _forms(company)
    names = {
        "company": "company_form",
        "reminders": "reminders_form",
        "payments": "payments_form",
        "plans": "plans_form",
        "late_fees": "late_fees_form",
        "credit": "credit_form",
        "delivery": "delivery_form",
    }
    if section not in names:
        abort(404)
    form = {
        "company": CompanyForm,
        "reminders": RemindersForm,
        "payments": PaymentsForm,
        "plans": PlansForm,
        "late_fees": LateFeesForm,
        "credit": CreditForm,
        "delivery": DeliveryForm,
    }[section](prefix=section)
    forms[names[section]] = form
    if not form.validate():
        flash("Please correct the highlighted fields.", "error")
        return _render_settings(company, forms, status=400)
    stored = dict(company.settings or {})
    if section == "company":
        company.name = form.name.data.strip()
        company.timezone = form.timezone.data
        company.sync_interval_minutes = form.sync_interval_minutes.data
    elif section == "reminders":
        company.collections_hour = form.collections_hour.data
        stored["reminders"] = {
            # Keep the sequence, wording and window saved on the reminders page.
            **(stored.get("reminders") or {}),
            "enabled": form.reminders_enabled.data,
            "max_per_week": form.max_per_week.data,
            "statement_link_days": form.statement_link_days.data,
        }
    elif section == "payments":
        pct = form.discount_percent.data
        stored["payments"] = {
            "accept_card": form.accept_card.data,
            "accept_ach": form.accept_ach.data,
            "discount_percent": str(pct) if pct else None,
            "discount_days": form.discount_days.data if pct else None,
        }
    elif section == "late_fees":
        today = company_today(company, rt.clock)
        stored["late_fees"] = _late_fees(stored.get("late_fees") or {}, form, today)
    elif section == "delivery":
        stored["delivery"] = _delivery(stored.get("delivery") or {}, form.auto_send.data, company)
    elif section == "credit":
        limit = form.credit_default_limit.data
        stored["credit"] = {
            "default_limit": None if limit is None else str(limit),
            "on_time_run": form.credit_on_time_run.data,
            "raise_percent": str(form.credit_raise_percent.data),
        }
    else:
        fee, fee_percent = form.plan_fee_amount.data, form.plan_fee_percent.data
        agreement_text = (form.plan_agreement_text.data or "").strip()
        stored["plans"] = {
            **(stored.get("plans") or {}),
            "enabled": form.plans_enabled.data,
            "min_balance": str(form.plan_min_balance.data or Decimal(0)),
            "max_installments": int(form.plan_max_installments.data),
            "frequencies": [f for f in PLAN_FREQUENCIES if f in form.plan_frequencies.data],
            "deposit_percent": str(form.plan_deposit_percent.data or Decimal(0)),
            "fee_amount": str(fee) if fee else None,
            "fee_percent": str(fee_percent) if fee_percent else None,
            "good_standing_only": form.plan_good_standing_only.data,
            "good_standing_days": form.plan_good_standing_days.data or 30,
            # Empty: the stock text, which names the business (collections/plans.py).
            "agreement_text": agreement_text or None,
        }
    company.settings = stored
    if section in ("company", "reminders"):
        reschedule(s, company, rt.clock.now())
    log_activity(s, rt.clock, company.id, "settings.changed", f"Settings changed: {section}")
    s.commit()
    flash("Settings saved.", "ok")
    # Back at the section saved (the company's is the page's "business" section).
    anchor = "business" if section == "company" else section
    return redirect(url_for("owner.settings", slug=company.slug) + f"#{anchor}")
