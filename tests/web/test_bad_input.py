"""Bad input gets a clear 4xx, never a 500: huge and non-finite numbers, ids beyond 64 bits,
dates at the ends of the calendar, digits from other scripts."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.model import Contact, Invoice, InvoiceHold
from arbridge.sync.store import company_today, issue_pay_token, open_invoices
from tests.web.conftest import assert_friendly_error, csrf_token, form_fields, fresh_company, parse

SETTINGS = "/c/demo/settings"
BEYOND_64_BITS = "99999999999999999999"
HUGE = ("1e999999", "9" * 400, BEYOND_64_BITS)
NON_FINITE = ("sNaN", "NaN", "Infinity", "-Infinity")
OTHER_DIGITS = ("²", "١٢٣", "１２", "15\u0663")


@pytest.fixture
def crashes(caplog):
    """The records of the app's crash handler: a test fails if any appear."""
    caplog.set_level(logging.ERROR, logger="arbridge.web")
    return lambda: [r for r in caplog.records if "unhandled error" in r.getMessage()]


def _save(client, section: str, **changes: str):
    doc = parse(client.get(SETTINGS).data)
    data = form_fields(doc.find("form", action=f"{SETTINGS}/{section}"))
    data.update({f"{section}-{k}": v for k, v in changes.items()})
    return client.post(f"{SETTINGS}/{section}", data=data)


# ---------------------------------------------------------------------------------------------
# Ids and page numbers.


def test_page_beyond_64_bits_is_404_not_500(owner_client, crashes):
    for page in [BEYOND_64_BITS, "9" * 400, str(2**62), "１２", "²"]:
        response = owner_client.get(f"/c/demo/?page={page}")
        assert response.status_code == 404, page
        assert_friendly_error(response.get_data(as_text=True))
    assert owner_client.get("/c/demo/?page=2").status_code == 200
    assert not crashes()


@pytest.mark.parametrize(
    "path",
    ["/c/demo/invoices/{id}", "/c/demo/mailbox/{id}", "/c/demo/customers/{id}/case-file.json"],
)
def test_an_id_beyond_64_bits_is_404_not_500(owner_client, crashes, path):
    # 2**31: ids are INTEGER columns, which PostgreSQL keeps in 32 bits.
    for ident in [BEYOND_64_BITS, "9" * 400, str(2**63), str(2**31)]:
        response = owner_client.get(path.format(id=ident))
        assert response.status_code == 404, ident
        assert_friendly_error(response.get_data(as_text=True))
    assert not crashes()


POSTED_IDS = (
    "/c/demo/invoices/{id}/pay-link",
    "/c/demo/invoices/{id}/pause",
    "/c/demo/invoices/{id}/revoke-links",
    "/c/demo/customers/{id}/do-not-chase",
    "/c/demo/customers/{id}/sequence",
    "/c/demo/customers/{id}/statement-link",
    "/c/demo/customers/{id}/agency",
    "/c/demo/customers/{id}/agency/undo",
    "/c/demo/payments/{id}/refund",
    "/c/demo/calls/{id}/done",
    "/c/demo/holds/{id}/resolve",
)


def test_a_posted_id_beyond_64_bits_is_404_not_500(owner_client, crashes):
    token = csrf_token(owner_client.get(SETTINGS).data)
    for path in POSTED_IDS:
        response = owner_client.post(path.format(id=BEYOND_64_BITS), data={"csrf_token": token})
        assert response.status_code == 404, path
    assert not crashes()


def test_an_invoice_id_in_other_digits_is_404_not_that_invoice(owner_client, rt, demo_company):
    with rt.sessions() as s:
        inv_id = open_invoices(s, demo_company.id)[0].id
    fullwidth = str(inv_id).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert owner_client.get(f"/c/demo/invoices/{inv_id}").status_code == 200
    assert owner_client.get(f"/c/demo/invoices/{fullwidth}").status_code == 404


def test_a_preview_invoice_id_beyond_64_bits_is_404_not_500(owner_client, crashes):
    for path in ("/c/demo/reminders", "/c/demo/reminders/email.html"):
        for ident in [BEYOND_64_BITS, "9" * 400, "１２", "sNaN"]:
            response = owner_client.get(path, query_string={"invoice_id": ident})
            assert response.status_code == 404, (path, ident)
    assert not crashes()


def test_a_test_send_invoice_id_beyond_64_bits_is_404_not_500(owner_client, crashes):
    token = csrf_token(owner_client.get("/c/demo/reminders").data)
    response = owner_client.post(
        "/c/demo/reminders/test-send", data={"csrf_token": token, "invoice_id": BEYOND_64_BITS}
    )
    assert response.status_code == 404
    assert not crashes()


