"""Receipt confirmed (issue 15): the customer opening the pay link marks the invoices it shows
"viewed", from the page's own POST after it loads; the GET (what a mail scanner or a link
preview fetches) records nothing. The browser side is tests/web/test_receipt_viewed_browser.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from arbridge.clock import local_text
from arbridge.collections.templates import EmailTemplate
from arbridge.services.reminders.rendering import render_reminder
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Customer, Invoice, PayToken
from arbridge.sync.pay_links import statement_invoices
from arbridge.sync.store import (
    company_today,
    hash_token,
    issue_pay_token,
    issue_statement_token,
    open_invoices,
)
from tests.web.conftest import parse, sign_in


@pytest.fixture
def invoice_link(rt, demo_company) -> tuple[int, str]:
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.number)
        return inv.id, issue_pay_token(s, rt.clock, inv)


def _viewed_at(rt, *ids: int) -> list[datetime | None]:
    with rt.sessions() as s:
        rows = dict(
            s.execute(select(Invoice.id, Invoice.viewed_at).where(Invoice.id.in_(ids)))
            .tuples()
            .all()
        )
    return [rows[i] for i in ids]


def _script(page) -> dict[str, str]:
    """The pay page's view script: its address and CSRF token, as the browser reads them."""
    assert page.status_code == 200
    script = parse(page.data).find("script", src="/static/viewed.js")
    assert script is not None, "the pay page carries no view script"
    return script.attrs


def _open(client, token: str):
    """What a browser does: GET the page, then the script's POST."""
    script = _script(client.get(f"/pay/{token}"))
    assert script["data-viewed"] == f"/pay/{token}/viewed"
    return client.post(script["data-viewed"], data={"csrf_token": script["data-csrf"]})


def test_the_get_alone_records_nothing(app, rt, invoice_link):
    """A mail scanner fetches the link and runs no script."""
    invoice_id, token = invoice_link
    scanner = app.test_client()
    for _ in range(2):
        _script(scanner.get(f"/pay/{token}"))
    assert _viewed_at(rt, invoice_id) == [None]


def test_the_page_s_post_records_the_first_view_and_later_ones_leave_it(app, rt, invoice_link):
    invoice_id, token = invoice_link
    customer = app.test_client()
    response = _open(customer, token)
    assert response.status_code == 204
    assert response.headers["Cache-Control"] == "no-store"
    first = rt.clock.now()
    assert _viewed_at(rt, invoice_id) == [first]
    rt.clock.advance(timedelta(days=2))
    assert _open(customer, token).status_code == 204
    assert _open(app.test_client(), token).status_code == 204
    assert _viewed_at(rt, invoice_id) == [first]


def test_a_post_without_the_page_s_csrf_token_records_nothing(app, rt, invoice_link):
    invoice_id, token = invoice_link
    stranger = app.test_client()
    response = stranger.post(f"/pay/{token}/viewed")
    assert response.status_code == 400
    assert _viewed_at(rt, invoice_id) == [None]


def test_unknown_and_withdrawn_links_record_nothing(app, rt, invoice_link):
    invoice_id, token = invoice_link
    customer = app.test_client()
    script = _script(customer.get(f"/pay/{token}"))
    for bad in ("x" * 43, "x" * 300):
        assert (
            customer.post(
                f"/pay/{bad}/viewed", data={"csrf_token": script["data-csrf"]}
            ).status_code
            == 404
        )
    with transaction(rt.sessions) as s:
        link = s.scalars(select(PayToken).where(PayToken.token_hash == hash_token(token))).one()
        link.revoked_at = rt.clock.now()
    response = customer.post(script["data-viewed"], data={"csrf_token": script["data-csrf"]})
    assert response.status_code == 404
    assert _viewed_at(rt, invoice_id) == [None]


