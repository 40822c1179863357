"""The owner's pages: dashboard, invoices, settings. Every route is scoped to the user's company."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from arbridge.collections.aging import BUCKET_LABELS
from arbridge.collections.plans import standard_agreement
from arbridge.collections.policy import PLAN_FREQUENCIES, merged, policy
from arbridge.errors import ArbridgeError
from arbridge.readmodels import owner as owner_reads
from arbridge.services.reminders.rendering import statement_link_days
from arbridge.sync.model import Company, Invoice
from arbridge.sync.runner import sync_connection
from arbridge.sync.schedule import reschedule
from arbridge.sync.store import (
    aging_report,
    company_today,
    issue_pay_token,
    ledger_connection,
    log_activity,
    recent_activity,
)
from arbridge.web.common import company_required, db, get_or_404, page_arg, runtime
from arbridge.web.forms import CompanyForm, PaymentsForm, PlansForm, RemindersForm

bp = Blueprint("owner", __name__, url_prefix="/c/<slug>")
PAGE_SIZE = 100


@bp.app_template_global()
def nav_counts(company: Company) -> dict[str, int]:
    """The navigation's counts (calls to make, replies waiting): one query per page."""
    return owner_reads.nav_counts(db(), company.id)


@bp.get("/")
@company_required
def dashboard(company: Company) -> Any:
    s = db()
    today = company_today(company, runtime().clock)
    selected = request.args.get("bucket")
    if selected not in BUCKET_LABELS:
        selected = None
    page = owner_reads.open_invoices_page(
        s, company, today, aging_bucket=selected, page=page_arg(PAGE_SIZE), page_size=PAGE_SIZE
    )
    return render_template(
        "dashboard.html",
        company=company,
        aging=aging_report(s, company, today),
        rows=page.rows,
        labels=BUCKET_LABELS,
        selected=selected,
        pages={"page": page.page, "prev": page.prev, "next": page.next},
        connection=ledger_connection(s, company.id),
        activity=recent_activity(s, company.id, limit=10),
    )


@bp.get("/invoices/<int:invoice_id>")
@company_required
def invoice(company: Company, invoice_id: int) -> Any:
    inv = get_or_404(Invoice, invoice_id, company)
    today = company_today(company, runtime().clock)
    return render_template(
        "invoice.html", company=company, row=owner_reads.invoice_row(inv, company, today), inv=inv
    )


@bp.post("/invoices/<int:invoice_id>/pay-link")
@company_required
def pay_link(company: Company, invoice_id: int) -> Any:
    rt, s = runtime(), db()
    inv = get_or_404(Invoice, invoice_id, company)
    token = issue_pay_token(s, rt.clock, inv)
    log_activity(
        s,
        rt.clock,
        company.id,
        "pay_link.created",
        f"Payment link created for invoice {inv.number}",
        invoice_id=inv.id,
    )
    s.commit()
    link = f"{rt.settings.base_url}/pay/{token}"
    today = company_today(company, rt.clock)
    return render_template(
        "invoice.html",
        company=company,
        row=owner_reads.invoice_row(inv, company, today),
        inv=inv,
        link=link,
    )


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
            flash(f"Synced with your ledger: {changed} change(s).", "ok")
    return redirect(url_for("owner.settings", slug=company.slug) + "#connections")


def _forms(company: Company) -> dict[str, Any]:
    stored = merged(company.settings)
    pol = policy(company.settings)
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
        "stored": stored,
        "policy_problems": pol.problems,
        "standard_agreement": standard_agreement(company.name),
    }


def _render_settings(company: Company, forms: dict[str, Any], status: int = 200) -> Any:
    s = db()
    errors, error_count = owner_reads.unresolved_sync_errors(s, company.id, limit=20)
    return render_template(
        "settings.html",
        company=company,
        connection=ledger_connection(s, company.id),
        sync_errors=errors,
        sync_error_count=error_count,
        **forms,
    ), status


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
    }
    if section not in names:
        abort(404)
    form = {
        "company": CompanyForm,
        "reminders": RemindersForm,
        "payments": PaymentsForm,
        "plans": PlansForm,
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
    return redirect(url_for("owner.settings", slug=company.slug) + f"#{section}")
