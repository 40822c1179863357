"""Statement links: they expire, the owner can revoke them, and they charge only what may be
chased (not an invoice the owner paused, withdrew the links of, or that the customer disputes)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from arbridge.services.reminders.holds import record_hold
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Company, Customer, Invoice, PayToken
from arbridge.sync.store import hash_token, issue_pay_token, open_invoices, revoke_pay_tokens
from tests.web.conftest import assert_friendly_error, csrf_token, form_fields, parse

BASE = "http://127.0.0.1:5000"


@pytest.fixture
def customer(app):
    """The customer's browser: never signed in."""
    return app.test_client()


@pytest.fixture
def busy(rt, demo_company) -> Customer:
    """The demo customer with the most open invoices in one currency."""
    with rt.sessions() as s:
        counts = Counter((i.customer_id, i.currency) for i in open_invoices(s, demo_company.id))
        (customer_id, _cur), n = counts.most_common(1)[0]
        assert n >= 4
        cust = s.get(Customer, customer_id)
        s.expunge(cust)
        return cust


def _statement_link(owner_client, cust: Customer) -> str:
    page = owner_client.get("/c/demo/reminders")
    response = owner_client.post(
        f"/c/demo/customers/{cust.id}/statement-link",
        data={"csrf_token": csrf_token(page.data)},
    )
    assert response.status_code == 200
    link = parse(response.data).by_id("statement-link")
    return link.attrs["href"].removeprefix(BASE)


def _gone(response) -> str:
    assert response.status_code == 410
    body = response.get_data(as_text=True)
    assert_friendly_error(body, 'id="amount-due"')
    return body


def _listed(customer, path: str) -> list[str]:
    page = customer.get(path)
    assert page.status_code == 200
    table = parse(page.data).by_id("statement")
    return [row.find("td").text for row in table.find("tbody").find_all("tr")]


def _set_reminders(rt, **values) -> None:
    with transaction(rt.sessions) as s:
        company = s.scalar(select(Company).where(Company.slug == "demo"))
        stored = dict(company.settings or {})
        stored["reminders"] = {**(stored.get("reminders") or {}), **values}
        company.settings = stored


def test_a_statement_link_expires_after_60_days_with_a_clear_page(
    owner_client, customer, rt, clock, busy
):
    path = _statement_link(owner_client, busy)
    assert customer.get(path).status_code == 200
    clock.advance(timedelta(days=59))
    assert customer.get(path).status_code == 200
    clock.advance(timedelta(days=2))
    body = _gone(customer.get(path))
    assert "expired" in body
    # Nor can it open a checkout.
    assert customer.post(path + "/checkout", data={}).status_code in (400, 410)


def test_the_statement_link_lifetime_is_a_company_setting(owner_client, customer, rt, clock, busy):
    page = owner_client.get("/c/demo/settings")
    form = parse(page.data).find("form", action="/c/demo/settings/reminders")
    fields = form_fields(form)
    assert fields["reminders-statement_link_days"] == "60"
    saved = owner_client.post(
        form.attrs["action"], data={**fields, "reminders-statement_link_days": "10"}
    )
    assert saved.status_code == 302
    with rt.sessions() as s:
        stored = s.scalar(select(Company).where(Company.slug == "demo")).settings["reminders"]
        assert stored["statement_link_days"] == 10
    path = _statement_link(owner_client, busy)
    clock.advance(timedelta(days=9))
    assert customer.get(path).status_code == 200
    clock.advance(timedelta(days=2))
    _gone(customer.get(path))


def test_the_owner_revokes_a_customers_statement_links(owner_client, customer, rt, busy):
    first, second = _statement_link(owner_client, busy), _statement_link(owner_client, busy)
    page = owner_client.get("/c/demo/reminders")
    action = f"/c/demo/customers/{busy.id}/revoke-statement-links"
    assert parse(page.data).find("form", action=action) is not None
    assert owner_client.post(action, data={}).status_code == 400  # no CSRF token
    assert customer.get(first).status_code == 200
    response = owner_client.post(action, data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 302
    for path in (first, second):
        assert customer.get(path).status_code == 404  # withdrawn: as good as no link
    with rt.sessions() as s:
        assert "pay_link.revoked" in s.scalars(select(Activity.kind)).all()
    # A new link works again.
    assert customer.get(_statement_link(owner_client, busy)).status_code == 200


def test_a_revoked_invoice_link_is_a_plain_404(owner_client, customer, rt, busy):
    with transaction(rt.sessions) as s:
        inv = s.scalars(select(Invoice).where(Invoice.customer_id == busy.id)).first()
        token = issue_pay_token(s, rt.clock, inv)
    with transaction(rt.sessions) as s:
        revoke_pay_tokens(s, rt.clock, s.get(Invoice, inv.id))
    response = customer.get(f"/pay/{token}")
    assert response.status_code == 404
    assert inv.number not in response.get_data(as_text=True)


def test_a_statement_leaves_out_paused_disputed_and_withdrawn_invoices(
    owner_client, customer, rt, busy
):
    path = _statement_link(owner_client, busy)
    listed = _listed(customer, path)
    assert len(listed) >= 4
    with transaction(rt.sessions) as s:
        by_number = {
            i.number or i.source_id: i
            for i in s.scalars(select(Invoice).where(Invoice.customer_id == busy.id))
        }
        paused, disputed, withdrawn = (by_number[n] for n in listed[:3])
        paused.paused = True
        record_hold(s, rt, disputed, "dispute", message="Wrong quantity")
        issue_pay_token(s, rt.clock, withdrawn)
        s.flush()
        revoke_pay_tokens(s, rt.clock, withdrawn)
    assert _listed(customer, path) == listed[3:]
    with rt.sessions() as s:
        link = s.scalar(select(PayToken).where(PayToken.token_hash == hash_token(path[5:])))
        from arbridge.services.payments.quote import quote

        q = quote(rt, s, link)
        assert {i.number or i.source_id for i in q.invoices} == set(listed[3:])
