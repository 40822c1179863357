"""The owner's late-fee actions: waive a charge, exempt a customer (or end the exemption)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, request, url_for

from arbridge.services.fees.owner import set_exempt, waive
from arbridge.sync.model import Company, Customer, LateFeeAssessment
from arbridge.web.common import company_required, db, get_or_404, runtime, safe_next

bp = Blueprint("fees", __name__, url_prefix="/c/<slug>")


@bp.post("/late-fees/<int:charge_id>/waive")
@company_required
def waive_charge(company: Company, charge_id: int) -> Any:
    rt, s = runtime(), db()
    charge = get_or_404(LateFeeAssessment, charge_id, company)
    back = url_for("owner.invoice", slug=company.slug, invoice_id=charge.invoice_id)
    if charge.status == "waived":
        flash("That charge was waived already.", "ok")
    else:
        waive(s, rt.clock, company, charge.id, g.user.id)
        s.commit()
        flash(f"Waived: {charge.description}. Its invoice in your ledger will be voided.", "ok")
    return redirect(safe_next(request.form.get("next"), back))


@bp.post("/customers/<int:customer_id>/late-fees-exempt")
@company_required
def exempt(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    customer = get_or_404(Customer, customer_id, company)
    on = request.form.get("exempt") == "1"
    set_exempt(s, rt.clock, company, customer.id, on)
    s.commit()
    flash(
        f"{customer.name} is {'now exempt from' if on else 'no longer exempt from'} late fees.",
        "ok",
    )
    fallback = url_for("owner.settings", slug=company.slug) + "#late_fees"
    return redirect(safe_next(request.form.get("next"), fallback))
