"""The dispatch tables built from the services' registrations, the typed outbox payloads, and
the one path that tells an owner something."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.errors import NotFound
from arbridge.services.bootstrap import merge_outbox, outbox_handlers, webhook_handlers
from arbridge.services.payments.events import STRIPE_EVENTS
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Company, OutboxMessage
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import LedgerPayment, OutboxKind, ledger_payment_key, queue


def test_every_outbox_kind_has_one_handler_and_only_email_is_not_idempotent(rt) -> None:
    table = outbox_handlers(rt)
    assert set(table) == {k.value for k in OutboxKind}
    assert {k for k, h in table.items() if not h.idempotent} == {"email"}


def test_a_kind_registered_twice_or_by_nobody_stops_the_worker() -> None:
    h = Handler(lambda m: None, idempotent=True)
    everything = {k: h for k in OutboxKind}
    assert set(merge_outbox([everything])) == {k.value for k in OutboxKind}
    with pytest.raises(RuntimeError, match="registered twice"):
        merge_outbox([everything, {OutboxKind.EMAIL: h}])
    with pytest.raises(RuntimeError, match="without a handler: \\['email'\\]"):
        merge_outbox([{k: h for k in OutboxKind if k is not OutboxKind.EMAIL}])


def test_webhook_table_covers_every_stripe_event_and_quickbooks_entity(rt) -> None:
    table = webhook_handlers(rt)
    assert {("stripe", e) for e in STRIPE_EVENTS} <= set(table)
    assert {("quickbooks", n) for n in ("Customer", "Invoice", "Payment", "CreditMemo")} <= set(
        table
    )


def test_a_typed_payload_queues_its_own_kind_with_amounts_as_strings(rt, demo_company) -> None:
    key = ledger_payment_key("pi_typed")
    payment = LedgerPayment(
        7,
        "C1",
        "USD",
        Decimal("10.50"),
        date(2026, 11, 24),
        "pi_typed",
        (("I1", Decimal("10.50")),),
    )
    with transaction(rt.sessions) as s:
        assert queue(s, rt.clock, company_id=demo_company.id, key=key, payload=payment)
        assert not queue(s, rt.clock, company_id=demo_company.id, key=key, payload=payment)
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        assert row is not None and row.kind == "ledger_payment"
        assert row.payload == {
            "connection_id": 7,
            "customer_source_id": "C1",
            "currency": "USD",
            "amount": "10.50",
            "received_on": "2026-11-24",
            "reference": "pi_typed",
            "lines": [{"invoice_source_id": "I1", "amount": "10.50"}],
        }


def _notices(rt, company_id: int) -> tuple[list[OutboxMessage], int]:
    with rt.sessions() as s:
        rows = s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.company_id == company_id, OutboxMessage.key.like("test:%")
            )
        ).all()
        logged = s.scalar(
            select(func.count())
            .select_from(Activity)
            .where(Activity.company_id == company_id, Activity.kind == "owner.notified")
        )
        return list(rows), logged or 0


def test_tell_owner_emails_once_per_key_and_logs_only_when_asked(rt, demo_company) -> None:
    _, logged_before = _notices(rt, demo_company.id)
    with transaction(rt.sessions) as s:
        kw = {"subject": "Hello", "text": "Body"}
        assert tell_owner(s, rt.clock, demo_company.id, key="test:a", **kw)
        assert not tell_owner(s, rt.clock, demo_company.id, key="test:a", **kw)
        assert tell_owner(
            s, rt.clock, demo_company.id, key="test:b", activity="owner.notified", mail=None, **kw
        )
        assert tell_owner(s, rt.clock, demo_company.id, key="test:" + "x" * 200, **kw)
    rows, logged = _notices(rt, demo_company.id)
    by_key = {r.key: r for r in rows}
    assert by_key["test:a"].kind == "email"
    assert by_key["test:a"].payload["mail"] == "owner"
    assert "mail" not in by_key["test:b"].payload
    assert by_key["test:a"].payload["to"] == by_key["test:b"].payload["to"]
    assert any(len(k) == 128 for k in by_key)
    assert logged == logged_before + 1


def test_tell_owner_without_an_owner_skips_or_refuses(rt, clock) -> None:
    with transaction(rt.sessions) as s:
        lonely = Company(
            name="Lonely",
            slug="lonely",
            home_currency="USD",
            timezone="UTC",
            country="US",
            created_at=clock.now(),
        )
        s.add(lonely)
        s.flush()
        assert not tell_owner(s, rt.clock, lonely.id, key="test:none", subject="s", text="t")
        with pytest.raises(NotFound):
            tell_owner(
                s, rt.clock, lonely.id, key="test:none", subject="s", text="t", required=True
            )
        company_id = lonely.id
    assert _notices(rt, company_id) == ([], 0)
