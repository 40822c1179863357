"""A QuickBooks throttle (60 s) is never slept out inside a job: the sync job, the outbox
write-back and the connector call each leave at once and come back when Intuit said."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from arbridge.errors import RateLimited
from arbridge.services.bootstrap import outbox_handlers
from arbridge.sync.model import Activity, CompanyJob, Connection
from arbridge.sync.outbox import deliver
from arbridge.worker import claim_and_run
from tests.contract.quickbooks.conftest import connector, seed_ledger
from tests.contract.quickbooks.test_sync import assert_same_books
from tests.contract.quickbooks.test_write_back import outbox_row, queue_payment


def refuse_to_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}s inside a job")


def test_a_long_throttle_leaves_the_connector_as_rate_limited(rt, fake, connected):
    seed_ledger(fake)
    fake.throttle()
    qbo = connector(rt, connected.conn, sleep=refuse_to_sleep)
    with pytest.raises(RateLimited) as limited:
        list(qbo.pull("customers", None))
    assert limited.value.retry_after == 60.0


def test_a_long_throttle_reschedules_the_sync_instead_of_sleeping(rt, fake, connected):
    seed_ledger(fake)
    fake.throttle()
    started = time.monotonic()
    assert claim_and_run(rt, "sync")  # the runtime's own connector, with the real time.sleep
    assert time.monotonic() - started < 30
    with rt.sessions() as s:
        job = s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == connected.company.id, CompanyJob.job == "sync"
            )
        )
        assert job.next_run_at == rt.clock.now() + timedelta(seconds=60)
        assert job.last_error.startswith("RateLimited: QuickBooks throttled")
        # A pause the provider asked for is not shown to the owner as a failed sync.
        assert s.scalar(select(Activity).where(Activity.kind == "sync.failed")) is None
        assert s.get(Connection, connected.conn.id).last_sync_error is None
    assert not claim_and_run(rt, "sync")  # not due before the minute is up
    rt.clock.advance(timedelta(seconds=60))
    assert claim_and_run(rt, "sync")
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        job = s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == connected.company.id, CompanyJob.job == "sync"
            )
        )
        assert job.last_error is None
        assert job.next_run_at == rt.clock.now() + timedelta(minutes=15)


def test_a_throttled_write_back_waits_in_the_outbox_not_in_the_worker(rt, fake, connected):
    ids = seed_ledger(fake)
    queue_payment(rt, connected.conn, ids["invoices"][1], ids["customers"][1], "3.00", "pay:t")
    fake.throttle()
    started = time.monotonic()
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert time.monotonic() - started < 30
    row = outbox_row(rt, "pay:t")
    assert row.status == "pending"
    assert row.next_attempt_at == rt.clock.now() + timedelta(seconds=60)
    rt.clock.advance(timedelta(seconds=60))
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert outbox_row(rt, "pay:t").status == "sent"
