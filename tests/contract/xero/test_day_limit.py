"""When Xero's X-DayLimit-Remaining says less than a tenth of the day's allowance is left, the
scheduled sync waits for the next day's, while webhook re-fetches and write-backs go ahead."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from arbridge.services.bootstrap import outbox_handlers
from arbridge.sync.db import transaction
from arbridge.sync.model import ApiTenant, CompanyJob, OutboxMessage
from arbridge.sync.outbox import deliver
from arbridge.worker import claim_and_run, drain
from tests.contract.quickbooks.test_webhooks import push_sync_job_back
from tests.contract.xero.test_end_to_end import company, connect, ledger
from tests.contract.xero.test_outbox_write_back import KEY, connected, posted, queue_payment
from tests.contract.xero.test_webhook_route import delivery, post


def sync_job(rt) -> CompanyJob:
    with rt.sessions() as s:
        return s.scalar(select(CompanyJob).where(CompanyJob.job == "sync"))


def make_sync_due(rt) -> None:
    with transaction(rt.sessions) as s:
        s.execute(
            update(CompanyJob).where(CompanyJob.job == "sync").values(next_run_at=rt.clock.now())
        )


def test_a_low_day_limit_defers_the_sync_but_not_the_webhook_re_fetch(
    rt, settings, config, client, fake
):
    company(rt, "harbor-nz")
    ids = ledger(fake)
    assert (
        connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    )
    fake.day_calls = 4_700  # of 5,000: Xero answers with X-DayLimit-Remaining under 300
    make_sync_due(rt)
    assert claim_and_run(rt, "sync")  # nothing said yet: this sync runs, and learns
    assert sync_job(rt).last_error is None
    with rt.sessions() as s:
        assert s.scalar(select(ApiTenant.day_calls)) >= 4_700  # what Xero said, not our count

    make_sync_due(rt)
    calls = len(fake.requests)
    assert claim_and_run(rt, "sync")
    assert fake.requests[calls:] == []  # the sync did not spend a call
    job = sync_job(rt)
    assert job.next_run_at > rt.clock.now() + timedelta(hours=1)  # the next UTC day
    assert "allowance" in (job.last_error or "")

    fake.now += timedelta(minutes=20)
    fake.update_invoice(ids[1], AmountDue=Decimal("5.00"), AmountPaid=Decimal("160.50"))
    push_sync_job_back(rt)
    assert post(client, delivery((fake.tenant_id, "INVOICE", ids[1]))).status_code == 200
    assert drain(rt)[0] == 1
    reads = [r["path"] for r in fake.requests[calls:] if r["path"].startswith("/api.xro/")]
    assert reads == ["/api.xro/2.0/Invoices"]


def test_plenty_left_lets_the_sync_run(rt, settings, config, fake):
    company(rt, "harbor-nz")
    ledger(fake)
    assert (
        connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    )
    fake.day_calls = 4_000  # 1,000 left: a fifth
    make_sync_due(rt)
    assert claim_and_run(rt, "sync")
    make_sync_due(rt)
    calls = len(fake.requests)
    assert claim_and_run(rt, "sync")
    assert any(r["path"].startswith("/api.xro/") for r in fake.requests[calls:])
    assert sync_job(rt).last_error is None


def test_a_low_day_limit_still_writes_collected_payments_back(rt, settings, config, fake):
    fake.day_calls = 4_700
    conn, ids = connected(rt, settings, config, fake)  # its sync hears how little is left
    make_sync_due(rt)
    calls = len(fake.requests)
    assert claim_and_run(rt, "sync")
    assert fake.requests[calls:] == []
    queue_payment(rt, conn, fake, ids[:2])
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == KEY))
    assert row.status == "sent", row.last_error
    assert len(posted(fake)) == 2
