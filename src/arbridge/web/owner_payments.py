"""The owner's side of getting paid: connect Stripe, see payments, refund an overpayment."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from arbridge.clock import local_date
from arbridge.errors import ArbridgeError
from arbridge.readmodels import payments as payment_reads
from arbridge.readmodels import stripe_status as readmodel
from arbridge.services.payments import refunds
from arbridge.services.payments.accounts import (
    StripeStatus,
    connect_with_key,
    disconnect_stripe,
    finish_onboarding,
    set_webhook_secret,
    start_onboarding,
    stripe_connection,
)
from arbridge.services.payments.events import STRIPE_EVENTS
from arbridge.services.payments.refunds import RefundStatus, refund_overpayment
from arbridge.services.reminders.rendering import statement_link_days
from arbridge.sync.model import COLLECTED_STATUSES, CollectedPayment, Company, Customer, Invoice
from arbridge.sync.store import issue_statement_token, log_activity, revoke_pay_tokens
from arbridge.web.common import (
    company_required,
    db,
    get_or_404,
    get_scoped,
    id_arg,
    page_arg,
    runtime,
)
from arbridge.wording import counted, verb

bp = Blueprint("owner_payments", __name__, url_prefix="/c/<slug>")
log = logging.getLogger(__name__)
PAGE_SIZE = 50
MAX_PAGES = 200


@bp.get("/payments")
@company_required
def payments_page(company: Company) -> Any:
    """Every payment collected through arbridge: state, method, customer, invoices, ledger
    write-back and refunds; by state or customer (`?status=`, `?customer=<id>`), paged."""
    status = request.args.get("status") or None
    if status not in COLLECTED_STATUSES:
        status = None
    customer_id = id_arg(request.args.get("customer"))
    customer = get_or_404(Customer, customer_id, company) if customer_id is not None else None
    page = page_arg(PAGE_SIZE)
    if page > MAX_PAGES:
        abort(404)
    found = payment_reads.collected_page(
        db(),
        company.id,
        status=status,
        customer_id=customer.id if customer else None,
        page=page,
        page_size=PAGE_SIZE,
    )
    return render_template(
        "payments.html",
        company=company,
        found=found,
        status=status,
        statuses=COLLECTED_STATUSES,
        customer=customer,
        args={
            "slug": company.slug,
            "status": status,
            "customer": customer.id if customer else None,
        },
    )


@bp.app_template_global()
def stripe_status(company: Company) -> StripeStatus:
    """From the database only: a page never waits on Stripe while it renders."""
    return readmodel.stripe_status(runtime(), db(), company)


@bp.app_template_global()
def stripe_can_check(company: Company) -> bool:
    return readmodel.can_check(runtime(), db(), company)


@bp.app_template_global()
def recent_payments(
    company: Company, limit: int = 10
) -> list[tuple[CollectedPayment, Customer | None]]:
    return payment_reads.recent_payments(db(), company.id, limit)


@bp.app_template_global()
def refund_statuses(rows: list[CollectedPayment]) -> dict[int, RefundStatus]:
    """Every listed payment's refund status, in one query for the table."""
    return refunds.refund_statuses(db(), rows)


@bp.app_template_global()
def invoice_payments(invoice: Invoice) -> list[CollectedPayment]:
    return payment_reads.invoice_payments(db(), invoice)


@bp.app_template_global()
def stripe_events() -> tuple[str, ...]:
    return STRIPE_EVENTS


def _settings_url(company: Company) -> str:
    return url_for("owner.settings", slug=company.slug) + "#payments"


@bp.post("/stripe/key")
@company_required
def stripe_key(company: Company) -> Any:
    rt, s = runtime(), db()
    try:
        account = connect_with_key(rt, s, company, request.form.get("api_key", ""))
    except ArbridgeError as e:
        s.rollback()
        log.info("Stripe key refused for %s: %s", company.slug, e)
        flash(f"Stripe did not accept that key: {e}", "error")
    else:
        s.commit()
        flash(f"Stripe account {account} connected.", "ok")
        _check(company)
        conn = stripe_connection(s, company.id)
        if conn is not None and not conn.webhook_secret_encrypted:
            flash(
                "Stripe did not let arbridge create the webhook endpoint with this key: add it "
                "in Stripe and paste its signing secret below, or payments cannot be confirmed.",
                "error",
            )
    return redirect(_settings_url(company))


@bp.post("/stripe/connect")
@company_required
def stripe_connect(company: Company) -> Any:
    rt, s = runtime(), db()
    base = rt.settings.base_url
    try:
        url = start_onboarding(
            rt,
            s,
            company,
            return_url=f"{base}{url_for('owner_payments.stripe_return', slug=company.slug)}",
            refresh_url=f"{base}{_settings_url(company)}",
        )
    except ArbridgeError as e:
        s.rollback()
        flash(f"Could not start Stripe onboarding: {e}", "error")
        return redirect(_settings_url(company))
    s.commit()
    return redirect(url, code=303)


