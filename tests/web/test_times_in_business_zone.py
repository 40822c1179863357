"""Every time an owner's page shows is in the business's timezone, the zone named, in the one
format of `clock.local_text` ("Nov 24, 2026, 09:00 CST"): issue 13's consistency. The
dashboard, settings, payments and calls pages wrote some in UTC ("2026-11-24 15:00 UTC") or in
UTC with no zone at all ("2026-11-24 15:00", six hours off for a business in Chicago)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from arbridge.clock import DemoClock, local_text
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Connection, Invitation, SmsReply, SyncError
from tests.web.conftest import form_fields, parse
from tests.web.test_owner_pages import _payments

# A time as the pages wrote them before: ISO day and hour (UTC, named or not), or an hour
# followed by "UTC" (a zone without an abbreviation reads "UTC+04", which stays allowed).
NOT_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}|\d{2}:\d{2} UTC\b(?![+-])")


def _text(owner_client, path: str) -> str:
    response = owner_client.get(path)
    assert response.status_code == 200, path
    return parse(response.data).text


def _times_to_show(rt, company) -> dict[str, object]:
    """A row behind each kind of time the pages show, an hour and a half before now."""
    at = rt.clock.now() - timedelta(minutes=90)
    with transaction(rt.sessions) as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
        conn.last_sync_at = at
        s.add(
            Activity(
                company_id=company.id,
                kind="test.time",
                message="Something the owner should see",
                occurred_at=at,
            )
        )
        s.add(
            SyncError(
                company_id=company.id,
                connection_id=conn.id,
                entity="invoices",
                source_id="bad-1",
                message="field 'total' is not a number",
                occurred_at=at,
            )
        )
        s.add(
            Invitation(
                company_id=company.id,
                email="teammate@example.com",
                token_hash="f" * 64,
                created_at=at,
                expires_at=at + timedelta(days=7),
                role="viewer",
            )
        )
        s.add(
            SmsReply(
                company_id=company.id,
                message_sid="SM" + "0" * 32,
                from_number="+13125550199",
                body="Paying Friday",
                received_at=at,
            )
        )
    return {"at": at, "expires": at + timedelta(days=7)}


def test_the_owners_pages_showed_times_in_utc_instead_of_the_business_timezone(
    owner_client, rt, demo_company
):
    times = _times_to_show(rt, demo_company)
    _payments(rt, demo_company.id, 1)
    local = local_text(times["at"], demo_company.timezone)
    assert local.endswith("CST")  # the demo business is in America/Chicago
    for path in ("/c/demo/", "/c/demo/settings", "/c/demo/payments", "/c/demo/calls"):
        text = _text(owner_client, path)
        assert NOT_LOCAL.search(text) is None, (path, NOT_LOCAL.search(text).group(0))
    dashboard = _text(owner_client, "/c/demo/")
    assert f"last synced {local}" in dashboard
    assert f"{local} Something the owner should see" in dashboard
    settings = _text(owner_client, "/c/demo/settings")
    assert f"{local} invoices bad-1" in settings
    assert local_text(times["expires"], demo_company.timezone) in settings
    assert "Paying Friday" in _text(owner_client, "/c/demo/calls")


def test_moving_the_demo_clock_said_the_new_time_in_utc(owner_client, rt, demo_company, tmp_path):
    base = rt.clock
    rt.settings = rt.settings.with_(demo=True)
    rt.clock = DemoClock(tmp_path / "demo-clock.json", base=base)
    page = owner_client.get("/c/demo/plans")
    form = next(
        f for f in parse(page.data).find_all("form") if f.attrs.get("action", "").endswith("/clock")
    )
    fields = {**form_fields(form), "days": "2"}
    response = owner_client.post(form.attrs["action"], data=fields, follow_redirects=True)
    moved = local_text(base.now() + timedelta(days=2), demo_company.timezone)
    text = parse(response.data).text
    assert f"it is now {moved}." in text
    assert NOT_LOCAL.search(text) is None


def test_the_invoices_list_flagged_a_promise_with_an_iso_day(owner_client, rt, demo_company):
    from datetime import date

    from arbridge.sync.model import InvoiceHold
    from arbridge.sync.store import open_invoices

    with transaction(rt.sessions) as s:
        inv = open_invoices(s, demo_company.id)[0]
        number = inv.number
        s.add(
            InvoiceHold(
                company_id=demo_company.id,
                invoice_id=inv.id,
                kind="promise",
                promised_on=date(2026, 12, 4),
                created_by="customer",
                created_at=rt.clock.now(),
            )
        )
    doc = parse(owner_client.get("/c/demo/invoices", query_string={"q": number}).data)
    status = doc.find("td", cls="status").text
    assert "promised for Dec 4, 2026" in status, status
