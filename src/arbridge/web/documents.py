"""Documents as PDF downloads: the customer's statement under its statement link, and the
owner's statement, final-notice letter and agency case file of one customer.

Every route is a GET that changes nothing: the owner's documents carry no pay link (minting one
is the POST of the statement-link page, which then offers that link's PDF)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, make_response, render_template

from arbridge.errors import NotFound
from arbridge.services.documents import gather
from arbridge.services.documents.pdf import render_case_file, render_letter, render_statement
from arbridge.services.reminders.case_file import case_file
from arbridge.sync.model import Company, Customer
from arbridge.sync.pay_links import LinkGone, check_live
from arbridge.sync.store import company_today, find_pay_token
from arbridge.web.common import company_required, db, get_or_404, runtime

bp = Blueprint("documents", __name__)
log = logging.getLogger(__name__)


def _pdf(data: bytes, filename: str) -> Response:
    response = Response(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/pay/<token>/statement.pdf")
def customer_statement(token: str) -> Any:
    """The statement of a statement link, for the customer: refused like the pay page refuses
    (unknown, tampered or withdrawn: 404; expired: 410 saying so). An invoice's own link opens
    that invoice only, never the customer's whole account."""
    rt, s = runtime(), db()
    try:
        link = find_pay_token(s, token)
        check_live(link, rt.clock.now())
    except LinkGone as e:
        log.info("refused a statement PDF: %s", e)
        if e.reason != "expired":
            abort(404)
        message = (
            "This statement link has expired. The latest email from the business has a new "
            "link; or reply to it and ask for one."
        )
        return make_response(
            render_template("error.html", title="This link no longer works", message=message),
            410,
        )
    except NotFound:
        log.info("refused a statement PDF (unknown or tampered link)")
        abort(404)
    if link.invoice_id is not None or link.customer_id is None:
        log.info("refused a statement PDF for an invoice's own link")
        abort(404)
    company = s.get(Company, link.company_id)
    customer = s.get(Customer, link.customer_id)
    if company is None or customer is None or customer.company_id != company.id:
        abort(404)
    today = company_today(company, rt.clock)
    doc = gather.statement_doc(
        s,
        company,
        customer,
        today,
        pay_url=f"{rt.settings.base_url}/pay/{token}",
        link_expires_at=link.expires_at,
    )
    return _pdf(render_statement(doc), gather.statement_filename(company, customer, today))


@bp.get("/c/<slug>/customers/<int:customer_id>/statement.pdf")
@company_required
def owner_statement(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    customer = get_or_404(Customer, customer_id, company)
    today = company_today(company, rt.clock)
    doc = gather.statement_doc(s, company, customer, today)
    return _pdf(render_statement(doc), gather.statement_filename(company, customer, today))


@bp.get("/c/<slug>/customers/<int:customer_id>/final-notice.pdf")
@company_required
def owner_final_notice(company: Company, customer_id: int) -> Any:
    rt, s = runtime(), db()
    customer = get_or_404(Customer, customer_id, company)
    today = company_today(company, rt.clock)
    overdue = gather.overdue_to_chase(s, company, customer, today)
    if not overdue:
        return make_response(
            render_template(
                "error.html",
                title="Nothing is overdue",
                message=f"{customer.name} has no overdue invoice that reminders chase (those "
                "on hold or in dispute are left out), so there is no final notice to write.",
            ),
            409,
        )
    doc = gather.letter_doc(s, company, customer, today, overdue)
    return _pdf(render_letter(doc), gather.letter_filename(company, customer, today))


@bp.get("/c/<slug>/customers/<int:customer_id>/case-file.pdf")
@company_required
def owner_case_file(company: Company, customer_id: int) -> Any:
    """The agency case file as a document, beside its JSON (reminders.case_file)."""
    rt, s = runtime(), db()
    customer = get_or_404(Customer, customer_id, company)
    data = case_file(s, company, customer)
    pdf = render_case_file(data, gather.business_of(s, company), company_today(company, rt.clock))
    return _pdf(pdf, f"case-file-{company.slug}-{customer.id}.pdf")
