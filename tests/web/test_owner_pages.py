"""The owner's pages that show the product (issue 13, Build): the navigation with its counts,
the customers list and page, the invoices list and the payments page."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, select

from arbridge.collections.exports import safe_cell
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CallTask,
    CheckoutSessionRow,
    CollectedAllocation,
    CollectedPayment,
    Company,
    Contact,
    Customer,
    Invoice,
    InvoiceHold,
    OutboxMessage,
    Payment,
    PaymentAllocation,
    PayToken,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.store import aging_report, company_today
from tests.web.conftest import Node, amount, csrf_token, form_fields, parse


def _nav(html: bytes) -> list[str]:
    doc = parse(html)
    return [a.attrs["data-section"] for a in doc.by_id("main-nav").find_all("a")]


def test_the_navigation_names_every_section_and_marks_the_current_one(owner_client):
    page = owner_client.get("/c/demo/reminders")
    assert page.status_code == 200
    sections = _nav(page.data)
    assert sections[0] == "dashboard" and sections[-1] == "settings"
    for name in ("plans", "reminders", "calls"):
        assert name in sections
    current = parse(page.data).by_id("main-nav").find_all("a", aria_current="page")
    assert [a.attrs["data-section"] for a in current] == ["reminders"]
    # The company's name and the sign-out button stay.
    assert b"Acme Supply Co." in page.data and b"Sign out" in page.data


def test_the_navigation_counts_calls_to_make_and_replies_waiting(owner_client, rt, demo_company):
    doc = parse(owner_client.get("/c/demo/").data)
    assert doc.by_id("nav-calls") is None and doc.by_id("nav-replies") is None  # nothing waits
    with transaction(rt.sessions) as s:
        inv, other = s.scalars(
            select(Invoice)
            .where(Invoice.company_id == demo_company.id, Invoice.is_open)
            .order_by(Invoice.id)
            .limit(2)
        ).all()
        now = rt.clock.now()
        for n in range(4):
            s.add(
                CallTask(
                    company_id=demo_company.id,
                    customer_id=inv.customer_id,
                    key=f"nav:call:{n}",
                    step_key="call",
                    # The last is about the disputed invoice only: no call needed, not counted.
                    invoice_ids=[other.id] if n == 3 else [inv.id],
                    reason="A call step",
                    created_at=now,
                    done_at=now if n == 2 else None,  # done: not counted
                )
            )
        for kind, resolved in (("dispute", None), ("dispute", now), ("promise", None)):
            s.add(
                InvoiceHold(
                    company_id=demo_company.id,
                    invoice_id=other.id,
                    kind=kind,
                    created_by="customer",
                    created_at=now,
                    resolved_at=resolved,
                )
            )
    doc = parse(owner_client.get("/c/demo/settings").data)
    calls, replies = doc.by_id("nav-calls"), doc.by_id("nav-replies")
    assert calls.children[0] == "2" and calls.find("span").text == "to make"
    assert replies.children[0] == "1" and replies.find("span").text == "reply waiting"


# ---------------------------------------------------------------------------------------------
# Customers.


def _customer_rows(html: bytes) -> list[Node]:
    table = parse(html).by_id("customers")
    return table.find("tbody").find_all("tr") if table else []


def _cell(tr: Node, cls: str) -> str:
    return tr.find("td", cls=cls).text


def test_the_customers_balances_add_up_to_the_dashboards_open_balance(
    owner_client, rt, demo_company
):
    """The list sums in the database, converting foreign invoices at their own rate and rounding
    each once, the way the dashboard's aging does in Python: the totals agree to the cent."""
    rows = _customer_rows(owner_client.get("/c/demo/customers").data)
    assert len(rows) == 40
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        aging = aging_report(s, company, company_today(company, rt.clock))
    assert sum(amount(_cell(r, "balance")) for r in rows) == aging.open_balance.amount
    assert sum(amount(_cell(r, "overdue")) for r in rows) == aging.overdue_balance.amount