@bp.get("/stripe/return")
@company_required
def stripe_return(company: Company) -> Any:
    rt, s = runtime(), db()
    try:
        ready = finish_onboarding(rt, s, company)
    except ArbridgeError as e:
        flash(f"Could not check the Stripe account: {e}", "error")
        return redirect(_settings_url(company))
    s.commit()
    if ready:
        _check(company)
    flash(
        "Stripe is connected: customers can pay online."
        if ready
        else "Stripe needs a few more details before you can take payments.",
        "ok" if ready else "error",
    )
    return redirect(_settings_url(company))


def _check(company: Company) -> None:
    """Ask Stripe which payment methods are on now, for the settings page to show."""
    rt, s = runtime(), db()
    check = readmodel.check_with_stripe(rt, s, company)
    s.commit()
    if check is not None and check.error:
        flash(f"Stripe could not be reached: {check.error}", "error")


@bp.post("/stripe/check")
@company_required
def stripe_check(company: Company) -> Any:
    _check(company)
    return redirect(_settings_url(company))


@bp.post("/stripe/disconnect")
@company_required
def stripe_disconnect(company: Company) -> Any:
    rt, s = runtime(), db()
    problem = disconnect_stripe(rt, s, company)
    s.commit()
    flash("Stripe disconnected: payment links now show the balance without a Pay button.", "ok")
    if problem:
        flash(f"{problem.capitalize()}: delete it in your Stripe dashboard.", "error")
    return redirect(_settings_url(company))


@bp.post("/stripe/webhook-secret")
@company_required
def stripe_webhook_secret(company: Company) -> Any:
    rt, s = runtime(), db()
    try:
        set_webhook_secret(rt, s, company, request.form.get("webhook_secret", ""))
    except ArbridgeError as e:
        s.rollback()
        log.info("Stripe webhook secret refused for %s: %s", company.slug, e)
        flash(f"Signing secret not saved: {e}.", "error")
    else:
        s.commit()
        flash(
            "Signing secret saved: Stripe's events for your account will be verified with it.", "ok"
        )
    return redirect(_settings_url(company))


@bp.post("/payments/<int:payment_id>/refund")
@company_required
def refund(company: Company, payment_id: int) -> Any:
    rt, s = runtime(), db()
    try:
        amount = refund_overpayment(rt, s, company, payment_id)
    except ArbridgeError as e:
        s.rollback()
        if "no such payment" in str(e):
            abort(404)
        flash(str(e).capitalize() + ".", "error")
    else:
        s.commit()
        flash(
            f"Refund of {amount.format()} queued for Stripe: the payment shows when Stripe has "
            "it, or why it failed.",
            "ok",
        )
    back = request.form.get("invoice_id", "")
    if back.isascii() and back.isdigit() and len(back) < 19:
        inv = get_scoped(Invoice, int(back), company)
        if inv is not None:
            return redirect(url_for("owner.invoice", slug=company.slug, invoice_id=inv.id))
    return redirect(url_for("owner.dashboard", slug=company.slug) + "#payments")


@bp.post("/invoices/<int:invoice_id>/revoke-links")
@company_required
def revoke_links(company: Company, invoice_id: int) -> Any:
    rt, s = runtime(), db()
    inv = get_or_404(Invoice, invoice_id, company)
    count = revoke_pay_tokens(s, rt.clock, inv)
    log_activity(
        s,
        rt.clock,
        company.id,
        "pay_link.revoked",
        f"{counted(count, 'payment link')} revoked for invoice {inv.number}",
        invoice_id=inv.id,
    )
    s.commit()
    flash(
        f"{counted(count, 'payment link')} for this invoice no longer "
        f"{verb(count, 'works', 'work')}.",
        "ok",
    )
    return redirect(url_for("owner.invoice", slug=company.slug, invoice_id=inv.id))


@bp.post("/customers/<int:customer_id>/statement-link")
@company_required
def statement_link(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    customer = get_or_404(Customer, customer_id, company)
    days = statement_link_days(company)
    token = issue_statement_token(s, rt.clock, customer, days)
    log_activity(
        s,
        rt.clock,
        company.id,
        "pay_link.created",
        f"Statement link created for {customer.name}",
        customer_id=customer.id,
    )
    s.commit()
    invoices = payment_reads.customer_open_invoices(s, customer)
    return render_template(
        "statement_link.html",
        company=company,
        customer=customer,
        link=f"{rt.settings.base_url}/pay/{token}",
        invoices=invoices,
        # The day it stops working, in the business's timezone (not UTC's day).
        expires_on=local_date(rt.clock.now() + timedelta(days=days), company.timezone),
    )
