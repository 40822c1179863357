"""The late-fee settings, the charges table, waiving a charge and exempting a customer, through
the owner's pages."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from arbridge.services.fees.assess import assess_late_fees
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    CustomerReminderSettings,
    Invoice,
    LateFeeAssessment,
    OutboxMessage,
)
from arbridge.sync.store import ledger_connection
from arbridge.worker import drain
from tests.conftest import sync_now
from tests.web.conftest import csrf_token, form_fields, fresh_company, parse

URL = "/c/demo/settings"


def _save(client, **changes: str | None):
    form = parse(client.get(URL).data).find("form", action=f"{URL}/late_fees")
    data = form_fields(form)
    for name, value in changes.items():
        key = f"late_fees-{name}"
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return client.post(f"{URL}/late_fees", data=data)


def test_the_late_fee_section_saves_the_policy_and_leaves_the_rest_alone(owner_client, rt):
    before = fresh_company(rt, "demo").settings
    response = _save(
        owner_client,
        late_fees_enabled="y",
        late_fee_grace_days="5",
        late_fee_flat="25.00",
        late_fee_annual_rate="12",
        late_fee_cap="100",
        late_fee_base_rate="4.00",
        late_fee_base_rate_on="2025-08-07",
        late_fee_quickbooks_item="21",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == f"{URL}#late_fees"
    settings = fresh_company(rt, "demo").settings
    fees = settings["late_fees"]
    assert (fees["enabled"], fees["grace_days"], fees["flat_fee"], fees["annual_rate"]) == (
        True,
        5,
        "25.00",
        "12",
    )
    assert fees["cap"] == "100"
    assert fees["base_rates"] == [{"effective_on": "2025-08-07", "rate": "4.00"}]
    assert fees["quickbooks_item_id"] == "21"
    assert {k: v for k, v in settings.items() if k != "late_fees"} == {
        k: v for k, v in (before or {}).items() if k != "late_fees"
    }
    # A second rate joins the first, each with its date; the page shows the policy in words.
    _save(owner_client, late_fee_base_rate="3.75", late_fee_base_rate_on="2026-08-07")
    fees = fresh_company(rt, "demo").settings["late_fees"]
    assert [r["rate"] for r in fees["base_rates"]] == ["4.00", "3.75"]
    words = parse(owner_client.get(URL).data).by_id("late-fees-words").text
    assert "A late fee of $25.00 is charged once more than 5 days after the due date" in words


def test_bad_late_fee_input_is_refused_field_by_field(owner_client, rt):
    saved = fresh_company(rt, "demo").settings.get("late_fees")  # the demo's own
    response = _save(
        owner_client, late_fee_percent="30", late_fee_base_rate="4", late_fee_base_rate_on=""
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Give the base rate and the day it took effect together." in page
    assert "Number must be between 0 and 25" in page
    assert "Traceback" not in page
    assert fresh_company(rt, "demo").settings.get("late_fees") == saved
    response = _save(owner_client, late_fee_preset="mars")
    assert response.status_code == 400


def test_charges_show_and_the_owner_waives_one(owner_client, rt):
    _save(owner_client, late_fees_enabled="y", late_fee_flat="25.00", late_fee_grace_days="30")
    run = assess_late_fees(rt, fresh_company(rt, "demo"))
    assert run.charged
    table = parse(owner_client.get(URL).data).by_id("late-fee-charges")
    assert len(table.find_all("tr")) - 1 == min(len(run.charged), 100)
    first = run.charged[0]
    page = owner_client.get(f"/c/demo/invoices/{first.invoice_id}")
    doc = parse(page.data)
    assert first.description in doc.by_id("late-fees").text
    with rt.sessions() as s:
        charge = s.scalar(
            select(LateFeeAssessment).where(LateFeeAssessment.invoice_id == first.invoice_id)
        )
    response = owner_client.post(
        f"/c/demo/late-fees/{charge.id}/waive", data={"csrf_token": csrf_token(page.data)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/c/demo/invoices/{first.invoice_id}"
    with rt.sessions() as s:
        assert s.get(LateFeeAssessment, charge.id).status == "waived"
        voids = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ledger_fee_void"))
        assert len(list(voids)) == 1
    doc = parse(owner_client.get(f"/c/demo/invoices/{first.invoice_id}").data)
    assert "waived" in doc.by_id("invoice-late-fees").text


def test_the_owner_exempts_a_customer_from_an_invoice_page(owner_client, rt):
    _save(owner_client, late_fees_enabled="y", late_fee_flat="25.00")
    with rt.sessions() as s:
        inv = s.scalar(select(Invoice).where(Invoice.is_open).order_by(Invoice.id).limit(1))
    page = owner_client.get(f"/c/demo/invoices/{inv.id}")
    form = parse(page.data).by_id("late-fees").find("form")
    response = owner_client.post(form.attrs["action"], data=form_fields(form))
    assert response.status_code == 302
    assert response.headers["Location"] == f"/c/demo/invoices/{inv.id}"
    with rt.sessions() as s:
        own = s.scalar(
            select(CustomerReminderSettings).where(
                CustomerReminderSettings.customer_id == inv.customer_id
            )
        )
        assert own.late_fees_exempt is True
    assert parse(owner_client.get(URL).data).by_id("late-fees-exempt") is not None
    run = assess_late_fees(rt, fresh_company(rt, "demo"))
    assert all(a.customer_id != inv.customer_id for a in run.charged)


def test_another_company_s_charge_cannot_be_waived(owner_client, rt):
    page = owner_client.get(URL)
    response = owner_client.post(
        "/c/demo/late-fees/999999/waive", data={"csrf_token": csrf_token(page.data)}
    )
    assert response.status_code == 404


# --- charge_from: turning fees on does not back-charge old invoices (today is 24 Nov 2026) ----


def test_turning_fees_on_charges_from_today_not_every_old_invoice(owner_client, rt):
    # Off first: the date goes with it, and the page offers none.
    assert _save(owner_client, late_fees_enabled=None).status_code == 302
    assert fresh_company(rt, "demo").settings["late_fees"]["charge_from"] is None
    form = parse(owner_client.get(URL).data).find("form", action=f"{URL}/late_fees")
    assert form_fields(form)["late_fees-late_fee_charge_from"] == ""
    # On, the date left empty: today, in the business's timezone.
    response = _save(owner_client, late_fees_enabled="y", late_fee_charge_from="")
    assert response.status_code == 302
    fees = fresh_company(rt, "demo").settings["late_fees"]
    assert (fees["enabled"], fees["charge_from"]) == (True, "2026-11-24")
    doc = parse(owner_client.get(URL).data)
    assert "on or after Nov 24, 2026" in doc.by_id("late-fees-charge-from").text
    # Only invoices whose 30-day grace period ends today or later: due 24 October at the
    # earliest (24 Oct + 31 days = 24 Nov); the demo ledger's older overdue ones are left alone.
    run = assess_late_fees(rt, fresh_company(rt, "demo"))
    with rt.sessions() as s:
        due = dict(
            s.execute(select(Invoice.id, Invoice.due_on).where(Invoice.is_open)).tuples().all()
        )
    older = [d for d in due.values() if (date(2026, 11, 24) - d).days > 31]
    assert len(older) > 20  # plenty that the old rule would have back-charged
    # On the demo ledger, one such: due 24 October.
    assert [due[a.invoice_id] for a in run.charged] == [date(2026, 10, 24)]


def test_an_earlier_charge_from_is_kept_and_an_empty_one_keeps_the_saved_day(owner_client, rt):
    _save(owner_client, late_fees_enabled=None)
    # The owner chooses an earlier day deliberately while turning fees on.
    _save(owner_client, late_fees_enabled="y", late_fee_charge_from="2026-09-01")
    assert fresh_company(rt, "demo").settings["late_fees"]["charge_from"] == "2026-09-01"
    # Saved again with fees on: the day shown stays; emptied, the saved day stays too (never
    # "no limit", which would back-charge everything).
    _save(owner_client, late_fee_flat="30.00")
    assert fresh_company(rt, "demo").settings["late_fees"]["charge_from"] == "2026-09-01"
    _save(owner_client, late_fee_charge_from="")
    assert fresh_company(rt, "demo").settings["late_fees"]["charge_from"] == "2026-09-01"
    run = assess_late_fees(rt, fresh_company(rt, "demo"))
    with rt.sessions() as s:
        due = dict(s.execute(select(Invoice.id, Invoice.due_on)).tuples().all())
    # 1 Sep - 31 days = 1 Aug: invoices due from then on, 30 days past due by today.
    assert run.charged
    assert all(date(2026, 8, 1) <= due[a.invoice_id] <= date(2026, 10, 24) for a in run.charged)


def test_a_bad_charge_from_date_is_a_field_error_not_a_500(owner_client, rt):
    saved = fresh_company(rt, "demo").settings.get("late_fees")
    for bad in ("2026-02-30", "next tuesday", "24/11/2026"):
        response = _save(owner_client, late_fee_charge_from=bad)
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert "Not a valid date value." in page and "Traceback" not in page
    assert fresh_company(rt, "demo").settings.get("late_fees") == saved


def test_an_unreadable_saved_charge_from_turns_fees_off_until_the_owner_turns_them_on(
    owner_client, rt
):
    with transaction(rt.sessions) as s:
        c = s.scalar(select(Company).where(Company.slug == "demo"))
        c.settings = {**c.settings, "late_fees": {**c.settings["late_fees"], "charge_from": "x"}}
    assert assess_late_fees(rt, fresh_company(rt, "demo")).charged == []
    page = owner_client.get(URL).get_data(as_text=True)
    assert "The day late fees are charged from could not be read" in page
    form = parse(page.encode()).find("form", action=f"{URL}/late_fees")
    assert "late_fees-late_fees_enabled" not in form_fields(form)
    # Turned on again with the date left empty: from today.
    assert _save(owner_client, late_fees_enabled="y").status_code == 302
    assert fresh_company(rt, "demo").settings["late_fees"]["charge_from"] == "2026-11-24"


def test_a_posted_charge_named_its_fee_invoice_by_the_ledgers_id_not_the_number_sent(
    owner_client, rt, demo_company
):
    # The customer gets invoice LF-1482; the owner's pages said "posted · ledger INV1482".
    _save(owner_client, late_fees_enabled="y", late_fee_flat="25.00", late_fee_grace_days="30")
    assert assess_late_fees(rt, fresh_company(rt, "demo")).charged
    drain(rt)
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
        s.expunge(conn)
    sync_now(rt, conn)
    with rt.sessions() as s:
        charge = s.scalars(
            select(LateFeeAssessment).where(LateFeeAssessment.status == "posted")
        ).first()
        fee_number = s.scalar(
            select(Invoice.number).where(
                Invoice.company_id == demo_company.id, Invoice.source_id == charge.ledger_ref
            )
        )
    assert fee_number.startswith("LF-") and fee_number != charge.ledger_ref
    said = (
        parse(owner_client.get(f"/c/demo/invoices/{charge.invoice_id}").data)
        .by_id("invoice-late-fees")
        .text
    )
    assert f"posted · fee invoice {fee_number}" in said and charge.ledger_ref not in said
    settings = parse(owner_client.get(URL).data).by_id("late-fee-charges").text
    assert f"fee invoice {fee_number}" in settings


@pytest.mark.parametrize("field", ["late_fee_charge_from", "late_fee_base_rate_on"])
@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1800-01-01"])
def test_a_late_fee_date_off_the_calendar_the_app_keeps_was_saved(owner_client, rt, field, day):
    # 1800 back-charged every old invoice; year 1 came back as "1-01-01", which the browser's date
    # input shows empty, and every later save of the section was refused.
    saved = fresh_company(rt, "demo").settings.get("late_fees")
    extra = {"late_fee_base_rate": "5"} if field == "late_fee_base_rate_on" else {}
    response = _save(owner_client, **{field: day}, **extra)
    assert response.status_code == 400
    assert "Choose a date between 1900-01-01 and 2999-12-31" in response.get_data(as_text=True)
    assert fresh_company(rt, "demo").settings.get("late_fees") == saved
