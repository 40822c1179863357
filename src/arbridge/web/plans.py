"""The owner's installment plans: the list (current, completed, defaulted, cancelled, with what
is due this week), one plan with its installments and acceptance, pause / resume / cancel,
moving an installment's date, a custom plan for one customer, the per-customer rule, and in the
demo only, the control that moves the demo's clock."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from arbridge.clock import DemoClock, local_text
from arbridge.collections import plans as rules
from arbridge.errors import ArbridgeError, NotFound
from arbridge.inputs import InputError, parse_day, parse_id, parse_int
from arbridge.readmodels.plans import by_status, company_plans, due_between
from arbridge.services.payments import plans as svc
from arbridge.sync.model import Company, Customer, CustomerReminderSettings, Invoice
from arbridge.sync.store import company_today
from arbridge.web.common import company_required, db, get_or_404, runtime, safe_next
from arbridge.wording import days_text

bp = Blueprint("plans", __name__, url_prefix="/c/<slug>")
log = logging.getLogger(__name__)


@bp.get("/plans")
@company_required
def plans_list(company: Company) -> Any:
    rt, s = runtime(), db()
    rows = company_plans(s, company.id)
    today = company_today(company, rt.clock)
    return render_template(
        "plans.html",
        company=company,
        groups=by_status(rows),
        due=due_between(rows, today, 7),
        today=today,
        demo=_demo_clock(),
    )


@bp.get("/plans/<int:plan_id>")
@company_required
def plan_detail(company: Company, plan_id: int) -> Any:
    rt, s = runtime(), db()
    rows = company_plans(s, company.id, plan_id=plan_id)
    if not rows:
        abort(404)
    row = rows[0]
    return render_template(
        "plan_detail.html",
        company=company,
        row=row,
        today=company_today(company, rt.clock),
        labels=rules.FREQUENCY_LABELS,
        demo=_demo_clock(),
    )


@bp.post("/plans/<int:plan_id>/pause", defaults={"action": "pause"})
@bp.post("/plans/<int:plan_id>/resume", defaults={"action": "resume"})
@bp.post("/plans/<int:plan_id>/cancel", defaults={"action": "cancel"})
@company_required
def plan_action(company: Company, plan_id: int, action: str) -> Any:
    try:
        message = svc.owner_change(runtime(), company.id, plan_id, action)
        flash(message, "ok")
    except NotFound:
        abort(404)
    except ArbridgeError as e:
        flash(str(e), "error")
    return redirect(url_for("plans.plan_detail", slug=company.slug, plan_id=plan_id), code=303)


@bp.post("/plans/<int:plan_id>/installments/<int:number>/move")
@company_required
def move_installment(company: Company, plan_id: int, number: int) -> Any:
    try:
        due_on = parse_day(request.form.get("due_on", ""))
        flash(
            svc.owner_reschedule(runtime(), company.id, plan_id, number=number, due_on=due_on), "ok"
        )
    except NotFound:
        abort(404)
    except (ArbridgeError, InputError) as e:
        flash(str(e), "error")
    return redirect(url_for("plans.plan_detail", slug=company.slug, plan_id=plan_id), code=303)


@bp.route("/plans/new", methods=["GET", "POST"])
@company_required
def new_plan(company: Company) -> Any:
    """A custom plan for one customer: pick their open invoices, the count, how often, a
    deposit and the start date; the customer gets a link to agree and pay the first amount."""
    rt, s = runtime(), db()
    raw = request.values.get("customer") or None
    try:
        customer_id = parse_id(raw) if raw else None
    except InputError:
        abort(404)  # not an id any customer could have (letters, 10**400)
    customer = get_or_404(Customer, customer_id, company) if customer_id else None
    customers = s.scalars(
        select(Customer)
        .where(
            Customer.company_id == company.id,
            Customer.id.in_(
                select(Invoice.customer_id).where(Invoice.company_id == company.id, Invoice.is_open)
            ),
        )
        .order_by(Customer.name)
    ).all()
    invoices = (
        s.scalars(
            select(Invoice)
            .where(Invoice.customer_id == customer.id, Invoice.is_open)
            .order_by(Invoice.issued_on, Invoice.id)
        ).all()
        if customer
        else []
    )
    made, error = None, None
    if request.method == "POST" and customer is not None:
        try:
            chosen = [
                parse_int(v, minimum=1, maximum=2**31 - 1) for v in request.form.getlist("invoice")
            ]
            if not chosen:
                raise InputError("Choose at least one invoice")
            start = request.form.get("start_on") or ""
            made = svc.make_offer(
                rt,
                company_id=company.id,
                invoice_ids=chosen,
                installments=parse_int(
                    request.form.get("installments", ""), minimum=1, maximum=120
                ),
                every=request.form.get("every", ""),
                deposit_percent=Decimal(
                    parse_int(request.form.get("deposit_percent") or "0", minimum=0, maximum=99)
                ),
                start_on=parse_day(start) if start else None,
                origin="owner",
            )
        except NotFound:
            abort(404)
        except (ArbridgeError, InputError) as e:
            error = str(e)
    return render_template(
        "plan_new.html",
        company=company,
        customers=customers,
        customer=customer,
        invoices=invoices,
        made=made,
        error=error,
        today=company_today(company, rt.clock),
        labels=rules.FREQUENCY_LABELS,
    ), (400 if error else 200)


@bp.post("/customers/<int:customer_id>/plan-choice")
@company_required
def plan_choice(company: Company, customer_id: int) -> Any:
    choice = request.form.get("choice") or None
    try:
        svc.set_customer_plan_choice(runtime(), company.id, customer_id, choice)
    except NotFound:
        abort(404)
    except ArbridgeError as e:
        flash(str(e), "error")
    else:
        flash("Saved.", "ok")
    back = safe_next(request.form.get("next"), url_for("plans.plans_list", slug=company.slug))
    return redirect(back, code=303)


@bp.app_template_global()
def customer_plan_choice(customer_id: int) -> str | None:
    return db().scalar(
        select(CustomerReminderSettings.plan_choice).where(
            CustomerReminderSettings.customer_id == customer_id
        )
    )


@bp.app_template_global()
def invoice_plans(company: Company, invoice_id: int) -> list[Any]:
    return company_plans(db(), company.id, invoice_id=invoice_id)


# --- The demo's clock -----------------------------------------------------------------------
def _demo_clock() -> DemoClock | None:
    rt = runtime()
    return rt.clock if rt.settings.demo and isinstance(rt.clock, DemoClock) else None


@bp.post("/demo/clock")
@company_required
def demo_clock(company: Company) -> Any:
    """Demo only: move the demo's clock forward and do what came due (the worker would too)."""
    clock = _demo_clock()
    if clock is None:
        abort(404)
    try:
        n = parse_int(request.form.get("days", ""), minimum=1, maximum=366)
    except InputError as e:
        flash(str(e), "error")
        back = safe_next(request.form.get("next"), url_for("plans.plans_list", slug=company.slug))
        return redirect(back, code=303)
    clock.advance(timedelta(days=n))
    from arbridge.services.payments.plan_runs import run_due_plans
    from arbridge.services.payments.simulated import settle_simulated_payments

    rt = runtime()
    # What the worker does on its next tick, now, so the page shows it at once.
    settle_simulated_payments(rt)
    run_due_plans(rt)
    flash(
        f"The demo's clock moved forward {days_text(n)}: it is now "
        f"{local_text(clock.now(), company.timezone)}. "
        "Charges that came due are on their way; the worker records them within seconds.",
        "ok",
    )
    back = safe_next(request.form.get("next"), url_for("plans.plans_list", slug=company.slug))
    return redirect(back, code=303)