def test_a_statement_link_marks_every_invoice_it_shows(app, rt, demo_company):
    with transaction(rt.sessions) as s:
        counts: dict[int, int] = {}
        for i in open_invoices(s, demo_company.id):
            counts[i.customer_id] = counts.get(i.customer_id, 0) + 1
        customer_id = max(counts, key=lambda c: counts[c])
        customer = s.get(Customer, customer_id)
        token = issue_statement_token(s, rt.clock, customer)
        link = s.scalars(select(PayToken).where(PayToken.token_hash == hash_token(token))).one()
        shown = [i.id for i in statement_invoices(s, link)]
        others = s.scalars(
            select(Invoice.id).where(
                Invoice.company_id == demo_company.id, Invoice.id.not_in(shown)
            )
        ).all()
    assert len(shown) >= 2
    assert _open(app.test_client(), token).status_code == 204
    assert _viewed_at(rt, *shown) == [rt.clock.now()] * len(shown)
    assert set(_viewed_at(rt, *others)) == {None}


def test_the_signed_in_owner_checking_the_link_is_not_the_customer(
    client, rt, demo_company, invoice_link
):
    invoice_id, token = invoice_link
    sign_in(client, rt, demo_company)
    assert _open(client, token).status_code == 204
    assert _viewed_at(rt, invoice_id) == [None]


def test_the_owner_sees_when_the_customer_first_opened_it(
    app, client, rt, demo_company, invoice_link
):
    invoice_id, token = invoice_link
    sign_in(client, rt, demo_company)
    page = parse(client.get(f"/c/demo/invoices/{invoice_id}").data)
    assert page.by_id("viewed").text == "not opened yet"

    _open(app.test_client(), token)
    when = local_text(rt.clock.now(), demo_company.timezone)  # the business's time, zone named
    page = parse(client.get(f"/c/demo/invoices/{invoice_id}").data)
    assert page.by_id("viewed").text == f"first opened by the customer {when}"

    with rt.sessions() as s:
        customer_id = s.get(Invoice, invoice_id).customer_id
    page = parse(client.get(f"/c/demo/customers/{customer_id}").data)
    row = page.by_id("open-invoices").find("tr", data_invoice=str(invoice_id))
    # The customer's page: in the business's timezone, the zone named.
    assert row.find("td", cls="viewed").text == local_text(rt.clock.now(), demo_company.timezone)
    others = [
        tr.find("td", cls="viewed").text
        for tr in page.by_id("open-invoices").find_all("tr")
        if tr.attrs.get("data-invoice") not in (None, str(invoice_id))
    ]
    assert set(others) <= {"not yet"}


def test_reminders_can_say_when_the_customer_opened_the_invoice(
    app, rt, demo_company, invoice_link
):
    invoice_id, token = invoice_link
    wording = EmailTemplate(
        "About {{ invoice_number }}",
        "{% if viewed_on %}We see you opened the invoice on {{ viewed_on }}.{% else %}"
        "Not opened.{% endif %}{% for i in invoices %} [{{ i.number }}: {{ i.viewed_on }}]"
        "{% endfor %}",
    )

    def render() -> str:
        with rt.sessions() as s:
            company = s.get(Company, demo_company.id)
            inv = s.get(Invoice, invoice_id)
            customer = s.get(Customer, inv.customer_id)
            today = company_today(company, rt.clock)
            out = render_reminder(
                rt, company, customer, None, [(inv, "tok")], "overdue", today, template=wording
            )
            return out.text, inv.number

    text, number = render()
    assert text.startswith("Not opened.")
    assert f"[{number}: ]" in text
    # 03:30 UTC on 25 November is still the 24th in the business's timezone (America/Chicago).
    rt.clock.advance(datetime(2026, 11, 25, 3, 30, tzinfo=UTC) - rt.clock.now())
    assert demo_company.timezone == "America/Chicago"
    _open(app.test_client(), token)
    text, number = render()
    assert text.startswith("We see you opened the invoice on Nov 24, 2026.")
    assert f"[{number}: Nov 24, 2026]" in text
