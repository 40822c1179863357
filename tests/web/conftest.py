"""Helpers for the web tests: a small HTML reader, CSRF tokens, owner sign-in, a second company."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Customer, Invitation, Invoice, MailMessage
from arbridge.sync.store import create_company, hash_token, issue_sign_in_token, owner

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


# ---------------------------------------------------------------------------------------------
# A tiny DOM: enough to find elements by id, tag and class without a third-party parser.


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)
    parent: Node | None = None

    @property
    def text(self) -> str:
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text)
        return " ".join("".join(parts).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            if cls is not None and cls not in node.classes:
                continue
            if any(node.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            found.append(node)
        return found

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node | None:
        hits = self.find_all(tag, cls, **attrs)
        return hits[0] if hits else None

    def by_id(self, element_id: str) -> Node | None:
        hits = [n for n in self.iter() if n.attrs.get("id") == element_id]
        assert len(hits) <= 1, f"id {element_id!r} is used {len(hits)} times"
        return hits[0] if hits else None


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, parent=self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, parent=self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str | bytes) -> Node:
    builder = _TreeBuilder()
    builder.feed(html.decode() if isinstance(html, bytes) else html)
    builder.close()
    return builder.root


def csrf_token(html: str | bytes) -> str:
    """The CSRF token from the first hidden csrf_token input (plain or form-prefixed)."""
    doc = parse(html)
    for node in doc.find_all("input"):
        if node.attrs.get("name", "").endswith("csrf_token") and node.attrs.get("value"):
            return node.attrs["value"]
    raise AssertionError("the page has no csrf_token input")


MONEY = re.compile(r"^(-)?\s*([^\d\s-]*)\s*([\d,]+(?:\.\d+)?)$")


def amount(text: str) -> Decimal:
    """'$1,234.56' -> Decimal('1234.56'); '-$5.00' -> Decimal('-5.00')."""
    m = MONEY.match(text.strip())
    assert m, f"not a formatted amount: {text!r}"
    value = Decimal(m.group(3).replace(",", ""))
    return -value if m.group(1) else value


def assert_friendly_error(body: str, *absent: str) -> None:
    """The error page: our layout, no trace, nothing of the data the visitor must not see."""
    assert 'class="card narrow"' in body
    for leak in ("Traceback", 'File "', "sqlalchemy", "Werkzeug Debugger", *absent):
        assert leak not in body, f"{leak!r} leaked into the error page"


# ---------------------------------------------------------------------------------------------
# Signing in.


def new_sign_in_token(rt: Runtime, company: Company, minutes: int | None = None) -> str:
    with transaction(rt.sessions) as s:
        user = owner(s, s.get(Company, company.id))
        return issue_sign_in_token(
            s, rt.clock, user, minutes if minutes is not None else rt.settings.login_link_minutes
        )


def sign_in(client, rt: Runtime, company: Company) -> None:
    token = new_sign_in_token(rt, company)
    page = client.get(f"/sign-in/{token}")
    assert page.status_code == 200
    response = client.post(f"/sign-in/{token}", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == f"/c/{company.slug}/"


@pytest.fixture
def owner_client(client, rt, demo_company):
    """The test client, signed in as the demo company's owner."""
    sign_in(client, rt, demo_company)
    return client


# ---------------------------------------------------------------------------------------------
# A second company with its own customers and invoices, written straight through the ORM.

OTHER_SLUG = "borealis"
OTHER_NAME = "Borealis Quartz Works"
OTHER_CUSTOMERS = ("Zebulon Kettleworth Ltd", "Quixotic Marmoset Partners")
OTHER_NUMBERS = ("ZQX-7001", "ZQX-7002", "ZQX-7003")


@dataclass(frozen=True)
class OtherCompany:
    company: Company
    invoice_ids: tuple[int, ...]
    customer_names: tuple[str, ...] = OTHER_CUSTOMERS
    invoice_numbers: tuple[str, ...] = OTHER_NUMBERS

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear on another company's pages."""
        return (OTHER_NAME, *self.customer_names, *self.invoice_numbers)


@pytest.fixture
def other_company(rt: Runtime, demo_company) -> OtherCompany:
    now = rt.clock.now()
    today = date(2026, 11, 24)
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name=OTHER_NAME,
            slug=OTHER_SLUG,
            home_currency="USD",
            timezone="America/New_York",
            country="US",
            owner_email="owner@borealis.example",
        )
        customers = []
        for i, name in enumerate(OTHER_CUSTOMERS):
            cust = Customer(
                company_id=company.id,
                source="demo",
                source_id=f"BQ-C{i}",
                name=name,
                currency="USD",
                synced_at=now,
            )
            s.add(cust)
            customers.append(cust)
        s.flush()
        invoices = []
        for i, number in enumerate(OTHER_NUMBERS):
            inv = Invoice(
                company_id=company.id,
                customer_id=customers[i % len(customers)].id,
                source="demo",
                source_id=f"BQ-I{i}",
                number=number,
                issued_on=today - timedelta(days=60 + i),
                due_on=today - timedelta(days=30 + i),
                currency="USD",
                exchange_rate=Decimal(1),
                total_minor=987_65 + i,
                ledger_balance_minor=987_65 + i,
                status="open",
                synced_at=now,
            )
            s.add(inv)
            invoices.append(inv)
        s.flush()
        ids = tuple(inv.id for inv in invoices)
        s.expunge(company)
    return OtherCompany(company, ids)


def fresh_company(rt: Runtime, slug: str) -> Company:
    with rt.sessions() as s:
        company = s.scalar(select(Company).where(Company.slug == slug))
        assert company is not None
        s.expunge(company)
        return company


def form_fields(form: Node) -> dict[str, str]:
    """What a browser would submit for `form` as rendered (checked boxes, selected options)."""
    data: dict[str, str] = {}
    for node in form.iter():
        name = node.attrs.get("name")
        if not name:
            continue
        if node.tag == "input":
            kind = node.attrs.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in node.attrs:
                    data[name] = node.attrs.get("value") or "on"
            elif kind not in ("submit", "button"):
                data[name] = node.attrs.get("value", "")
        elif node.tag == "select":
            options = node.find_all("option")
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            if chosen:
                data[name] = chosen[0].attrs.get("value", chosen[0].text)
        elif node.tag == "textarea":
            data[name] = node.text
    return data


def sent_invitation_path(rt: Runtime, key: str) -> str:
    """The path of the invitation link the email queued under `key` (`invitation:<id>`) went
    out with, once it has gone. The mailbox keeps the email without its link (a teammate who
    reads the mailbox could accept it), so the test gives the invitation a token it knows, as
    the link in the email carries one."""
    token = "sent-" + key.replace(":", "-") + "-" + "x" * 32
    with transaction(rt.sessions) as s:
        sent = s.scalars(select(MailMessage).where(MailMessage.outbox_key == key)).one()
        assert "[the invitation link, not kept here]" in sent.text_body
        s.get(Invitation, int(key.split(":")[1])).token_hash = hash_token(token)
    return f"/invitations/{token}"
