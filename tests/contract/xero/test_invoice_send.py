"""Sending an unsent invoice through Xero's own email (POST /Invoices/{id}/Email, 204), on the
fake Xero behind a real local HTTP server (xero-python speaks urllib3): SentToContact is synced,
the email goes out once with the outbox key as Idempotency-Key, and a retry sends nothing more.
Where Xero refuses (a contact without an address in Xero), arbridge sends its own email."""

from __future__ import annotations

import io
import re
from datetime import timedelta

from pypdf import PdfReader
from sqlalchemy import select

from arbridge.runtime import Runtime
from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.delivery.send import queue_sends
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, Contact, Invoice, MailMessage, OutboxMessage
from arbridge.sync.outbox import deliver
from tests.conftest import sync_now
from tests.contract.email.server import smtp_server
from tests.contract.xero.conftest import TODAY
from tests.contract.xero.test_end_to_end import company, connect


def connected(rt, settings, config, fake, email: str | None = "ap@harbor-cafe.example"):
    row = company(rt, "harbor-nz")
    contact = fake.add_contact("Harbor Cafe", email=email)
    if email is None:
        fake.store["Contacts"][contact]["EmailAddress"] = ""
    unsent = fake.add_invoice(
        contact, "640.00", issued=TODAY - timedelta(days=1), due=TODAY + timedelta(days=29),
        sent=False,
    )  # fmt: skip
    sent = fake.add_invoice(
        contact, "80.00", issued=TODAY - timedelta(days=8), due=TODAY + timedelta(days=22)
    )
    done = connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1])
    assert done.exit_code == 0, done.output
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == row.id))
        s.expunge(conn)
    sync_now(rt, conn, full=True)
    with rt.sessions() as s:
        ids = dict(s.execute(select(Invoice.source_id, Invoice.id)).tuples().all())
    return row, conn, unsent, sent, ids


def ask(rt, company_id, *invoice_ids):
    with transaction(rt.sessions) as s:
        return queue_sends(s, rt.clock, s.get(Company, company_id), invoice_ids)


def test_sent_to_contact_is_synced_and_an_unsent_invoice_is_emailed_once(
    rt, settings, config, fake
):
    row, conn, unsent, sent, ids = connected(rt, settings, config, fake)
    with rt.sessions() as s:
        flags = dict(s.execute(select(Invoice.source_id, Invoice.ledger_sent)).tuples().all())
    assert flags == {unsent: False, sent: True}

    assert ask(rt, row.id, ids[unsent], ids[sent]).queued == 1
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    assert fake.emailed == [(unsent, "ap@harbor-cafe.example")]
    [call] = [r for r in fake.requests if r["path"].endswith("/Email")]
    assert call["method"] == "POST" and call["body"] == "{}"
    with rt.sessions() as s:
        key = s.scalar(select(OutboxMessage.key))
        assert call["headers"]["Idempotency-Key"] == key
        inv = s.get(Invoice, ids[unsent])
        assert inv.sent_at == rt.clock.now() and not inv.is_unsent

    # Asked again, delivered again, synced back: still one email.
    assert ask(rt, row.id, ids[unsent]).queued == 0
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    sync_now(rt, conn)
    with rt.sessions() as s:
        assert s.get(Invoice, ids[unsent]).ledger_sent is True
    assert len(fake.emailed) == 1


def test_lost_answers_are_retried_into_one_email(rt, settings, config, fake):
    row, _conn, unsent, _sent, ids = connected(rt, settings, config, fake)
    ask(rt, row.id, ids[unsent])
    # The read answers; the email is sent, and the answers to it and to the connector's retry
    # (the same Idempotency-Key, which Xero answers as the first time) are lost.
    fake.injected += [("answer",), ("lose_response",), ("lose_response",)]
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert not fake.injected
    assert len(fake.emailed) == 1
    with rt.sessions() as s:
        assert s.scalar(select(OutboxMessage.status)) == "sent"


def test_where_xero_cannot_send_arbridge_emails_the_invoice_with_its_pdf_and_pay_link(
    rt, settings, config, fake, tmp_path, client
):
    row, _conn, unsent, _sent, ids = connected(rt, settings, config, fake, email=None)
    # Xero has no address for the contact; the owner gave arbridge one (the customer page's
    # contact edit, which stays arbridge's own).
    with transaction(rt.sessions) as s:
        inv = s.get(Invoice, ids[unsent])
        contact = s.scalar(select(Contact).where(Contact.customer_id == inv.customer_id))
        assert contact is not None and not contact.email
        contact.email = "robin@harbor-cafe.example"
    ask(rt, row.id, ids[unsent])
    with smtp_server(tmp_path) as smtp:
        mail_rt = Runtime.open(settings.with_(smtp_url=smtp.url), rt.clock)
        try:
            for _ in range(3):  # Xero refuses and our email is queued; it goes; nothing more
                deliver(mail_rt.sessions, mail_rt.clock, outbox_handlers(mail_rt))
        finally:
            mail_rt.close()
        [msg] = [r.message for r in smtp.inbox.messages]
    assert fake.emailed == []
    assert msg["To"] == "robin@harbor-cafe.example"
    assert msg["Subject"].startswith("Invoice INV-0001 from")
    body = msg.get_body(("plain",)).get_content()
    assert "Amount due: NZ$640.00" in body and "attached as a PDF" in body
    [(name, kind, data)] = [
        (p.get_filename(), p.get_content_type(), p.get_content()) for p in msg.iter_attachments()
    ]
    assert (name, kind) == ("invoice-INV-0001.pdf", "application/pdf")
    assert "Invoice INV-0001 Total 640.00" in PdfReader(io.BytesIO(data)).pages[0].extract_text()
    [link] = re.findall(r"Pay online by card or bank transfer: (\S+)", body)
    assert client.get(link.removeprefix(settings.base_url)).status_code == 200  # it works
    with rt.sessions() as s:
        assert s.get(Invoice, ids[unsent]).sent_at is not None
        [kept] = s.scalars(select(MailMessage)).all()
        assert "/pay/[the link, not kept here]" in kept.text_body  # no live link in the mailbox
    # Asked again: nothing more.
    assert ask(rt, row.id, ids[unsent]).queued == 0