def test_the_customers_list_sorts_searches_and_pages(owner_client):
    by_balance = _customer_rows(owner_client.get("/c/demo/customers?sort=balance&dir=desc").data)
    balances = [amount(_cell(r, "balance")) for r in by_balance]
    assert balances == sorted(balances, reverse=True) and balances[0] > balances[-1]
    by_late = _customer_rows(owner_client.get("/c/demo/customers?sort=lateness&dir=asc").data)
    late = [int(_cell(r, "lateness")) for r in by_late]
    assert late == sorted(late)
    names = [r.find("a").text for r in _customer_rows(owner_client.get("/c/demo/customers").data)]
    assert names == sorted(names, key=str.lower)
    # Search: part of a name, any case; % and _ are letters, not wildcards.
    found = _customer_rows(owner_client.get("/c/demo/customers?q=COPPER").data)
    assert found and all("copper" in r.find("a").text.lower() for r in found)
    assert _customer_rows(owner_client.get("/c/demo/customers?q=%25").data) == []
    # An unknown sort falls back to names; a page past the end is empty, a silly one a 404.
    assert owner_client.get("/c/demo/customers?sort=drop+table&dir=x").status_code == 200
    assert _customer_rows(owner_client.get("/c/demo/customers?page=3").data) == []
    assert owner_client.get("/c/demo/customers?page=abc").status_code == 404