# ---------------------------------------------------------------------------------------------
# Numbers in the settings forms.

INTEGER_FIELDS = [
    ("company", "sync_interval_minutes"),
    ("reminders", "collections_hour"),
    ("reminders", "max_per_week"),
    ("reminders", "statement_link_days"),
    ("payments", "discount_days"),
]
DECIMAL_FIELDS = [("payments", "discount_percent"), ("plans", "plan_min_balance")]


def _valid_rest(section: str) -> dict[str, str]:
    return {"discount_percent": "2", "discount_days": "10"} if section == "payments" else {}


@pytest.mark.parametrize(("section", "name"), INTEGER_FIELDS + DECIMAL_FIELDS)
def test_a_huge_or_non_finite_number_in_a_settings_field_is_400_not_500(
    owner_client, rt, crashes, section, name
):
    before = fresh_company(rt, "demo")
    for value in [*HUGE, *NON_FINITE]:
        response = _save(owner_client, section, **{**_valid_rest(section), name: value})
        assert response.status_code == 400, value
        body = response.get_data(as_text=True)
        assert "Please correct the highlighted fields." in body
        assert parse(body).find(cls="has-error") is not None
        assert owner_client.get(SETTINGS).status_code == 200
    assert not crashes()
    assert fresh_company(rt, "demo").settings == before.settings


@pytest.mark.parametrize(("section", "name"), INTEGER_FIELDS + DECIMAL_FIELDS)
def test_digits_of_other_scripts_are_not_taken_for_numbers(
    owner_client, rt, crashes, section, name
):
    before = fresh_company(rt, "demo")
    for value in OTHER_DIGITS:
        response = _save(owner_client, section, **{**_valid_rest(section), name: value})
        assert response.status_code == 400, value
        assert "digits 0–9" in response.get_data(as_text=True)
    assert not crashes()
    after = fresh_company(rt, "demo")
    assert (after.settings, after.sync_interval_minutes, after.collections_hour) == (
        before.settings,
        before.sync_interval_minutes,
        before.collections_hour,
    )


def test_a_nul_character_in_a_field_or_query_is_400_not_500(owner_client, rt, crashes):
    before = fresh_company(rt, "demo")
    response = _save(owner_client, "company", name="Acme\x00 Supply")
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)
    assert owner_client.get("/c/demo/reminders?template=over\x00due").status_code == 400
    assert fresh_company(rt, "demo").name == before.name
    assert not crashes()


def test_minus_zero_is_saved_as_zero(owner_client, rt):
    response = _save(owner_client, "plans", plans_enabled="y", plan_min_balance="-0")
    assert response.status_code == 302
    assert fresh_company(rt, "demo").settings["plans"]["min_balance"] == "0"


def test_a_huge_plan_minimum_is_refused_and_the_settings_page_keeps_working(
    owner_client, rt, crashes
):
    for value in ("1e15", "1" + "0" * 12):
        response = _save(owner_client, "plans", plan_min_balance=value)
        assert response.status_code == 400, value
    assert _save(owner_client, "plans", plan_min_balance="999999999999.999").status_code == 302
    assert owner_client.get(SETTINGS).status_code == 200
    assert not crashes()


# ---------------------------------------------------------------------------------------------
# The reminders page: its sequence form and its as-of date.


def _sequence(client, **changes: str):
    doc = parse(client.get("/c/demo/reminders").data)
    data = form_fields(doc.find("form", action="/c/demo/reminders/sequence"))
    data.update(changes)
    return client.post("/c/demo/reminders/sequence", data=data)


@pytest.mark.parametrize(
    "name",
    [
        "offset_days",
        "min_balance",
        "quiet_start",
        "quiet_end",
        "max_sync_age_minutes",
        "statement_day",
    ],
)
def test_a_bad_number_in_the_sequence_is_refused_and_the_page_keeps_working(
    owner_client, rt, crashes, name
):
    before = fresh_company(rt, "demo").settings
    for value in [*HUGE, *NON_FINITE, *OTHER_DIGITS]:
        response = _sequence(owner_client, **{name: value})
        # The page again, the form as typed and the reason above it.
        assert response.status_code == 400
        assert "Not saved:" in parse(response.data).by_id("steps-error").text, value
    assert fresh_company(rt, "demo").settings == before
    assert not crashes()


