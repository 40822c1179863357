"""The live call list (issue 13): balances as of now (a paid, disputed or promised invoice drops
out at once), the contact's name and a tap-to-call phone, links to the invoices, and the call's
outcome logged as reached, voicemail, a promise to pay by a date or a dispute, which puts the
invoices on the same holds as the customer's reply on the pay page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from babel.dates import format_date
from sqlalchemy import func, select

from arbridge.clock import day_text
from arbridge.services.reminders.facts import load_facts
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, CallTask, Contact, Invoice, InvoiceHold, OutboxMessage
from arbridge.sync.store import company_today, issue_pay_token, open_invoices
from tests.web.conftest import csrf_token, fresh_company, parse
from tests.web.test_query_counts import counted


def _task(rt, company, invoices: list[Invoice], key: str = "t") -> int:
    with transaction(rt.sessions) as s:
        task = CallTask(
            company_id=company.id,
            customer_id=invoices[0].customer_id,
            key=f"calls-test:{key}",
            step_key="call",
            invoice_ids=[i.id for i in invoices],
            reason="Overdue after two reminders",
            created_at=rt.clock.now(),
        )
        s.add(task)
        s.flush()
        return task.id


def _customer_with_two_overdue(rt, company, but: int | None = None) -> list[Invoice]:
    """Two overdue USD invoices of one customer (not of customer `but`)."""
    today = company_today(company, rt.clock)
    with rt.sessions() as s:
        found: dict[int, list[Invoice]] = {}
        for inv in open_invoices(s, company.id):
            if inv.customer_id == but:
                continue
            if inv.due_on < today and not inv.payment_pending and inv.currency == "USD":
                found.setdefault(inv.customer_id, []).append(inv)
        return next(v[:2] for v in found.values() if len(v) >= 2)


@pytest.fixture
def call(rt, demo_company):
    """A call about two overdue invoices of one customer, whose primary contact has a phone;
    every other call task closed, so the list holds this one."""
    invoices = _customer_with_two_overdue(rt, demo_company)
    with transaction(rt.sessions) as s:
        for t in s.scalars(select(CallTask)):
            t.done_at = rt.clock.now()
        contact = s.scalars(
            select(Contact)
            .where(Contact.customer_id == invoices[0].customer_id)
            .order_by(Contact.is_primary.desc(), Contact.id)
        ).first()
        contact.name, contact.phone = "Dana Whitfield", "+1 555 010 4477"
    return _task(rt, demo_company, invoices), invoices


def _calls(owner_client):
    return parse(owner_client.get("/c/demo/calls").data)


def _post(owner_client, task_id: int, **data: str):
    token = csrf_token(owner_client.get("/c/demo/calls").data)
    return owner_client.post(f"/c/demo/calls/{task_id}/done", data={"csrf_token": token, **data})


def test_a_call_shows_the_contact_a_tel_link_the_invoices_and_their_balance(owner_client, call):
    task_id, invoices = call
    row = _calls(owner_client).find("li", cls="call", data_task=str(task_id))
    assert row is not None
    tel = row.find("a", cls="tel")
    assert tel.attrs["href"] == "tel:+15550104477" and tel.text == "+1 555 010 4477"
    assert "Dana Whitfield" in row.find("p", cls="call-contact").text
    links = {a.attrs["href"] for a in row.find("ul", cls="call-invoices").find_all("a")}
    assert links == {f"/c/demo/invoices/{i.id}" for i in invoices}
    total = sum(i.open_balance_minor for i in invoices)
    assert row.find("span", cls="call-balance").text == f"${total / 100:,.2f}"


def test_a_paid_invoice_drops_out_at_once_and_a_paid_up_customer_leaves_the_list(
    owner_client, rt, call
):
    task_id, (first, second) = call
    nav = parse(owner_client.get("/c/demo/calls").data).by_id("nav-calls").text
    with transaction(rt.sessions) as s:  # a payment arbridge collected, not yet in the ledger
        s.get(Invoice, first.id).payment_pending = True
    row = _calls(owner_client).find("li", cls="call", data_task=str(task_id))
    assert [li.attrs["data-invoice"] for li in row.find_all("li")] == [str(second.id)]
    assert row.find("span", cls="call-balance").text == f"${second.open_balance_minor / 100:,.2f}"
    with transaction(rt.sessions) as s:  # and the ledger says the other is paid
        inv = s.get(Invoice, second.id)
        inv.status, inv.ledger_balance_minor = "paid", 0
    page = _calls(owner_client)
    assert page.find("li", cls="call", data_task=str(task_id)) is None
    assert page.by_id("no-calls") is not None
    assert page.by_id("nav-calls") is None and nav.startswith("1")


def test_a_promise_logged_on_a_call_holds_the_invoices_as_the_pay_page_would(
    owner_client, client, rt, demo_company, call
):
    task_id, invoices = call
    today = company_today(demo_company, rt.clock)
    promised = today + timedelta(days=10)
    done = _post(owner_client, task_id, outcome="promise", promised_on=promised.isoformat())
    assert done.status_code == 302
    with rt.sessions() as s:
        holds = s.scalars(select(InvoiceHold).order_by(InvoiceHold.invoice_id)).all()
        assert [(h.invoice_id, h.kind, h.promised_on, h.created_by) for h in holds] == [
            (i.id, "promise", promised, "owner") for i in sorted(invoices, key=lambda i: i.id)
        ]
        task = s.get(CallTask, task_id)
        assert (
            task.done_at is not None and task.outcome == f"promised to pay by {day_text(promised)}"
        )
        # The reminders read the same hold: no reminder until the date.
        rows = s.scalars(select(Invoice).where(Invoice.id.in_([i.id for i in invoices]))).all()
        company = s.get(type(demo_company), demo_company.id)
        _, facts = load_facts(s, company, rows, rt.clock.now())
        held = {f.invoice_id: f.promised_on for f in facts}
        assert all(held[i.id] == promised for i in invoices)
        # The owner logged it: no email telling the owner of their own call.
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        token = issue_pay_token(s, rt.clock, s.get(Invoice, invoices[0].id))
        s.commit()
    assert _calls(owner_client).find("li", cls="call", data_task=str(task_id)) is None
    pay = parse(client.get(f"/pay/{token}").data)
    assert pay.by_id("hold-promise") is not None  # the customer sees the promise too
    assert pay.by_id("promise-form") is None


def test_a_dispute_logged_on_a_call_holds_the_invoices_until_closed(owner_client, rt, call):
    task_id, invoices = call
    refused = _post(owner_client, task_id, outcome="dispute")
    assert refused.status_code == 302
    with rt.sessions() as s:
        assert s.get(CallTask, task_id).done_at is None  # a dispute needs what they dispute
    _post(owner_client, task_id, outcome="dispute", note="Says the pallets arrived broken")
    with rt.sessions() as s:
        holds = s.scalars(select(InvoiceHold)).all()
        assert {h.invoice_id for h in holds} == {i.id for i in invoices}
        assert {(h.kind, h.message) for h in holds} == {
            ("dispute", "Says the pallets arrived broken")
        }
    holds_table = _calls(owner_client).by_id("holds")
    assert "logged from a call" in holds_table.text
    assert f"/c/demo/invoices/{invoices[0].id}" in {
        a.attrs["href"] for a in holds_table.find_all("a")
    }


def test_reached_closes_the_call_and_holds_nothing(owner_client, rt, call):
    task_id, _ = call
    outcome = "reached"
    _post(owner_client, task_id, outcome=outcome, note="Will call back Friday")
    with rt.sessions() as s:
        task = s.get(CallTask, task_id)
        assert task.done_at is not None and task.outcome.endswith(": Will call back Friday")
        assert task.attempts == 1
        assert s.scalar(select(func.count()).select_from(InvoiceHold)) == 0
        logged = s.scalars(select(Activity).where(Activity.kind == "reminders.call_done")).one()
        assert logged.data["outcome"] == outcome and logged.customer_id == task.customer_id


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"outcome": "promise"}, "Give the date"),
        ({"outcome": "promise", "promised_on": "2027-13-40"}, "YYYY-MM-DD"),
        ({"outcome": "promise", "promised_on": "2025-01-01"}, "between today and 60 days"),
        ({"outcome": "promise", "promised_on": "2099-01-01"}, "between today and 60 days"),
        ({"outcome": "they said hi"}, "Choose what happened"),
        ({"outcome": "reached", "note": "x" * 2001}, "under 2000"),
    ],
)
def test_a_bad_outcome_is_refused_with_a_reason_and_changes_nothing(
    owner_client, rt, call, data, says
):
    task_id, _ = call
    response = _post(owner_client, task_id, **data)
    assert response.status_code == 302
    page = owner_client.get(response.headers["Location"]).get_data(as_text=True)
    assert says in page
    with rt.sessions() as s:
        assert s.get(CallTask, task_id).done_at is None
        assert s.scalar(select(func.count()).select_from(InvoiceHold)) == 0


def test_the_call_list_costs_the_same_with_one_call_or_eight(owner_client, rt, demo_company, call):
    owner_client.get("/c/demo/calls")
    with counted(rt) as one:
        owner_client.get("/c/demo/calls")
    today = company_today(demo_company, rt.clock)
    with rt.sessions() as s:
        more = [
            i
            for i in open_invoices(s, demo_company.id)
            if i.due_on < today and not i.payment_pending
        ][:7]
    for n, inv in enumerate(more):
        _task(rt, demo_company, [inv], key=f"more{n}")
    with counted(rt) as eight:
        page = owner_client.get("/c/demo/calls")
    assert parse(page.data).find_all("li", cls="call").__len__() == 8
    assert len(eight) == len(one)


def test_logging_a_voicemail_closed_the_call_task_instead_of_keeping_it_to_try_again(
    owner_client, rt, call, clock
):
    task_id, _ = call
    _post(owner_client, task_id, outcome="voicemail", note="Asked them to ring back")
    with rt.sessions() as s:
        task = s.get(CallTask, task_id)
        assert task.done_at is None and task.attempts == 1
        assert task.voicemail_at == rt.clock.now()
        assert s.scalar(select(func.count()).select_from(InvoiceHold)) == 0
        logged = s.scalars(select(Activity).where(Activity.kind == "reminders.call_done")).one()
        assert logged.data["outcome"] == "voicemail" and "Asked them to ring back" in logged.message
    page = _calls(owner_client)
    [item] = [li for li in page.find_all("li") if li.attrs.get("data-task") == str(task_id)]
    today = company_today(fresh_company(rt, "demo"), rt.clock)
    assert f"left a voicemail {format_date(today, 'medium', locale='en_US')}" in item.text
    assert "1 attempt" in item.text
    # The next day, a second try; then reached closes it, three attempts counted.
    clock.advance(timedelta(days=1))
    _post(owner_client, task_id, outcome="voicemail")
    assert "2 attempts" in _calls(owner_client).text
    _post(owner_client, task_id, outcome="reached", note="Paying Monday")
    with rt.sessions() as s:
        task = s.get(CallTask, task_id)
        assert task.done_at is not None and task.attempts == 3
    assert not [
        li
        for li in _calls(owner_client).find_all("li")
        if li.attrs.get("data-task") == str(task_id)
    ]
