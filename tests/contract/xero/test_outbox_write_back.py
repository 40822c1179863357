"""A payment collected through arbridge on a Xero company goes to Xero through the outbox's
ledger write-back, with the outbox key as Xero's Idempotency-Key: a write-back whose answer is
lost, or that runs again after the worker crashed before recording it, posts once."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.ledger.writebacks import post_ledger_payment
from arbridge.services.payments.refunds import refit_to_ledger
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection, OutboxMessage
from arbridge.sync.outbox import deliver, enqueue
from arbridge.sync.outbox_kinds import OutboxKind, ledger_payment_payload
from tests.conftest import sync_now
from tests.contract.xero.conftest import TODAY, open_balance
from tests.contract.xero.test_end_to_end import company, ledger, run

KEY = "stripe:pi_x10_3QhGfK2eZvKYlo2C:ledger"
REFERENCE = "pi_x10_3QhGfK2eZvKYlo2C"


def connected(rt, settings, config, fake) -> tuple[Connection, list[str]]:
    row = company(rt, "harbor-nz")
    ids = ledger(fake)
    # The owner's choice of account for collected payments: the fake's bank account 090.
    done = run(
        settings, config,
        "connect", "xero", "--company", "harbor-nz", "--tenant-id", fake.tenant_id,
        "--refresh-token", fake.issue_grant()[1],
        "--payment-account-id", fake.bank_accounts["090"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "No Xero account is chosen" not in done.output
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == row.id))
        s.expunge(conn)
    sync_now(rt, conn, full=True)
    return conn, ids


def queue_payment(rt, conn, fake, invoices: list[str]) -> None:
    """A payment settling part of each of these invoices (more than five: more ids than the
    outbox's provider_ref used to hold)."""
    with transaction(rt.sessions) as s:
        enqueue(
            s,
            rt.clock,
            company_id=conn.company_id,
            kind=OutboxKind.LEDGER_PAYMENT,
            key=KEY,
            payload=ledger_payment_payload(
                conn,
                customer_source_id=fake.store["Invoices"][invoices[0]]["Contact"]["ContactID"],
                currency="NZD",
                amount=Decimal("10.00") * len(invoices),
                received_on=TODAY,
                reference=REFERENCE,
                lines=[(i, Decimal("10.00")) for i in invoices],
            ),
        )


def posted(fake) -> list[dict]:
    return [p for p in fake.live_payments() if p["Reference"] == REFERENCE]


def test_a_write_back_whose_answer_is_lost_posts_once(rt, settings, config, fake):
    conn, ids = connected(rt, settings, config, fake)
    queue_payment(rt, conn, fake, ids)
    fake.injected.append(("lose_response",))  # Xero writes the payments, the answer is lost
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == KEY))
    assert row.status == "sent", row.last_error
    assert len(posted(fake)) == len(ids) == 6
    assert sorted(row.provider_ref.split(",")) == sorted(p["PaymentID"] for p in posted(fake))
    puts = [r for r in fake.requests if r["method"] == "PUT" and r["path"].endswith("/Payments")]
    assert len(puts) == 2 and {r["headers"].get("Idempotency-Key") for r in puts} == {KEY}

    # The worker ran it again (say it crashed before recording it): the same payments answer.
    for _ in range(2):
        assert post_ledger_payment(rt, row, refit_to_ledger) == row.provider_ref
    assert len(posted(fake)) == 6
    fake.tick()
    sync_now(rt, conn)
    assert open_balance(rt, conn) == fake.open_balance()


def test_a_crash_before_the_row_is_recorded_posts_once(rt, settings, config, fake):
    conn, ids = connected(rt, settings, config, fake)
    queue_payment(rt, conn, fake, ids[:2])
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == KEY))
    first = post_ledger_payment(rt, row, refit_to_ledger)  # posted, then the worker died
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))  # the row was still pending: again
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == KEY))
    assert (row.status, row.provider_ref) == ("sent", first)
    assert len(posted(fake)) == 2
