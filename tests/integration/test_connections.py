"""The provider-neutral connection machinery: call budgets keyed by (provider, tenant) with a
daily budget, the lifecycle with the provider's own label, and the limiter tables' migration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import select, text

from arbridge.errors import RateLimited
from arbridge.sync import connections, db
from arbridge.sync.call_limits import CallLimiter
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    ApiCall,
    ApiTenant,
    Company,
    CompanyJob,
    Connection,
    OutboxMessage,
)
from arbridge.sync.outbox import enqueue


class Waited(Exception):
    pass


def refuse(seconds: float) -> None:
    raise Waited(seconds)


def test_limits_are_kept_per_provider_and_tenant(rt):
    a = CallLimiter(rt.sessions, rt.clock, "xero", "t-1", refuse, concurrent=1)
    same_id_other_provider = CallLimiter(rt.sessions, rt.clock, "quickbooks", "t-1", refuse)
    with a.slot():
        with pytest.raises(Waited), a.slot():
            pass
        with same_id_other_provider.slot():
            pass


def test_a_spent_daily_budget_says_when_to_come_back_instead_of_waiting(rt):
    limiter = CallLimiter(rt.sessions, rt.clock, "xero", "t-1", refuse, daily=3)
    for _ in range(3):
        with limiter.slot():
            pass
    with pytest.raises(RateLimited) as limited, limiter.slot():
        pass
    now = rt.clock.now()  # 15:00 UTC: nine hours to the next UTC day
    assert (
        limited.value.retry_after == (now.replace(hour=0) + timedelta(days=1) - now).total_seconds()
    )
    rt.clock.advance(timedelta(hours=9))
    with limiter.slot():
        pass
    with rt.sessions() as s:
        row = s.get(ApiTenant, ("xero", "t-1"))
        assert (row.day, row.day_calls) == (rt.clock.now().date(), 1)


def test_a_minute_budget_is_never_slept_out_inside_a_job(rt):
    """A wait of a few seconds is slept; a wait of a minute raises RateLimited at once with
    the time to come back, so the worker reschedules the job instead of holding its row."""
    slept: list[float] = []
    limiter = CallLimiter(rt.sessions, rt.clock, "xero", "t-1", slept.append, per_minute=2)
    for _ in range(2):
        with limiter.slot():
            pass
    with pytest.raises(RateLimited) as limited, limiter.slot():
        pass
    assert slept == [] and limited.value.retry_after == 60
    rt.clock.advance(timedelta(seconds=57))  # the budget frees in 3 s: waited for here
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        rt.clock.advance(timedelta(seconds=seconds))

    with CallLimiter(rt.sessions, rt.clock, "xero", "t-1", sleep, per_minute=2).slot():
        pass
    assert waits == [3.0]


def test_slots_that_stay_taken_reschedule_the_job_after_a_few_seconds(rt):
    slept: list[float] = []
    limiter = CallLimiter(rt.sessions, rt.clock, "xero", "t-1", slept.append, concurrent=1)
    with limiter.slot(), pytest.raises(RateLimited) as limited, limiter.slot():
        pass
    assert 0 < sum(slept) <= limiter.max_wait
    assert limited.value.retry_after == CallLimiter.BUSY_RETRY_AFTER


@dataclass
class FakeGrant:
    access_token: str

    def as_credentials(self):
        return {"access_token": self.access_token, "refresh_token": "r-" + self.access_token}


def test_the_lifecycle_names_the_provider_and_revives_write_backs(rt):
    from arbridge.sync.store import create_company

    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Kiwi Ltd",
            slug="kiwi",
            home_currency="NZD",
            timezone="Pacific/Auckland",
            country="NZ",
            owner_email="owner@kiwi.example",
        )
        conn = connections.attach(
            s,
            rt.keyring,
            rt.clock,
            company,
            provider="xero",
            label="Xero",
            tenant_id="t-9",
            grant=FakeGrant("a1"),
        )
        connections.mark_needs_reconnect(s, rt.clock, conn, "HTTP 401", label="Xero")
        enqueue(
            s,
            rt.clock,
            company_id=company.id,
            kind="ledger_payment",
            key="ledger_payment:pi_1",
            payload={},
        )
        s.flush()
        s.execute(
            OutboxMessage.__table__.update().values(status="dead", last_error="AuthExpired: 401")
        )
        company_id, conn_id = company.id, conn.id
    with rt.sessions() as s:
        mail = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "email"))
        assert mail.payload["subject"] == "Reconnect Xero to keep arbridge up to date"
        assert "Xero stopped accepting" in mail.payload["text"]
        assert mail.key.startswith(f"xero:needs-reconnect:{conn_id}:")
        assert s.scalar(
            select(CompanyJob.paused).where(
                CompanyJob.company_id == company_id, CompanyJob.job == "sync"
            )
        )
    with transaction(rt.sessions) as s:
        connections.attach(
            s,
            rt.keyring,
            rt.clock,
            s.get(Company, company_id),
            provider="xero",
            label="Xero",
            tenant_id="t-9",
            grant=FakeGrant("a2"),
        )
    with rt.sessions() as s:
        assert s.get(Connection, conn_id).status == "active"
        write = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "ledger_payment"))
        assert (write.status, write.last_error) == ("pending", None)
        assert not s.scalar(
            select(CompanyJob.paused).where(
                CompanyJob.company_id == company_id, CompanyJob.job == "sync"
            )
        )
        texts = set(s.scalars(select(Activity.message).where(Activity.company_id == company_id)))
    assert "Connected Xero" in texts


def test_the_limiter_tables_keep_their_rows_across_the_rename(rt):
    cfg = db.alembic_config(rt.engine)
    command.downgrade(cfg, "0010")
    try:
        with rt.engine.begin() as c:
            c.execute(text("INSERT INTO quickbooks_realms (realm_id) VALUES ('4620816365')"))
            c.execute(
                text(
                    "INSERT INTO quickbooks_calls (realm_id, started_at, lease_until) "
                    "VALUES ('4620816365', :t, :t)"
                ),
                {"t": rt.clock.now()},
            )
    finally:
        command.upgrade(cfg, "head")
    with rt.sessions() as s:
        assert s.get(ApiTenant, ("quickbooks", "4620816365")) is not None
        calls = s.execute(select(ApiCall.provider, ApiCall.tenant_id)).all()
    assert [tuple(c) for c in calls] == [("quickbooks", "4620816365")]
