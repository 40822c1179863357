"""The customer's payment page, reached by an unguessable link; the amount comes from the server."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, make_response, render_template

from arbridge.collections.aging import days_overdue
from arbridge.errors import NotFound
from arbridge.sync.model import Company, Customer, Invoice
from arbridge.sync.store import company_today, find_pay_token
from arbridge.web.common import db, runtime

bp = Blueprint("pay", __name__)
log = logging.getLogger(__name__)


@bp.get("/pay/<token>")
def pay_page(token: str) -> Any:
    s = db()
    try:
        link = find_pay_token(s, token)
    except NotFound:
        log.info("refused a payment link (unknown, tampered or revoked)")
        abort(404)
    inv = s.get(Invoice, link.invoice_id) if link.invoice_id else None
    if inv is None or inv.company_id != link.company_id:
        abort(404)
    company = s.get(Company, inv.company_id)
    customer = s.get(Customer, inv.customer_id)
    assert company is not None and customer is not None
    today = company_today(company, runtime().clock)
    response = make_response(
        render_template(
            "pay.html",
            company=company,
            customer=customer,
            inv=inv,
            days_overdue=days_overdue(inv.due_on, today),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response