def _paid_invoice(s, company_id, customer_id, number, due, paid_on, minor=10_000):
    inv = Invoice(
        company_id=company_id,
        customer_id=customer_id,
        source="demo",
        source_id=f"late-{number}",
        number=number,
        issued_on=due - timedelta(days=30),
        due_on=due,
        currency="USD",
        exchange_rate=Decimal(1),
        total_minor=minor,
        ledger_balance_minor=0,
        status="paid",
        synced_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    pay = Payment(
        company_id=company_id,
        customer_id=customer_id,
        source="demo",
        source_id=f"late-pay-{number}",
        received_on=paid_on,
        currency="USD",
        exchange_rate=Decimal(1),
        amount_minor=minor,
        synced_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    s.add_all([inv, pay])
    s.flush()
    s.add(
        PaymentAllocation(
            company_id=company_id, invoice_id=inv.id, payment_id=pay.id, amount_minor=minor
        )
    )


def test_lateness_is_the_mean_days_late_of_invoices_closed_in_the_last_year(
    owner_client, rt, demo_company
):
    today = date(2026, 11, 24)
    with transaction(rt.sessions) as s:
        cust = Customer(
            company_id=demo_company.id,
            source="demo",
            source_id="late-c",
            name="Tardy Teapots",
            currency="USD",
            synced_at=rt.clock.now(),
        )
        s.add(cust)
        s.flush()
        d = timedelta
        # 10 days late, 5 days late, 4 days early (-4: issue 12's lateness is never clamped),
        # and one closed 400 days ago.
        _paid_invoice(s, demo_company.id, cust.id, "L1", today - d(40), today - d(30))
        _paid_invoice(s, demo_company.id, cust.id, "L2", today - d(20), today - d(15))
        _paid_invoice(s, demo_company.id, cust.id, "L3", today - d(5), today - d(9))
        _paid_invoice(s, demo_company.id, cust.id, "L4", today - d(500), today - d(400))
        cust_id = cust.id
    row = _customer_rows(owner_client.get("/c/demo/customers?q=Tardy").data)[0]
    assert _cell(row, "lateness") == "4"  # (10 + 5 - 4) / 3 = 3.67
    assert _cell(row, "last-payment") == "Nov 15, 2026"
    assert amount(_cell(row, "balance")) == 0
    page = parse(owner_client.get(f"/c/demo/customers/{cust_id}").data)
    assert page.by_id("customer-lateness").text == "4"
    assert [a.text for a in page.by_id("paid-invoices").find_all("a")] == ["L3", "L2", "L1", "L4"]


def test_the_customers_csv_neutralises_formulas(owner_client, rt, demo_company):
    with transaction(rt.sessions) as s:
        for i, name in enumerate(('=HYPERLINK("http://x")', "+1 Plumbing", "@sum", "-2 Co")):
            s.add(
                Customer(
                    company_id=demo_company.id,
                    source="demo",
                    source_id=f"csv-{i}",
                    name=name,
                    currency="USD",
                    synced_at=rt.clock.now(),
                )
            )
    response = owner_client.get("/c/demo/customers.csv?sort=name")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][0] == "Customer" and len(rows) == 1 + 44
    names = {r[0] for r in rows[1:]}
    assert {'\'=HYPERLINK("http://x")', "'+1 Plumbing", "'@sum", "'-2 Co"} <= names
    assert not any(r[0][:1] in "=+-@\t\r" for r in rows[1:])
    assert safe_cell("\tcmd") == "'\tcmd" and safe_cell("\r=1") == "'\r=1"
    assert safe_cell("Acme") == "Acme" and safe_cell(None) == ""


def _a_customer_with_contacts(rt, company_id: int) -> tuple[int, int, int]:
    """(customer id, its contact id, another customer's contact id)."""
    with rt.sessions() as s:
        contacts = s.scalars(
            select(Contact).where(Contact.company_id == company_id).order_by(Contact.id)
        ).all()
        first = contacts[0]
        other = next(c for c in contacts if c.customer_id != first.customer_id)
        return first.customer_id, first.id, other.id


def test_a_customers_page_shows_their_invoices_and_edits_their_contact(
    owner_client, rt, demo_company
):
    cust_id, contact_id, foreign_contact = _a_customer_with_contacts(rt, demo_company.id)
    url = f"/c/demo/customers/{cust_id}"
    page = owner_client.get(url)
    assert page.status_code == 200
    doc = parse(page.data)
    with rt.sessions() as s:
        cust = s.get(Customer, cust_id)
        open_numbers = {
            i.number
            for i in s.scalars(
                select(Invoice).where(Invoice.customer_id == cust_id, Invoice.is_open)
            )
        }
    assert doc.find("h1").text == cust.name
    shown = {a.text for a in doc.by_id("open-invoices").find_all("a")}
    assert shown == open_numbers
    for section in ("contacts", "messages", "replies", "customer-payments", "customer-plans"):
        assert doc.by_id(section) is not None, section
    assert (
        doc.by_id("plan-choice-form").attrs["action"] == f"/c/demo/customers/{cust_id}/plan-choice"
    )
    token = csrf_token(page.data)

    saved = owner_client.post(
        f"{url}/contact",
        data={
            "csrf_token": token,
            "contact_id": contact_id,
            "email": "ap@x.example",
            "phone": "+1 (555) 010-7",
        },
    )
    assert saved.status_code == 303 and saved.headers["Location"].endswith(f"{url}#contacts")
    with rt.sessions() as s:
        c = s.get(Contact, contact_id)
        assert (c.email, c.phone) == ("ap@x.example", "+1 (555) 010-7")
    # Bad input: a clear message, nothing saved.
    for field, value in (("email", "not an email"), ("phone", "=cmd|' /C calc'!A0")):
        data = {
            "csrf_token": token,
            "contact_id": contact_id,
            "email": "ap@x.example",
            field: value,
        }
        refused = owner_client.post(f"{url}/contact", data=data, follow_redirects=True)
        assert refused.status_code == 200 and b'class="flash error"' in refused.data
    with rt.sessions() as s:
        assert s.get(Contact, contact_id).phone == "+1 (555) 010-7"
    # Another customer's contact through this customer's form: not found.
    other = owner_client.post(
        f"{url}/contact", data={"csrf_token": token, "contact_id": foreign_contact, "email": ""}
    )
    assert other.status_code == 404

    owner_client.post(f"{url}/timezone", data={"csrf_token": token, "timezone": "Europe/Paris"})
    assert (
        owner_client.post(
            f"{url}/timezone", data={"csrf_token": token, "timezone": "Mars/Olympus"}
        ).status_code
        == 303
    )
    with rt.sessions() as s:
        assert s.get(Customer, cust_id).timezone == "Europe/Paris"


def test_do_not_chase_and_the_sequence_from_a_customers_page_come_back_to_it(
    owner_client, rt, demo_company
):
    cust_id, _c, _o = _a_customer_with_contacts(rt, demo_company.id)
    url = f"/c/demo/customers/{cust_id}"
    doc = parse(owner_client.get(url).data)
    token = csrf_token(owner_client.get(url).data)
    form = doc.by_id("do-not-chase-form")
    back = owner_client.post(form.attrs["action"], data=form_fields(form))
    assert back.headers["Location"] == f"{url}#chasing"
    seq = doc.by_id("sequence-form")
    assert (
        owner_client.post(seq.attrs["action"], data=form_fields(seq)).headers["Location"]
        == f"{url}#chasing"
    )
    with rt.sessions() as s:
        assert s.get(Customer, cust_id).do_not_chase is True
    doc = parse(owner_client.get(url).data)
    assert "do not chase" in doc.by_id("customer-flags").text
    assert token


# ---------------------------------------------------------------------------------------------
# Invoices.


def _invoice_rows(html: bytes) -> list[Node]:
    table = parse(html).by_id("invoices")
    return table.find("tbody").find_all("tr") if table else []


def _open_invoices(rt, company_id: int) -> list[Invoice]:
    with rt.sessions() as s:
        found = s.scalars(
            select(Invoice)
            .where(Invoice.company_id == company_id, Invoice.is_open)
            .order_by(Invoice.due_on, Invoice.id)
        ).all()
        s.expunge_all()
        return list(found)


def test_the_invoices_list_shows_open_invoices_oldest_due_first(owner_client, rt, demo_company):
    open_ = _open_invoices(rt, demo_company.id)
    rows = _invoice_rows(owner_client.get("/c/demo/invoices").data)
    assert [int(r.attrs["data-invoice"]) for r in rows] == [i.id for i in open_[:50]]
    second = _invoice_rows(owner_client.get("/c/demo/invoices?page=2").data)
    assert [int(r.attrs["data-invoice"]) for r in second] == [i.id for i in open_[50:100]]
    assert owner_client.get("/c/demo/invoices?page=101").status_code == 404  # past the cap


def test_the_invoices_list_searches_by_number_customer_and_amount(owner_client, rt, demo_company):
    inv = _open_invoices(rt, demo_company.id)[7]
    by_number = _invoice_rows(owner_client.get(f"/c/demo/invoices?q={inv.number.lower()}").data)
    assert [r.find("td", cls="number").text for r in by_number] == [inv.number]
    with rt.sessions() as s:
        name = s.get(Customer, inv.customer_id).name
    by_name = _invoice_rows(owner_client.get("/c/demo/invoices", query_string={"q": name}).data)
    assert by_name and all(r.find("td", cls="customer").text == name for r in by_name)
    total = f"{inv.total.amount:,}"  # "1,234.50" as the owner reads it
    by_amount = _invoice_rows(owner_client.get("/c/demo/invoices", query_string={"q": total}).data)
    assert inv.id in {int(r.attrs["data-invoice"]) for r in by_amount}
    assert all(
        inv.total.amount
        in (amount(r.find("td", cls="total").text), amount(r.find("td", cls="balance").text))
        for r in by_amount
    )
    assert _invoice_rows(owner_client.get("/c/demo/invoices?q=%25%25").data) == []


def test_the_invoices_list_filters_and_sorts(owner_client, rt, demo_company):
    late = _invoice_rows(owner_client.get("/c/demo/invoices?bucket=31_60").data)
    assert late and all(r.attrs["data-bucket"] == "31_60" for r in late)
    eur = _invoice_rows(owner_client.get("/c/demo/invoices?currency=EUR&status=all").data)
    assert eur and all("€" in r.find("td", cls="total").text for r in eur)
    paid = _invoice_rows(owner_client.get("/c/demo/invoices?status=paid").data)
    assert paid and all(r.find("td", cls="status").text.startswith("paid") for r in paid)
    by_total = _invoice_rows(
        owner_client.get("/c/demo/invoices?sort=total&dir=desc&currency=USD").data
    )
    totals = [amount(r.find("td", cls="total").text) for r in by_total]
    assert totals == sorted(totals, reverse=True)
    # Nonsense in the query string is refused with what the filter takes (it used to list every
    # invoice as if the filter had been applied: test_bad_input); an empty one is no filter.
    odd = owner_client.get("/c/demo/invoices?status=x&bucket=y&currency=%27;--&hold=z&sort=q")
    assert odd.status_code == 400 and "a three-letter currency code" in odd.get_data(as_text=True)
    empty = owner_client.get("/c/demo/invoices?status=&bucket=&currency=&hold=&sort=")
    assert empty.status_code == 200 and len(_invoice_rows(empty.data)) == 50


def test_bulk_pause_and_resume_change_only_this_companys_ticked_invoices(
    owner_client, rt, demo_company, other_company
):
    picked = [i.id for i in _open_invoices(rt, demo_company.id)[:3]]
    page = owner_client.get("/c/demo/invoices")
    token = csrf_token(page.data)
    back = "/c/demo/invoices?hold=paused"
    done = owner_client.post(
        "/c/demo/invoices/bulk",
        data={"csrf_token": token, "action": "pause", "invoice_id": picked, "next": back},
    )
    assert done.status_code == 303 and done.headers["Location"] == back
    shown = _invoice_rows(owner_client.get(back).data)
    assert sorted(int(r.attrs["data-invoice"]) for r in shown) == sorted(picked)
    assert all("paused" in r.find("td", cls="status").text for r in shown)
    # One of another company's ids among them: not found, nothing changes.
    mixed = {
        "csrf_token": token,
        "action": "resume",
        "invoice_id": [*picked, other_company.invoice_ids[0]],
    }
    assert owner_client.post("/c/demo/invoices/bulk", data=mixed).status_code == 404
    junk = {"csrf_token": token, "action": "resume", "invoice_id": [picked[0], "1e9"]}
    assert owner_client.post("/c/demo/invoices/bulk", data=junk).status_code == 404
    with rt.sessions() as s:
        assert all(s.get(Invoice, i).paused for i in picked)
        assert not s.get(Invoice, other_company.invoice_ids[0]).paused
    # No CSRF token: refused.
    assert (
        owner_client.post(
            "/c/demo/invoices/bulk", data={"action": "resume", "invoice_id": picked}
        ).status_code
        == 400
    )
    resumed = owner_client.post(
        "/c/demo/invoices/bulk",
        data={"csrf_token": token, "action": "resume", "invoice_id": picked[:2]},
        follow_redirects=True,
    )
    assert b"Reminders resumed for 2 invoices." in resumed.data
    with rt.sessions() as s:
        assert [s.get(Invoice, i).paused for i in picked] == [False, False, True]


def test_the_invoices_csv_holds_every_match_and_neutralises_formulas(
    owner_client, rt, demo_company
):
    with transaction(rt.sessions) as s:
        inv = s.scalars(
            select(Invoice).where(Invoice.company_id == demo_company.id, Invoice.is_open)
        ).first()
        inv.number = "=2+3"
        s.get(Customer, inv.customer_id).name = "@SUM(A1)"
    response = owner_client.get("/c/demo/invoices.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) - 1 == len(_open_invoices(rt, demo_company.id))
    mine = next(r for r in rows if r[0] == "'=2+3")
    assert mine[1] == "'@SUM(A1)"
    assert not any(c[:1] in ("=", "+", "-", "@") for r in rows for c in r if c)


# ---------------------------------------------------------------------------------------------
# Payments.


def _collect(s, rt, inv: Invoice, n: int, **fields) -> CollectedPayment:
    now = rt.clock.now()
    values = {
        "company_id": inv.company_id,
        "customer_id": inv.customer_id,
        "payment_intent_id": f"pi_page_{inv.id}_{n}",
        "method": "card",
        "currency": inv.currency,
        "amount_minor": 100,
        "status": "succeeded",
        "created_at": now + timedelta(minutes=n),
        "updated_at": now,
        "succeeded_at": now,
    }
    p = CollectedPayment(**{**values, **fields})
    s.add(p)
    s.flush()
    return p


def _payments(rt, company_id: int, count: int) -> list[int]:
    """`count` succeeded payments, each applied to an invoice, each with its ledger write-back
    in the outbox: the first waiting, the second recorded, the third failed for good."""
    ids = []
    with transaction(rt.sessions) as s:
        invoices = s.scalars(
            select(Invoice)
            .where(Invoice.company_id == company_id, Invoice.is_open)
            .order_by(Invoice.id)
        ).all()
        for n in range(count):
            inv = invoices[n]
            p = _collect(s, rt, inv, n, ledger_key=f"ledger_payment:pi_page_{inv.id}_{n}")
            s.add(
                CollectedAllocation(collected_payment_id=p.id, invoice_id=inv.id, amount_minor=100)
            )
            enqueue(
                s,
                rt.clock,
                company_id=company_id,
                kind="ledger_payment",
                key=p.ledger_key,
                payload={"amount_minor": 100},
            )
            ids.append(p.id)
        s.flush()
        states = {
            0: ("pending", None),
            1: ("sent", None),
            2: ("dead", "QuickBooks said: closed period"),
        }
        for n, (state, error) in states.items():
            if n < count:
                row = s.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.key == s.get(CollectedPayment, ids[n]).ledger_key
                    )
                ).one()
                row.status, row.last_error = state, error
    return ids


