"""A customer's page (issue 13): contacts whose email, phone and preferred channel the owner
edits, kept over the next sync (the ledger's values kept apart); notes in the customer's history
with who and when; and the customers list sorted by balance, overdue, last payment, lateness."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Connection, Contact, Customer
from tests.conftest import sync_now
from tests.web.conftest import amount, csrf_token, parse
from tests.web.test_owner_pages import _cell, _customer_rows
from tests.web.test_roles import _add_user, _sign_in_as


def _demo_contact(rt, company) -> tuple[int, int, str]:
    """(customer id, its contact id, the customer's id in the demo ledger)."""
    with rt.sessions() as s:
        contact = s.scalars(
            select(Contact).where(Contact.company_id == company.id).order_by(Contact.id)
        ).first()
        return contact.customer_id, contact.id, s.get(Customer, contact.customer_id).source_id


def _ledger_changes_person(rt, company, customer_source_id: str, **person: str) -> None:
    """A bookkeeper edits the customer's contact person in the (demo) ledger; then a sync."""
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
    ledger = rt.demo_ledger(conn.tenant_id)
    with ledger.change() as state:
        record = ledger.find(state, "Customer", customer_source_id)
        record["contactPerson"].update(person)
        ledger.touch(state, record)
    rt.clock.advance(timedelta(minutes=7))
    sync_now(rt, conn)


def _save(owner_client, cust_id: int, contact_id: int, **fields: str):
    url = f"/c/demo/customers/{cust_id}"
    token = csrf_token(owner_client.get(url).data)
    return owner_client.post(
        f"{url}/contact", data={"csrf_token": token, "contact_id": str(contact_id), **fields}
    )


def test_an_email_the_owner_set_survives_the_next_sync_and_the_ledger_s_is_kept_apart(
    owner_client, rt, demo_company
):
    cust_id, contact_id, source_id = _demo_contact(rt, demo_company)
    with rt.sessions() as s:
        ledger_phone = s.get(Contact, contact_id).phone
    saved = _save(
        owner_client, cust_id, contact_id, email="payables@owner-set.example", phone=ledger_phone
    )
    assert saved.status_code == 303
    _ledger_changes_person(
        rt, demo_company, source_id, email="new@ledger.example", phone="+1 555 999 0000"
    )
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        # The owner's email stays; the phone they left as the ledger had it follows the ledger.
        assert (c.email, c.ledger_email) == ("payables@owner-set.example", "new@ledger.example")
        assert (c.phone, c.owner_phone) == ("+1 555 999 0000", None)
    doc = parse(owner_client.get(f"/c/demo/customers/{cust_id}").data)
    assert doc.by_id(f"email-{contact_id}").attrs["value"] == "payables@owner-set.example"
    assert "your ledger has new@ledger.example" in doc.by_id(f"email-{contact_id}-ledger").text
    assert doc.by_id(f"phone-{contact_id}-ledger") is None
    # Set to the ledger's value again: it follows the ledger from then on.
    _save(owner_client, cust_id, contact_id, email="new@ledger.example", phone="+1 555 999 0000")
    _ledger_changes_person(rt, demo_company, source_id, email="newer@ledger.example")
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        assert (c.email, c.owner_email) == ("newer@ledger.example", None)


def test_an_email_the_owner_removed_stays_removed_after_a_sync(owner_client, rt, demo_company):
    cust_id, contact_id, source_id = _demo_contact(rt, demo_company)
    _save(owner_client, cust_id, contact_id, email="", phone="")
    _ledger_changes_person(rt, demo_company, source_id, firstName="Renamed")
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        assert (c.email, c.phone, c.name) == (None, None, "Renamed")
        assert c.ledger_email and c.ledger_phone


def test_the_preferred_channel_is_saved_shown_and_checked(owner_client, rt, demo_company):
    cust_id, contact_id, _ = _demo_contact(rt, demo_company)
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        email, phone = c.email, c.phone
    _save(owner_client, cust_id, contact_id, email=email, phone=phone, preferred_channel="sms")
    doc = parse(owner_client.get(f"/c/demo/customers/{cust_id}").data)
    chosen = doc.by_id(f"channel-{contact_id}").find("option", selected="")
    assert chosen.attrs["value"] == "sms"
    refused = _save(
        owner_client, cust_id, contact_id, email=email, phone=phone, preferred_channel="pigeon"
    )
    page = owner_client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "Choose how they prefer to be reached" in page
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        assert (c.preferred_channel, c.email, c.owner_email) == ("sms", email, None)


def test_a_note_shows_in_the_customer_s_history_with_who_and_when(owner_client, rt, demo_company):
    cust_id, _, _ = _demo_contact(rt, demo_company)
    url = f"/c/demo/customers/{cust_id}"
    token = csrf_token(owner_client.get(url).data)
    added = owner_client.post(
        f"{url}/notes", data={"csrf_token": token, "note": "Spoke to Ana.\nPays on the 5th."}
    )
    assert added.status_code == 303 and added.headers["Location"].endswith(f"{url}#history")
    history = parse(owner_client.get(url).data).by_id("customer-history")
    note = history.find("li", cls="note")
    assert "Spoke to Ana. Pays on the 5th." in note.text
    assert "owner@acme-supply.example" in note.text  # who
    assert note.find("time").text == "Nov 24, 2026, 09:00 CST"  # when, in the business's zone
    for bad in ("", "   ", "x" * 4001):
        refused = owner_client.post(f"{url}/notes", data={"csrf_token": token, "note": bad})
        assert refused.status_code == 303
    with rt.sessions() as s:
        notes = s.scalars(select(Activity).where(Activity.kind == "customer.note")).all()
    assert [n.message for n in notes] == ["Spoke to Ana.\nPays on the 5th."]


def test_a_viewer_sees_the_history_but_cannot_add_a_note(client, rt, demo_company):
    cust_id, _, _ = _demo_contact(rt, demo_company)
    viewer = _add_user(rt, demo_company, "viewer@acme.example", "viewer")
    token = _sign_in_as(client, rt, demo_company, viewer)
    page = parse(client.get(f"/c/demo/customers/{cust_id}").data)
    assert page.by_id("history") is not None and page.by_id("note-form") is None
    refused = client.post(
        f"/c/demo/customers/{cust_id}/notes", data={"csrf_token": token, "note": "hello"}
    )
    assert refused.status_code == 403
    with transaction(rt.sessions) as s:
        assert s.scalars(select(Activity).where(Activity.kind == "customer.note")).all() == []


def test_the_customers_list_sorts_by_overdue_and_last_payment_both_ways(owner_client):
    for direction in ("asc", "desc"):
        rows = _customer_rows(
            owner_client.get(f"/c/demo/customers?sort=overdue&dir={direction}").data
        )
        overdue = [amount(_cell(r, "overdue")) for r in rows]
        assert overdue == sorted(overdue, reverse=direction == "desc") and len(set(overdue)) > 2
    for direction in ("asc", "desc"):
        rows = _customer_rows(
            owner_client.get(f"/c/demo/customers?sort=last_payment&dir={direction}").data
        )
        shown = [_cell(r, "last-payment") for r in rows]
        days = [datetime.strptime(f"{d} +0000", "%b %d, %Y %z").date() for d in shown if d != "—"]
        assert len(set(days)) > 2
        assert days == sorted(days, reverse=direction == "desc")
        # Customers who never paid come last either way.
        assert shown == [*shown[: len(days)], *["—"] * (len(shown) - len(days))]


def _route(owner_client, cust_id: int) -> str:
    doc = parse(owner_client.get(f"/c/demo/customers/{cust_id}").data)
    return doc.by_id("reminder-route").text


def test_the_customer_page_did_not_say_which_channel_the_reminders_go_by(
    owner_client, rt, demo_company
):
    cust_id, contact_id, _ = _demo_contact(rt, demo_company)
    with transaction(rt.sessions) as s:
        c = s.get(Contact, contact_id)
        c.phone, c.phone_e164, c.phone_problem = "+1 312 555 0142", "+13125550142", None
        c.is_primary, c.sms_consent_at, c.sms_consent_source = True, None, None
        email, phone = c.email, c.phone
    _save(owner_client, cust_id, contact_id, email=email, phone=phone, preferred_channel="sms")
    route = _route(owner_client, cust_id)
    assert "by email" in route and "no recorded consent" in route and "prefers texts" in route
    with transaction(rt.sessions) as s:
        c = s.get(Contact, contact_id)
        c.sms_consent_at, c.sms_consent_source = rt.clock.now(), "owner"
    route = _route(owner_client, cust_id)
    assert "by text message to +13125550142" in route
    _save(owner_client, cust_id, contact_id, email=email, phone=phone, preferred_channel="phone")
    route = _route(owner_client, cust_id)
    assert f"by email to {email}" in route and "call list" in route


def test_a_contact_s_own_timezone_is_saved_shown_with_its_zone_and_checked(
    owner_client, rt, demo_company
):
    cust_id, contact_id, _ = _demo_contact(rt, demo_company)
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        email, phone = c.email, c.phone
    saved = _save(
        owner_client, cust_id, contact_id, email=email, phone=phone, timezone="Asia/Tokyo"
    )
    assert saved.status_code == 303
    doc = parse(owner_client.get(f"/c/demo/customers/{cust_id}").data)
    chosen = doc.by_id(f"timezone-{contact_id}").find("option", selected="")
    assert chosen.attrs["value"] == "Asia/Tokyo"
    assert "Asia/Tokyo" in doc.by_id("reminder-route").text
    refused = _save(
        owner_client, cust_id, contact_id, email=email, phone=phone, timezone="Mars/Base"
    )
    page = owner_client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "Choose a timezone from the list" in page
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).timezone == "Asia/Tokyo"
    _save(owner_client, cust_id, contact_id, email=email, phone=phone, timezone="")
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).timezone is None
