"""POST /webhooks/xero: Xero's intent-to-receive check (200 with an empty body for a good
signature, 401 for a bad one), each change stored once, unknown tenants ignored, and the worker
then bringing the named invoice in from the fake so the report shows its new balance."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs

from sqlalchemy import func, select

from arbridge.sync.model import WebhookEvent
from arbridge.worker import claim_and_run, drain
from tests.contract.quickbooks.test_webhooks import push_sync_job_back
from tests.contract.xero.conftest import delivery, post, sign
from tests.contract.xero.test_end_to_end import (
    assert_report_matches,
    company,
    connect,
    ledger,
    run,
)

INTENT = json.dumps(
    {"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "S0m3r4Nd0mt3xt"}
).encode()


def stored(rt) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(WebhookEvent))


def test_intent_to_receive_signed_gets_an_empty_200(rt, client):
    answer = post(client, INTENT)
    assert (answer.status_code, answer.data) == (200, b"")


def test_intent_to_receive_mis_signed_gets_401(rt, client):
    assert post(client, INTENT, sign(INTENT, "not-the-key")).status_code == 401
    assert post(client, INTENT, "").status_code == 401
    assert post(client, INTENT + b" ", sign(INTENT)).status_code == 401  # other bytes
    unsigned = client.post("/webhooks/xero", data=INTENT, content_type="application/json")
    assert unsigned.status_code == 401
    assert stored(rt) == 0


def test_duplicates_are_stored_once_and_unknown_tenants_ignored(
    rt, settings, config, client, fake, caplog
):
    company(rt, "harbor-nz")
    assert (
        connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    )
    stranger = "0b0e2a6c-4ad4-4b8f-a3f5-5d9b26f0a111"
    body = delivery(
        (fake.tenant_id, "INVOICE", "9c1d2f4e-1111-4e5b-8a3f-2c1d0e9f8a7b"),
        (stranger, "CONTACT", "9c1d2f4e-2222-4e5b-8a3f-2c1d0e9f8a7b"),
    )
    with caplog.at_level(logging.WARNING, logger="arbridge.webhooks.xero"):
        first, again = post(client, body), post(client, body)
    assert (first.status_code, first.data, again.status_code, again.data) == (200, b"", 200, b"")
    assert stored(rt) == 1
    assert any(stranger in r.getMessage() for r in caplog.records)


def test_the_worker_reads_the_named_invoices_again_in_one_call(rt, settings, config, client, fake):
    company(rt, "harbor-nz")
    ids = ledger(fake)
    assert (
        connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    )
    assert run(settings, config, "sync", "--company", "harbor-nz").exit_code == 0

    fake.now += timedelta(minutes=20)
    fake.update_invoice(ids[2], AmountDue=Decimal("12.34"), AmountPaid=Decimal("198.16"))
    fake.update_invoice(ids[4], AmountDue=Decimal("0.00"), AmountPaid=Decimal("300.50"))
    push_sync_job_back(rt)
    calls = len(fake.requests)
    body = delivery((fake.tenant_id, "INVOICE", ids[2]), (fake.tenant_id, "INVOICE", ids[4]))
    assert post(client, body).status_code == 200
    assert len(fake.requests) == calls  # the request only stores: Xero wants an answer in 5 s
    assert not claim_and_run(rt, "sync")  # nothing due before the worker has read the events
    assert drain(rt)[0] == 2
    reads = [r for r in fake.requests[calls:] if r["path"].startswith("/api.xro/")]
    assert [r["path"] for r in reads] == ["/api.xro/2.0/Invoices"]
    assert sorted(parse_qs(reads[0]["query"])["IDs"][0].split(",")) == sorted([ids[2], ids[4]])
    assert not claim_and_run(rt, "sync")  # the named invoices were read: no sync needed
    assert_report_matches(settings, config, "harbor-nz", fake)
    with rt.sessions() as s:
        assert list(s.scalars(select(WebhookEvent.status))) == ["processed", "processed"]

    # Xero delivers again: stored once, so nothing more is read.
    calls = len(fake.requests)
    assert post(client, body).status_code == 200
    assert drain(rt)[0] == 0
    assert fake.requests[calls:] == [
        r for r in fake.requests[calls:] if "/api.xro/" not in r["path"]
    ]
    assert stored(rt) == 2


def test_contacts_and_credit_notes_are_read_again_too(rt, settings, config, client, fake):
    company(rt, "harbor-nz")
    ids = ledger(fake)
    assert (
        connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    )
    assert run(settings, config, "sync", "--company", "harbor-nz").exit_code == 0
    contact = fake.store["Invoices"][ids[0]]["Contact"]["ContactID"]
    push_sync_job_back(rt)
    calls = len(fake.requests)
    missing = "9c1d2f4e-3333-4e5b-8a3f-2c1d0e9f8a7b"
    body = delivery(
        (fake.tenant_id, "CONTACT", contact),
        (fake.tenant_id, "CREDITNOTE", missing),
        (fake.tenant_id, "CREDITNOTE", "not-a-xero-id"),  # names nothing: not asked for
    )
    assert post(client, body).status_code == 200
    assert drain(rt)[0] == 3
    reads = [r["path"] for r in fake.requests[calls:] if r["path"].startswith("/api.xro/")]
    assert reads == ["/api.xro/2.0/Contacts", f"/api.xro/2.0/CreditNotes/{missing}"]
    assert not claim_and_run(rt, "sync")
