"""No GET changes anything (issue 8, finding 7): mail scanners, link previews and cross-site
links fetch URLs, so every state change is a POST with a CSRF token.

The walk covers every GET route of the app (read from `app.url_map`, so a new route is walked
without touching this file; the OAuth callback and the Stripe returns too), as a stranger and as the signed-in owner, with real ids and tokens
from the demo company, and compares a dump of every table before and after each request.
"""

from __future__ import annotations

from sqlalchemy import select

from arbridge.services.payments.plans import make_offer
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Base,
    CallTask,
    Company,
    Contact,
    Customer,
    Invoice,
    MailMessage,
    User,
)
from arbridge.sync.people import invite
from arbridge.sync.store import issue_pay_token, issue_statement_token
from arbridge.worker import drain
from tests.web.conftest import csrf_token, new_sign_in_token, sent_invitation_path, sign_in

# Caches a view may fill: figures computed from the rows themselves and stored so the next view
# reads them (sync/insight_cache.py). Filling one changes nothing a person, a customer or a
# provider sees, and a scanner's fetch fills it with what the owner's own view would.
CACHES = {"insight_snapshots"}


def dump(rt) -> dict[str, list[tuple]]:
    tables: dict[str, list[tuple]] = {}
    with rt.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in CACHES:
                continue
            rows = conn.execute(table.select().order_by(*table.primary_key.columns)).all()
            tables[table.name] = [tuple(r) for r in rows]
    return tables


def _changes(before: dict, after: dict) -> dict[str, tuple[list, list]]:
    return {
        name: (
            [r for r in before[name] if r not in after[name]],
            [r for r in after[name] if r not in before[name]],
        )
        for name in before
        if before[name] != after[name]
    }


def _values(rt, client, company: Company) -> dict[str, str]:
    """A real value for every path parameter of the app's GET routes."""
    with transaction(rt.sessions) as s:
        invoice = s.scalars(
            select(Invoice)
            .where(Invoice.company_id == company.id, Invoice.status == "open")
            .order_by(Invoice.id)
        ).first()
        customer = s.get(Customer, invoice.customer_id)
        contact = s.scalars(select(Contact).where(Contact.customer_id == customer.id)).first()
        pay = issue_pay_token(s, rt.clock, invoice)
        statement = issue_statement_token(s, rt.clock, customer)
        mail = MailMessage(
            company_id=company.id,
            kind="owner",
            to_addr="owner@acme-supply.example",
            subject="Hello",
            text_body="Hello",
            message_id="<walk@arbridge.test>",
            headers={},
            transport="mailbox",
            created_at=rt.clock.now(),
        )
        task = CallTask(
            company_id=company.id,
            customer_id=customer.id,
            key="walk:call",
            step_key="call",
            invoice_ids=[invoice.id],
            reason="A call step",
            created_at=rt.clock.now(),
        )
        s.add_all([mail, task])
        owner = s.scalars(select(User).where(User.company_id == company.id)).first()
        invite(s, rt.clock, s.get(Company, company.id), owner, "new@acme.example")
        s.flush()
        values = {
            "slug": company.slug,
            "invoice_id": str(invoice.id),
            "customer_id": str(customer.id),
            "mail_id": str(mail.id),
            "task_id": str(task.id),
            "filename": "app.css",
            "name": "aging-by-customer",  # a CSV export (web/insight.py)
        }
    # An installment plan offered for the invoice, for the plans' pages.
    made = make_offer(
        rt, company_id=company.id, invoice_ids=[invoice.id], installments=2, every="month"
    )
    values["plan_id"] = str(made.plan_id)
    # A Checkout Session for the simulated checkout page, opened the way a customer would.
    page = client.get(f"/pay/{pay}")
    started = client.post(f"/pay/{pay}/checkout", data={"csrf_token": csrf_token(page.data)})
    location = started.headers.get("Location", "/cs_test_none")  # no payments set up: none
    values["session_id"] = location.rstrip("/").rsplit("/", 1)[-1]
    values["pay"] = pay
    values["statement"] = statement
    values["unsubscribe"] = unsubscribe_token(rt.settings.secret_key, contact.id)
    return values


def _url(rule, values: dict[str, str], rt, company: Company) -> str:
    args = {}
    for name in rule.arguments:
        if name == "token":
            args[name] = {
                "auth.sign_in_page": lambda: new_sign_in_token(rt, company),
                "pay.pay_page": lambda: values["pay"],
                "pay.checkout_return": lambda: values["pay"],
                "documents.customer_statement": lambda: values["statement"],
                "plan_pay.plan_page": lambda: values["pay"],
                "plan_pay.plan_return": lambda: values["pay"],
                "replies.unsubscribe_page": lambda: values["unsubscribe"],
                "people.invitation_page": lambda: _invitation_token(rt, company),
            }[rule.endpoint]()
        else:
            args[name] = values[name]
    path = rule.build(args, append_unknown=False)[1]
    return path + ("?session_id=" + values["session_id"] if "return" in rule.endpoint else "")


def _invitation_token(rt, company: Company) -> str:
    # The token exists only in the email: made as it goes out (to the mailbox here).
    with transaction(rt.sessions) as s:
        owner = s.scalars(select(User).where(User.company_id == company.id)).first()
        row = invite(s, rt.clock, s.get(Company, company.id), owner, "walk@acme.example")
        key = f"invitation:{row.id}"
    drain(rt)
    return sent_invitation_path(rt, key).removeprefix("/invitations/")


def _walk(app, rt, client, company: Company, values: dict[str, str]) -> dict[str, dict]:
    changed = {}
    rules = [r for r in app.url_map.iter_rules() if "GET" in r.methods]
    assert len(rules) >= 20  # the walk really covers the app
    for rule in rules:
        url = _url(rule, values, rt, company)
        before = dump(rt)
        response = client.get(url)
        assert response.status_code < 500, (url, response.status_code)
        response.close()  # static files are streamed
        after = dump(rt)
        if before != after:
            changed[url] = _changes(before, after)
    return changed


def test_no_get_route_changes_the_database_for_a_stranger(app, rt, client, demo_company):
    values = _values(rt, client, demo_company)
    stranger = app.test_client()
    assert _walk(app, rt, stranger, demo_company, values) == {}


def test_no_get_route_changes_the_database_for_the_signed_in_owner(app, rt, client, demo_company):
    values = _values(rt, client, demo_company)
    sign_in(client, rt, demo_company)
    assert _walk(app, rt, client, demo_company, values) == {}


def test_every_page_but_static_files_says_no_store(app, rt, client, demo_company):
    """Owner pages, sign-in, invitation and pay pages hold private data or secrets in the URL:
    no browser or proxy cache may keep them (issue 8, low)."""
    values = _values(rt, client, demo_company)
    sign_in(client, rt, demo_company)
    cached = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        url = _url(rule, values, rt, demo_company)
        response = client.get(url)
        if "no-store" not in response.headers.get("Cache-Control", ""):
            cached.append(url)
    assert cached == []
    # The signed-out visitor's sign-in page too.
    stranger = app.test_client()
    response = stranger.get(f"/sign-in/{new_sign_in_token(rt, demo_company)}")
    assert response.headers["Cache-Control"] == "no-store"
