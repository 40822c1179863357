"""QuickBooks webhooks: known-answer signatures in both formats, duplicates, unknown realms, and
the worker re-fetching what changed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from arbridge.errors import SignatureInvalid
from arbridge.sync.db import transaction
from arbridge.sync.model import CompanyJob, Invoice, WebhookDelivery, WebhookEvent
from arbridge.webhooks.quickbooks import MalformedWebhook, parse
from arbridge.webhooks.verify import verify_base64_hmac_sha256
from arbridge.worker import claim_and_run, drain
from tests.contract.quickbooks.conftest import TODAY, VERIFIER, seed_ledger, sync
from tests.contract.quickbooks.test_sync import assert_same_books

FIXTURES = Path(__file__).parents[2] / "fixtures" / "quickbooks"
# Computed independently: openssl dgst -sha256 -hmac "$VERIFIER" -binary FILE | base64
KNOWN = {
    "webhook_classic.json": "zXzbTSiZmpc9H3JTYSA8HLOgfGre5yZtj35/QJ/1fkE=",
    "webhook_cloudevents.json": "2otj3p2t7BHo1IrRr/oZGRdY1Y1myLOFzJN0YrEPCfQ=",
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_answer_signatures(name):
    body = (FIXTURES / name).read_bytes()
    verify_base64_hmac_sha256(body, KNOWN[name], VERIFIER)
    with pytest.raises(SignatureInvalid):
        verify_base64_hmac_sha256(body + b" ", KNOWN[name], VERIFIER)
    with pytest.raises(SignatureInvalid):
        verify_base64_hmac_sha256(body, KNOWN[name], VERIFIER + "x")


def test_both_formats_parse_into_the_same_events():
    classic = parse((FIXTURES / "webhook_classic.json").read_bytes())
    assert [
        (e.tenant_id, e.event_type, e.payload["id"], e.payload["operation"]) for e in classic
    ] == [
        ("9130357012345678", "Invoice", "142", "Update"),
        ("9130357012345678", "Customer", "58", "Create"),
        ("9130357012345678", "Payment", "151", "Delete"),
    ]
    cloud = parse((FIXTURES / "webhook_cloudevents.json").read_bytes())
    assert [(e.event_type, e.payload["id"], e.payload["operation"]) for e in cloud] == [
        ("Invoice", "142", "updated"),
        ("CreditMemo", "77", "deleted"),
    ]
    assert cloud[0].event_id == "ce:88cd52a4-1c4e-4b7e-a3f3-9b5e7d3f2a10"
    assert cloud[0].occurred_at is not None


@pytest.mark.parametrize("body", [b"not json", b'{"something": "else"}', b'[{"type": "x"}]'])
def test_malformed_payloads_are_refused(body):
    with pytest.raises(MalformedWebhook):
        parse(body)


def sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(VERIFIER.encode(), body, hashlib.sha256).digest()).decode()


def classic(realm: str, *entities: tuple[str, str, str], when: str = "2026-11-24T15:05:00.000Z"):
    return json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": realm,
                    "dataChangeEvent": {
                        "entities": [
                            {"name": n, "id": i, "operation": op, "lastUpdated": when}
                            for n, i, op in entities
                        ]
                    },
                }
            ]
        }
    ).encode()


def cloudevent(realm: str, entity: str, record_id: str, operation: str, event_id: str) -> bytes:
    return json.dumps(
        [
            {
                "specversion": "1.0",
                "id": event_id,
                "source": "intuit.test",
                "type": f"qbo.{entity.lower()}.{operation}.v1",
                "datacontenttype": "application/json",
                "time": "2026-11-24T15:06:00.000Z",
                "intuitentityid": record_id,
                "intuitaccountid": realm,
                "data": {},
            }
        ]
    ).encode()


def push_sync_job_back(rt, minutes: int = 15) -> None:
    with transaction(rt.sessions) as s:
        s.execute(
            update(CompanyJob)
            .where(CompanyJob.job == "sync")
            .values(next_run_at=rt.clock.now() + timedelta(minutes=minutes))
        )


def post(client, body: bytes, signature: str | None = None):
    return client.post(
        "/webhooks/quickbooks",
        data=body,
        headers={"intuit-signature": signature or sign(body), "Content-Type": "application/json"},
    )


def count(rt, model, *where):
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_a_forged_delivery_is_refused_and_not_stored(rt, client, fake, connected):
    body = classic(fake.realm_id, ("Invoice", "1", "Update"))
    response = post(client, body, signature=sign(b"something else"))
    assert response.status_code == 401
    assert count(rt, WebhookDelivery) == 0


def test_webhook_changes_reach_the_books_once(rt, client, fake, connected):
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(minutes=3))
    invoice, gone = ids["invoices"][1], ids["invoices"][5]
    fake.update_invoice(invoice, Balance=Decimal("0.50"))
    fake.delete("Invoice", gone)
    new_customer = fake.add_customer("Fresh Customer")
    new_invoice = fake.add_invoice(new_customer, "75.00", issued=TODAY, due=TODAY)
    body = classic(
        fake.realm_id,
        ("Invoice", invoice, "Update"),
        ("Invoice", gone, "Delete"),
        ("Invoice", new_invoice, "Create"),  # before its customer's own event
    )
    push_sync_job_back(rt)  # not due: only the webhook can make it run now
    first = post(client, body)
    assert first.status_code == 200 and first.get_json() == {"stored": 3, "duplicates": 0}
    again = post(client, body)  # Intuit retries: stored once
    assert again.get_json() == {"stored": 0, "duplicates": 3}
    ce = cloudevent(fake.realm_id, "Customer", new_customer, "created", "evt-1")
    assert post(client, ce).get_json() == {"stored": 1, "duplicates": 0}
    assert post(client, ce).get_json() == {"stored": 0, "duplicates": 1}
    events, _sent = drain(rt)
    assert events == 4
    assert count(rt, WebhookEvent, WebhookEvent.status != "processed") == 0
    with rt.sessions() as s:  # the deletion is in at once
        assert s.scalar(select(Invoice.status).where(Invoice.source_id == gone)) == "deleted"
    cdc = fake.calls["cdc"]
    assert claim_and_run(rt, "sync")  # the sync job was made due now, and runs once
    assert not claim_and_run(rt, "sync")
    assert fake.calls["cdc"] - cdc == 4  # one CDC call per entity, whatever the event count
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        by_id = {i.source_id: i for i in s.scalars(select(Invoice))}
    assert by_id[invoice].open_balance_minor == 50
    assert by_id[gone].status == "deleted"
    assert by_id[new_invoice].open_balance_minor == 7500
    assert drain(rt) == (0, 0)  # nothing left to do


def test_an_unknown_realm_is_logged_and_ignored(rt, client, fake, connected, caplog):
    body = classic("1111222233334444", ("Invoice", "5", "Update"))
    response = post(client, body)
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0}
    assert count(rt, WebhookEvent) == 0
    assert "1111222233334444" in caplog.text


def test_events_of_other_entities_are_ignored(rt, client, fake, connected):
    body = classic(fake.realm_id, ("Estimate", "9", "Update"))
    assert post(client, body).get_json() == {"stored": 1, "duplicates": 0}
    drain(rt)
    assert count(rt, WebhookEvent, WebhookEvent.status == "ignored") == 1


def test_a_signed_but_malformed_delivery_is_refused(rt, client, fake, connected):
    body = b'{"eventNotifications": [{"dataChangeEvent": {}}]}'
    assert post(client, body).status_code == 400
    assert count(rt, WebhookEvent) == 0


def test_without_a_verifier_every_delivery_is_refused(rt, settings, fake, connected):
    from arbridge.web import create_app

    app = create_app(rt.__class__(settings.with_(qbo_webhook_verifier=None), rt.engine,
                                  rt.sessions, rt.keyring, rt.clock), TESTING=True)  # fmt: skip
    body = classic(fake.realm_id, ("Invoice", "1", "Update"))
    assert post(app.test_client(), body).status_code == 401


def test_replayed_delivery_stores_its_body_once_and_counts_the_repeats(rt, client, fake, connected):
    """Intuit retries for days and an attacker may replay a captured delivery: the body is kept
    once (by its hash), each repeat is counted."""
    body = classic(fake.realm_id, ("Invoice", "1", "Update"))
    for _ in range(5):
        assert post(client, body).status_code == 200
    other = classic(fake.realm_id, ("Invoice", "2", "Update"))
    assert post(client, other).status_code == 200
    with rt.sessions() as s:
        deliveries = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert [(d.body.encode(), d.repeats) for d in deliveries] == [(body, 4), (other, 0)]
    assert count(rt, WebhookEvent) == 2
