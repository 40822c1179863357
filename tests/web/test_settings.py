"""The settings page: five sections, each saved on its own, validated on the server."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.clock import local_text
from arbridge.collections.policy import policy
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Company, Connection, Invoice
from arbridge.sync.store import issue_pay_token, open_invoices
from tests.web.conftest import (
    assert_friendly_error,
    csrf_token,
    form_fields,
    fresh_company,
    parse,
)

URL = "/c/demo/settings"


def _form(client, section: str) -> dict[str, str]:
    doc = parse(client.get(URL).data)
    form = doc.find("form", action=f"{URL}/{section}")
    assert form is not None, section
    return form_fields(form)


def _save(client, section: str, **changes: str | None):
    data = _form(client, section)
    for name, value in changes.items():
        key = f"{section}-{name}"
        if value is None:
            data.pop(key, None)  # an unchecked box is simply absent
        else:
            data[key] = value
    return client.post(f"{URL}/{section}", data=data)


def _settings_changed(rt) -> int:
    with rt.sessions() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Activity)
                .where(Activity.kind == "settings.changed")
            )
            or 0
        )


def test_settings_page_has_every_section(owner_client):
    response = owner_client.get(URL)
    assert response.status_code == 200
    doc = parse(response.data)
    titles = {s.attrs["id"]: s.find("h2").text for s in doc.find_all("section", cls="card")}
    assert titles == {
        "business": "Business",
        "connections": "Connections",
        "people": "People",
        "reminders": "Reminders",
        "sms": "Text messages (SMS)",
        "payments": "Payments",
        "plans": "Installment plans",
        "delivery": "Invoice delivery",
        "late_fees": "Late fees and interest",
        "credit": "Credit limits",
    }
    nav = [a.text for a in doc.find("nav", cls="sections").find_all("a")]
    assert nav == [
        "Business",
        "Connections",
        "People",
        "Reminders",
        "Text messages",
        "Payments",
        "Plans",
        "Invoice delivery",
        "Late fees",
        "Credit limits",
    ]
    # Every form carries its CSRF token.
    for form in doc.find_all("form", method="post"):
        assert any(k.endswith("csrf_token") for k in form_fields(form)), form.attrs["action"]
    # The current values are filled in.
    assert _form(owner_client, "company")["company-name"] == "Acme Supply Co."
    assert _form(owner_client, "company")["company-timezone"] == "America/Chicago"
    assert _form(owner_client, "reminders")["reminders-collections_hour"] == "9"
    assert "Demo ledger (simulated)" in doc.by_id("connections").text


def test_submitting_the_forms_unchanged_keeps_the_defaults(owner_client, rt, demo_company):
    with transaction(rt.sessions) as s:  # the defaults (the demo turns plans on)
        s.get(Company, demo_company.id).settings = {}
    for section in ("company", "reminders", "payments", "plans", "late_fees", "credit"):
        response = owner_client.post(f"{URL}/{section}", data=_form(owner_client, section))
        assert response.status_code == 302, (section, response.get_data(as_text=True))
        # Back at the section saved, by the page's own id for it (#company named no section).
        anchor = "business" if section == "company" else section
        assert response.headers["Location"] == f"{URL}#{anchor}"
        assert f'id="{anchor}"' in owner_client.get(URL).get_data(as_text=True)
    company = fresh_company(rt, "demo")
    assert (company.name, company.timezone, company.sync_interval_minutes) == (
        "Acme Supply Co.",
        "America/Chicago",
        15,
    )
    assert company.collections_hour == 9
    assert policy(company.settings) == policy({})


def test_save_business(owner_client, rt):
    response = _save(
        owner_client,
        "company",
        name="  Acme Supply Company  ",
        timezone="America/Denver",
        sync_interval_minutes="30",
    )
    assert response.status_code == 302
    company = fresh_company(rt, "demo")
    assert company.name == "Acme Supply Company"
    assert company.timezone == "America/Denver"
    assert company.sync_interval_minutes == 30
    page = owner_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Settings saved." in page
    assert _form(owner_client, "company")["company-timezone"] == "America/Denver"
    assert _settings_changed(rt) == 1


def test_save_reminders(owner_client, rt):
    response = _save(
        owner_client, "reminders", reminders_enabled=None, collections_hour="14", max_per_week="3"
    )
    assert response.status_code == 302
    company = fresh_company(rt, "demo")
    assert company.collections_hour == 14
    pol = policy(company.settings)
    assert pol.reminders_enabled is False
    assert pol.max_reminders_per_week == 3
    form = _form(owner_client, "reminders")
    assert form["reminders-collections_hour"] == "14"
    assert "reminders-reminders_enabled" not in form


def test_save_payments_with_a_discount(owner_client, rt):
    response = _save(
        owner_client,
        "payments",
        accept_ach=None,
        discount_percent="2.5",
        discount_days="10",
    )
    assert response.status_code == 302
    pol = policy(fresh_company(rt, "demo").settings)
    assert pol.accept_card is True
    assert pol.accept_ach is False
    assert pol.discount_percent == Decimal("2.5")
    assert pol.discount_days == 10
    form = _form(owner_client, "payments")
    assert Decimal(form["payments-discount_percent"]) == Decimal("2.5")
    assert form["payments-discount_days"] == "10"


def test_save_plans(owner_client, rt):
    response = _save(
        owner_client,
        "plans",
        plans_enabled="y",
        plan_min_balance="750",
        plan_max_installments="6",
    )
    assert response.status_code == 302
    pol = policy(fresh_company(rt, "demo").settings)
    assert pol.plans_enabled is True
    assert pol.plan_min_balance == Decimal("750")
    assert pol.plan_max_installments == 6
    assert _form(owner_client, "plans")["plans-plan_max_installments"] == "6"


def test_save_the_plans_offer_choices_fee_standing_and_agreement(owner_client, rt):
    data = _form(owner_client, "plans")
    data.update(
        {
            "plans-plans_enabled": "y",
            "plans-plan_frequencies": ["week", "month"],
            "plans-plan_deposit_percent": "25",
            "plans-plan_fee_amount": "10",
            "plans-plan_fee_percent": "1.5",
            "plans-plan_good_standing_only": "y",
            "plans-plan_good_standing_days": "45",
            "plans-plan_agreement_text": "I agree to pay Acme on the dates above.\r\n",
        }
    )
    assert owner_client.post(f"{URL}/plans", data=data).status_code == 302
    pol = policy(fresh_company(rt, "demo").settings)
    assert pol.plans_enabled is True
    assert pol.plan_frequencies == ("week", "month")
    assert pol.plan_deposit_percent == Decimal("25")
    assert (pol.plan_fee_amount, pol.plan_fee_percent) == (Decimal("10"), Decimal("1.5"))
    assert (pol.plan_good_standing_only, pol.plan_good_standing_days) == (True, 45)
    assert pol.plan_agreement_text == "I agree to pay Acme on the dates above."
    page = parse(owner_client.get(URL).data)
    checked = {
        i.attrs["value"]
        for i in page.find_all("input")
        if i.attrs.get("name") == "plans-plan_frequencies" and "checked" in i.attrs
    }
    assert checked == {"week", "month"}
    # No `required` on the boxes: the browser would then refuse the form until all are ticked.
    boxes = [i for i in page.find_all("input") if i.attrs.get("name") == "plans-plan_frequencies"]
    assert len(boxes) == 3 and not [b for b in boxes if "required" in b.attrs]
    # An emptied agreement is the standard one again; the other choices are kept.
    data["plans-plan_agreement_text"] = ""
    assert owner_client.post(f"{URL}/plans", data=data).status_code == 302
    pol = policy(fresh_company(rt, "demo").settings)
    assert pol.plan_agreement_text is None and pol.plan_frequencies == ("week", "month")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"plans-plan_frequencies": []}, "Choose at least one"),
        ({"plans-plan_deposit_percent": "100"}, "between 0 and 99"),
        ({"plans-plan_fee_percent": "25"}, "between 0 and 20"),
        ({"plans-plan_fee_amount": "-5"}, "at least 0"),
        ({"plans-plan_good_standing_days": "0"}, "between 1 and 365"),
        ({"plans-plan_agreement_text": "x" * 20_001}, "longer than 20000"),
    ],
)
def test_absurd_plan_choices_are_refused(owner_client, rt, changes, error):
    before = fresh_company(rt, "demo").settings
    data = {**_form(owner_client, "plans"), **changes}
    response = owner_client.post(f"{URL}/plans", data=data)
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)
    assert fresh_company(rt, "demo").settings == before


@pytest.mark.parametrize(
    ("section", "changes", "error"),
    [
        ("reminders", {"collections_hour": "25"}, "between 0 and 23"),
        ("reminders", {"collections_hour": "-1"}, "between 0 and 23"),
        ("reminders", {"collections_hour": "nine"}, "Not a valid integer value"),
        ("reminders", {"max_per_week": "0"}, "between 1 and 7"),
        ("company", {"timezone": "Mars/Olympus_Mons"}, "Not a valid choice"),
        ("company", {"timezone": "UTC"}, "Not a valid choice"),
        ("company", {"name": "   "}, "This field is required"),
        ("company", {"sync_interval_minutes": "1"}, "between 5 and 1440"),
        ("payments", {"discount_percent": "5", "discount_days": ""}, "Say within how many days"),
        ("payments", {"discount_percent": "25", "discount_days": "10"}, "between 0 and 20"),
        ("plans", {"plan_min_balance": "-1"}, "at least 0"),
        ("plans", {"plan_max_installments": "5"}, "Not a valid choice"),
    ],
)
def test_invalid_values_are_refused_and_change_nothing(
    owner_client, rt, demo_company, section, changes, error
):
    before = fresh_company(rt, "demo")
    response = _save(owner_client, section, **changes)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "Please correct the highlighted fields." in body
    assert error in body
    doc = parse(body)
    assert doc.by_id(section if section != "company" else "business").find(cls="has-error")
    # The rest of the page is still there.
    assert doc.by_id("connections") is not None
    after = fresh_company(rt, "demo")
    for attr in ("name", "timezone", "sync_interval_minutes", "collections_hour", "settings"):
        assert getattr(after, attr) == getattr(before, attr), attr
    assert _settings_changed(rt) == 0


def test_an_unknown_section_is_not_found(owner_client):
    csrf = csrf_token(owner_client.get(URL).data)
    response = owner_client.post(f"{URL}/secrets", data={"csrf_token": csrf})
    assert response.status_code == 404
    assert_friendly_error(response.get_data(as_text=True))


def test_sync_now_pulls_ledger_changes(owner_client, rt, demo_company, clock):
    with transaction(rt.sessions) as s:
        inv = open_invoices(s, demo_company.id)[0]
        conn = s.scalar(select(Connection).where(Connection.company_id == demo_company.id))
        inv_id, source_id, tenant = inv.id, inv.source_id, conn.tenant_id
    rt.demo_ledger(tenant).void_invoice(source_id)
    clock.advance(timedelta(minutes=7))

    doc = parse(owner_client.get(URL).data)
    sync_form = doc.find("form", action="/c/demo/sync")
    assert sync_form is not None and sync_form.find("button").text == "Sync now"
    response = owner_client.post("/c/demo/sync", data=form_fields(sync_form))
    assert response.status_code == 302
    assert response.headers["Location"] == f"{URL}#connections"
    page = owner_client.get(URL).get_data(as_text=True)
    assert "Synced with your ledger: 1 change." in page

    with rt.sessions() as s:
        assert s.get(Invoice, inv_id).status == "voided"
        conn = s.scalar(select(Connection).where(Connection.company_id == demo_company.id))
        assert conn.last_sync_at == clock.now()
    assert f"{local_text(clock.now(), 'America/Chicago')}</td>" in page


def test_a_new_daily_hour_moves_the_scheduled_run(owner_client, rt, demo_company):
    from datetime import UTC, datetime

    from sqlalchemy import select

    from arbridge.sync.model import CompanyJob
    from arbridge.worker import claim_and_run

    assert claim_and_run(rt, "collections")  # today's run happened at 09:00 Chicago
    page = owner_client.get("/c/demo/settings")
    doc = parse(page.data)
    form = next(
        f for f in doc.find_all("form") if f.attrs.get("action", "").endswith("/settings/reminders")
    )
    fields = form_fields(form)
    fields["reminders-collections_hour"] = "16"
    assert owner_client.post("/c/demo/settings/reminders", data=fields).status_code == 302
    with rt.sessions() as s:
        job = s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == demo_company.id, CompanyJob.job == "collections"
            )
        )
    assert job.next_run_at == datetime(2026, 11, 25, 22, tzinfo=UTC)  # tomorrow 16:00 CST


@pytest.mark.parametrize(
    ("card", "ach", "says"),
    [("y", None, "Card, through"), (None, "y", "US bank account, through")],
)
def test_the_pay_page_said_card_or_bank_whatever_the_business_takes(
    owner_client, app, rt, card, ach, says
):
    assert _save(owner_client, "payments", accept_card=card, accept_ach=ach).status_code == 302
    with transaction(rt.sessions) as s:
        inv = next(
            i
            for i in open_invoices(s, fresh_company(rt, "demo").id)
            if i.currency == "USD" and not i.payment_pending
        )
        token = issue_pay_token(s, rt.clock, inv)
    page = parse(app.test_client().get(f"/pay/{token}").data)
    assert page.by_id("methods").text.startswith(says)


def test_the_connections_table_said_stripe_was_not_connected_beside_its_own_status(owner_client):
    # The demo takes payments through its simulated checkout (the Payments section said so).
    row = parse(owner_client.get(URL).data).by_id("stripe-connection")
    assert "simulated (demo)" in row.text and "not connected" not in row.text
