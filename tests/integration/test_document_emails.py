"""The monthly statement email carries the statement as PDF, and the final notice carries the
letter, through a real SMTP server: built as the email goes out, from the same re-check as its
text (the same invoices, the same link), and sent once however often the worker runs."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Prepared
from arbridge.services.reminders.statements import prepare_statement
from arbridge.sync.db import transaction
from arbridge.sync.model import Contact, Customer, OutboxMessage
from arbridge.sync.outbox import enqueue
from arbridge.sync.pay_links import revoke_statement_links
from arbridge.sync.store import find_pay_token, issue_statement_token
from arbridge.worker import drain, tick
from tests.contract.email.server import smtp_server
from tests.integration.remind_support import START, Cust, Inv, build_world, chicago

HARBOR = Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example")
MAPLE = Cust("MAP", "Maple Dental", "Ben", "ben@maple.example")
BASE = "http://127.0.0.1:5000"


@pytest.fixture
def smtp(tmp_path):
    with smtp_server(tmp_path) as server:
        yield server


@pytest.fixture
def mail_rt(settings, clock, smtp):
    rt = Runtime.open(settings.with_(smtp_url=smtp.url), clock)
    yield rt
    rt.close()


def pdf_words(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(p.extract_text(extraction_mode="layout") for p in reader.pages)
    return " ".join(text.split())


def attachments(msg) -> list[tuple[str, str, bytes]]:
    return [
        (part.get_filename(), part.get_content_type(), part.get_content())
        for part in msg.iter_attachments()
    ]


def test_the_monthly_statement_email_carries_its_pdf_with_the_same_link(mail_rt, smtp, clock):
    world = build_world(
        mail_rt,
        [HARBOR, MAPLE],
        [
            Inv("A", "HAR", 20, "100.00"),
            Inv("B", "HAR", -40, "25.50"),
            Inv("E", "HAR", -75, "80.00", currency="EUR"),
            Inv("C", "MAP", 30, "70.00"),
        ],
        statement_day=1,
    )
    world.pay("C")
    for hour in (9, 17):  # the worker runs all day; the statement goes once
        clock.at = chicago(date(2026, 12, 1), hour)
        tick(mail_rt, "w")
    [msg] = [
        r.message for r in smtp.inbox.messages if r.message["Subject"].startswith("Your statement")
    ]
    assert msg["To"] == HARBOR.email
    body = msg.get_body(("plain",)).get_content()
    [link] = re.findall(r"Pay them all together: (\S+)", body)
    harbor = world.customer("HAR")
    [(filename, kind, data)] = attachments(msg)
    assert (filename, kind) == (f"statement-sim-{harbor.id}-2026-12-01.pdf", "application/pdf")
    words = pdf_words(data)
    assert link in words  # the very link the email's text carries
    assert "Harbor Bakery" in words and "Attn: Alice" in words
    assert "Statement of account Dec 1, 2026" in words
    # Each invoice: number, issued, due, days overdue, amount, balance.
    assert "INV-A Nov 14, 2026 Dec 14, 2026 — $100.00 $100.00" in words
    assert "INV-B Sep 15, 2026 Oct 15, 2026 47 days $25.50 $25.50" in words
    assert "INV-E Aug 11, 2026 Sep 10, 2026 82 days €80.00 €80.00" in words
    assert "INV-C" not in words  # Maple's, and paid
    # A total and an aging row per currency, never converted into one another.
    assert "Total due EUR €80.00 Total due USD $125.50" in words
    assert "EUR €0.00 €0.00 €0.00 €80.00 €0.00 €80.00 USD $100.00 $0.00 $25.50 $0.00" in words
    assert "Pay €80.00 + $125.50 online" in words
    with mail_rt.sessions() as s:
        row = find_pay_token(s, link.removeprefix(f"{BASE}/pay/"))
        assert row.invoice_id is None and row.customer_id == harbor.id


def test_the_final_notice_email_carries_the_letter_and_earlier_reminders_none(mail_rt, smtp, clock):
    world = build_world(
        mail_rt,
        [HARBOR, MAPLE],
        [Inv("A", "HAR", -30, "100.00"), Inv("B", "HAR", -31, "40.00"), Inv("M", "MAP", -10, "9")],
    )
    tick(mail_rt, "w")
    drain(mail_rt)
    by_to = {r.message["To"]: r.message for r in smtp.inbox.messages}
    final, second = by_to[HARBOR.email], by_to[MAPLE.email]
    assert final["Subject"] == "Final notice: $140.00 overdue to Acme Supply Co."
    assert second["Subject"].startswith("Second reminder")
    assert attachments(second) == []
    harbor = world.customer("HAR")
    [(filename, kind, data)] = attachments(final)
    assert (filename, kind) == (f"final-notice-sim-{harbor.id}-{START}.pdf", "application/pdf")
    words = pdf_words(data)
    assert "Final notice before further action" in words and "Dear Alice," in words
    assert "$140.00 remains unpaid" in words
    assert "INV-A Sep 25, 2026 Oct 25, 2026 30 days $100.00 $100.00" in words
    assert "INV-B Sep 24, 2026 Oct 24, 2026 31 days $40.00 $40.00" in words
    [link] = re.findall(rf"{BASE}/pay/\S+", words)
    with mail_rt.sessions() as s:
        row = find_pay_token(s, link.removeprefix(f"{BASE}/pay/"))
        assert row.invoice_id is None and row.customer_id == harbor.id  # pays both together
    drain(mail_rt)
    tick(mail_rt, "w")
    to_customers = [
        r for r in smtp.inbox.messages if r.message["To"] != "owner@acme-supply.example"
    ]
    assert len(to_customers) == 2  # nothing sent twice (the owner hears of the escalation)


def test_a_statement_queued_with_its_token_still_goes_with_its_pdf_after_the_link_is_withdrawn(
    rt,
):
    """Rows queued before links were minted at send time carry the token itself; a withdrawn
    one must not stop the email (the PDF then states no end date for the link)."""
    world = build_world(rt, [HARBOR], [Inv("A", "HAR", -5, "100.00")])
    harbor = world.customer("HAR")
    with transaction(rt.sessions) as s:
        token = issue_statement_token(s, rt.clock, s.get(Customer, harbor.id))
        contact = s.scalar(select(Contact).where(Contact.customer_id == harbor.id))
        enqueue(
            s,
            rt.clock,
            company_id=world.company.id,
            kind="email",
            key="statement:old",
            payload={
                "mail": "statement",
                "customer_id": harbor.id,
                "contact_id": contact.id,
                "statement_token": token,
            },
        )
    with transaction(rt.sessions) as s:
        revoke_statement_links(s, rt.clock, s.get(Customer, harbor.id))
        message = s.scalar(select(OutboxMessage).where(OutboxMessage.key == "statement:old"))
        s.expunge(message)
    prepared = prepare_statement(rt, message)
    assert isinstance(prepared, Prepared)
    [pdf] = prepared.attachments
    words = pdf_words(pdf.data)
    assert "INV-A" in words and "works until" not in words