def test_the_payments_page_lists_state_invoices_and_ledger_write_back(
    owner_client, rt, demo_company
):
    ids = _payments(rt, demo_company.id, 3)
    with transaction(rt.sessions) as s:
        # A pending bank payment, not applied yet: the invoices its checkout was for.
        inv = s.scalars(
            select(Invoice)
            .where(Invoice.company_id == demo_company.id, Invoice.is_open)
            .order_by(Invoice.id.desc())
        ).first()
        s.add(
            CheckoutSessionRow(
                company_id=demo_company.id,
                pay_token_id=s.scalar(
                    select(PayToken.id).where(PayToken.company_id == demo_company.id)
                )
                or _token_id(s, rt, inv),
                stripe_session_id="cs_page_pending",
                invoice_ids=[inv.id],
                currency=inv.currency,
                amount_minor=100,
                basis="x",
                expires_at=rt.clock.now(),
                created_at=rt.clock.now(),
            )
        )
        pending = _collect(
            s,
            rt,
            inv,
            99,
            status="pending",
            method="us_bank_account",
            checkout_session_id="cs_page_pending",
        )
        pending_id, pending_number = pending.id, inv.number
    doc = parse(owner_client.get("/c/demo/payments").data)
    rows = {
        int(tr.attrs["data-payment"]): tr
        for tr in doc.by_id("payments").find("tbody").find_all("tr")
    }
    assert set(rows) == {*ids, pending_id}
    ledger = {i: rows[i].find("td", cls="ledger").text for i in ids}
    assert ledger[ids[0]] == "waiting to be recorded in the ledger"
    assert ledger[ids[1]] == "recorded in the ledger"
    assert ledger[ids[2]].startswith("could not be recorded: needs attention")
    assert "closed period" in ledger[ids[2]]
    assert rows[pending_id].find("td", cls="invoices").text == pending_number
    assert rows[pending_id].attrs["data-status"] == "pending"
    # By state, and by customer (another company's customer is not found).
    only = parse(owner_client.get("/c/demo/payments?status=pending").data)
    assert [
        tr.attrs["data-payment"] for tr in only.by_id("payments").find("tbody").find_all("tr")
    ] == [str(pending_id)]
    assert owner_client.get("/c/demo/payments?customer=99999999").status_code == 404


