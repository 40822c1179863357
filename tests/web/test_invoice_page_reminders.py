"""The invoice page (issue 13: "pause/resume and do-not-chase right there"): the page had neither;
and its times (first viewed, payments) read in UTC where every other time is the business's,
the zone named."""

from __future__ import annotations

from sqlalchemy import select

from arbridge.clock import local_text
from arbridge.sync.db import transaction
from arbridge.sync.model import Customer, Invoice
from arbridge.sync.store import open_invoices
from tests.web.conftest import form_fields, parse


def _an_open_invoice(rt, company) -> int:
    with rt.sessions() as s:
        return next(i.id for i in open_invoices(s, company.id) if not i.payment_pending)


def _post(owner_client, page, form_id: str):
    form = parse(page.data).find("form", id=form_id)
    assert form is not None, form_id
    return owner_client.post(form.attrs["action"], data=form_fields(form))


def test_the_invoice_page_had_no_pause_resume_or_do_not_chase(owner_client, rt, demo_company):
    inv_id = _an_open_invoice(rt, demo_company)
    url = f"/c/demo/invoices/{inv_id}"
    page = owner_client.get(url)
    assert "Reminders are on for this invoice" in parse(page.data).by_id("invoice-reminders").text
    done = _post(owner_client, page, "invoice-pause")
    assert done.status_code == 302 and done.headers["Location"] == url
    with rt.sessions() as s:
        assert s.get(Invoice, inv_id).paused is True
    page = owner_client.get(url)
    shown = parse(page.data)
    assert "paused" in shown.by_id("invoice-status").text
    assert "Resume reminders" in shown.by_id("invoice-pause").text
    _post(owner_client, page, "invoice-pause")
    with rt.sessions() as s:
        assert s.get(Invoice, inv_id).paused is False
    page = owner_client.get(url)
    done = _post(owner_client, page, "invoice-do-not-chase")
    assert done.headers["Location"] == url
    with rt.sessions() as s:
        cust = s.get(Customer, s.get(Invoice, inv_id).customer_id)
        assert cust.do_not_chase is True
    shown = parse(owner_client.get(url).data).by_id("invoice-reminders").text
    assert f"{cust.name} is marked do not chase" in shown and "Chase them again" in shown


def test_the_invoice_page_showed_when_it_was_viewed_in_utc(owner_client, rt, demo_company):
    inv_id = _an_open_invoice(rt, demo_company)
    with transaction(rt.sessions) as s:
        s.get(Invoice, inv_id).viewed_at = rt.clock.now()
    viewed = parse(owner_client.get(f"/c/demo/invoices/{inv_id}").data).by_id("viewed").text
    assert local_text(rt.clock.now(), demo_company.timezone) in viewed and "UTC" not in viewed
    with rt.sessions() as s:
        assert s.scalar(select(Invoice.viewed_at).where(Invoice.id == inv_id)) is not None