def test_a_reminders_as_of_date_outside_the_calendar_is_a_message_not_500(owner_client, crashes):
    for value, says in [
        ("9999-12-31", "Choose a date between 1900-01-01 and 2999-12-31; showing today."),
        ("0001-01-01", "Choose a date between 1900-01-01 and 2999-12-31; showing today."),
        ("２０２６-11-24", "Enter a date as YYYY-MM-DD"),
        ("2026-02-30", "2026-02-30 is not a date on the calendar"),
    ]:
        response = owner_client.get("/c/demo/reminders", query_string={"as_of": value})
        assert response.status_code == 400, value
        assert says in response.get_data(as_text=True)
    for edge in ("2999-12-31", "1900-01-01"):
        assert owner_client.get(f"/c/demo/reminders?as_of={edge}").status_code == 200
    assert not crashes()


@pytest.mark.parametrize("path", ["/c/demo/invoices", "/c/demo/invoices.csv"])
@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("issued_from=2026-13-01", "issued_from: 2026-13-01 is not a date on the calendar"),
        ("closed_from=2026-02-30", "closed_from: 2026-02-30 is not a date on the calendar"),
        ("issued_to=2026-11-24junk", "issued_to: Enter a date as YYYY-MM-DD"),
        ("closed_to=0001-01-01", "closed_to: Choose a date between 1900-01-01 and 2999-12-31"),
        ("status=bogus", "status: choose one of open, overdue, paid, voided, all"),
        ("bucket=bogus", "bucket: choose one of"),
        ("hold=bogus", "hold: choose one of any, paused, reply, promise"),
        ("delivery=bogus", "delivery: choose one of unsent"),
        ("sort=bogus", "sort: choose one of number, customer, issued, due, total, balance"),
        ("dir=up", "dir: choose one of asc, desc"),
        ("expected=14", "expected: choose one of 1, 2"),
        ("currency=EURO", "currency: a three-letter currency code, like USD"),
    ],
)
def test_a_malformed_invoice_filter_was_ignored_and_every_invoice_listed(
    owner_client, crashes, path, query, says
):
    response = owner_client.get(f"{path}?{query}")
    assert response.status_code == 400, query
    body = response.get_data(as_text=True)
    assert says in body, body
    assert_friendly_error(body)
    assert not crashes()


def test_the_invoice_filters_the_pages_link_to_still_work(owner_client):
    for query in (
        "",
        "status=&bucket=&hold=&delivery=&currency=&q=&sort=&dir=",  # the form, nothing chosen
        "status=all&sort=total&dir=desc",
        "issued_from=2026-09-01&issued_to=2026-11-24",
        "closed_from=2026-09-01&closed_to=2026-11-24",
        "expected=later",
        "currency=eur",
        "delivery=unsent&hold=any&bucket=1_30",
    ):
        assert owner_client.get(f"/c/demo/invoices?{query}").status_code == 200, query


# ---------------------------------------------------------------------------------------------
# The customer's side.


def test_an_unsubscribe_token_with_other_digits_is_404_not_500(app, rt, demo_company, crashes):
    client = app.test_client()
    with rt.sessions() as s:
        contact = s.scalars(select(Contact).order_by(Contact.id)).first()
        mac = unsubscribe_token(rt.settings.secret_key, contact.id).partition(".")[2]
    for head in ("²", "١٢٣", "１２", BEYOND_64_BITS):
        assert client.get(f"/u/{head}.{mac}").status_code == 404, head
        assert client.post(f"/u/{head}.{mac}").status_code == 404, head
    assert not crashes()


def test_a_promise_date_at_the_ends_of_the_calendar_is_refused_calmly(
    app, rt, demo_company, crashes
):
    today = company_today(demo_company, rt.clock)
    with rt.sessions() as s:
        inv_id = next(i.id for i in open_invoices(s, demo_company.id) if i.due_on < today)
        token = issue_pay_token(s, rt.clock, s.get(Invoice, inv_id))
        s.commit()
    client = app.test_client()
    page = client.get(f"/pay/{token}")
    for promised in ["9999-12-31", "0001-01-01", "２０２６-12-01", "1e999999", "sNaN", "-0"]:
        response = client.post(
            f"/pay/{token}/respond",
            data={"csrf_token": csrf_token(page.data), "kind": "promise", "promised_on": promised},
            follow_redirects=True,
        )
        assert response.status_code == 200
        assert "Please choose" in response.get_data(as_text=True), promised
    assert not crashes()
    with rt.sessions() as s:
        assert not s.scalars(select(InvoiceHold).where(InvoiceHold.invoice_id == inv_id)).all()