def _token_id(s, rt, inv: Invoice) -> int:
    from arbridge.sync.store import issue_pay_token

    issue_pay_token(s, rt.clock, inv)
    s.flush()
    return s.scalar(select(PayToken.id).where(PayToken.invoice_id == inv.id))


def test_the_payments_page_costs_the_same_with_two_payments_or_twelve(
    owner_client, rt, demo_company
):
    from tests.web.test_query_counts import counted

    _payments(rt, demo_company.id, 2)
    with counted(rt) as few:
        assert owner_client.get("/c/demo/payments").status_code == 200
    with transaction(rt.sessions) as s:  # start again with more of the same
        s.execute(delete(CollectedAllocation))
        s.execute(delete(CollectedPayment))
    _payments(rt, demo_company.id, 12)
    with counted(rt) as many:
        assert owner_client.get("/c/demo/payments").status_code == 200
    assert len(few) == len(many)


def test_a_dispute_shows_as_a_flag_on_the_customer_and_filters_the_invoices(
    owner_client, rt, demo_company
):
    inv = _open_invoices(rt, demo_company.id)[3]
    with transaction(rt.sessions) as s:
        s.add(
            InvoiceHold(
                company_id=demo_company.id,
                invoice_id=inv.id,
                kind="dispute",
                message="Wrong quantity",
                created_by="customer",
                created_at=rt.clock.now(),
            )
        )
        name = s.get(Customer, inv.customer_id).name
    rows = _customer_rows(owner_client.get("/c/demo/customers", query_string={"q": name}).data)
    mine = next(r for r in rows if r.find("a").text == name)
    assert "disputed" in _cell(mine, "flags")
    replies = _invoice_rows(owner_client.get("/c/demo/invoices?hold=reply&status=all").data)
    assert [int(r.attrs["data-invoice"]) for r in replies] == [inv.id]
    assert "disputed" in replies[0].find("td", cls="status").text
    page = parse(owner_client.get(f"/c/demo/customers/{inv.customer_id}").data)
    assert "Wrong quantity" in page.by_id("replies").text
    # The invoice's own page sits under Invoices in the navigation.
    nav = parse(owner_client.get(f"/c/demo/invoices/{inv.id}").data).by_id("main-nav")
    assert [a.attrs["data-section"] for a in nav.find_all("a", aria_current="page")] == ["invoices"]


def test_an_invoice_one_day_late_reads_1_day_late_not_1_days_late(owner_client):
    # The demo's INV-1117 fell due the day before the test's today: "1 days late" on the list.
    shown = parse(owner_client.get("/c/demo/invoices?status=open&sort=due").data).find("main").text
    page = owner_client.get("/c/demo/invoices?delivery=unsent").data.decode()
    assert not re.search(r"(?<!\d)1 days late", shown + page)
    assert re.search(r"(?<!\d)1 day late", shown + page)


def test_sorting_invoices_by_total_put_euros_among_dollars_by_their_digits(rt, demo_company):
    # The demo's EUR invoices sorted by their own units: EUR 12.75 ($13.82) before $12.75.
    from arbridge.collections.insight import home_minor
    from arbridge.readmodels import invoices as reads

    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        rows = reads.invoices_export(
            s, company, date(2026, 11, 24), reads.Filters(status="all", sort="total")
        )
        totals = [
            home_minor(r.invoice.total_minor, r.invoice.currency, r.invoice.exchange_rate, "USD")
            for r in rows
        ]
    assert {r.invoice.currency for r in rows} > {"USD"}
    assert totals == sorted(totals)
