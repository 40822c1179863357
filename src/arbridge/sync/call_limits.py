"""A provider's per-tenant API budget across every worker process, kept in the database.

Each call takes a slot row under the tenant's row lock and releases it when done; a process that
dies mid-call frees its slot when the lease ends. Three budgets, each optional: calls started in
any 60 s, calls in flight, calls in a UTC day. The caller usually runs inside a worker job that
holds its job row locked, so like the connectors' retry loop (connectors/retry.py) the limiter
sleeps at most `max_wait` seconds in all: a budget that frees up sooner is waited for here, and
anything longer (a spent minute budget that frees in 60 s, a spent daily budget, slots that stay
taken) raises RateLimited with the time to come back, so the job is rescheduled instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.connectors.retry import MAX_WAIT
from arbridge.errors import RateLimited
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import ApiCall, ApiTenant

# Below this share of the daily allowance, what can wait (a scheduled sync) waits for tomorrow's,
# so webhook re-fetches and payment write-backs still have calls to spend.
DAY_RESERVE = 0.1


class CallLimiter:
    WINDOW = timedelta(seconds=60)
    POLL = 0.05  # how often a full set of in-flight slots is looked at again
    # Calls in flight usually end within seconds; when every slot stays taken for `max_wait`,
    # the job comes back this much later rather than polling on.
    BUSY_RETRY_AFTER = 30.0

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        provider: str,
        tenant_id: str,
        sleep: Callable[[float], None],
        *,
        per_minute: int | None = None,
        concurrent: int | None = None,
        daily: int | None = None,
        lease: timedelta = timedelta(seconds=130),
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.provider = provider
        self.tenant_id = tenant_id
        self.sleep = sleep
        self.per_minute = per_minute
        self.concurrent = concurrent
        self.daily = daily
        self.lease = lease  # longer than the provider's own request timeout
        self.max_wait = max_wait

    def _take(self) -> tuple[int | None, float | None]:
        """(the slot's call id, 0) when taken; else (None, seconds until the minute budget
        frees one) or (None, None) while every in-flight slot is taken."""
        with transaction(self.factory) as s:
            s.execute(
                dialect_insert(s)(ApiTenant.__table__)
                .values(provider=self.provider, tenant_id=self.tenant_id, day_calls=0)
                .on_conflict_do_nothing(index_elements=["provider", "tenant_id"])
            )
            tenant = (ApiTenant.provider == self.provider) & (ApiTenant.tenant_id == self.tenant_id)
            # The lock: an UPDATE takes the row lock on PostgreSQL and the write lock on SQLite.
            s.execute(update(ApiTenant).where(tenant).values(tenant_id=self.tenant_id))
            now = self.clock.now()
            row = s.scalar(select(ApiTenant).where(tenant))
            assert row is not None
            if row.day != now.date():
                row.day, row.day_calls = now.date(), 0
            if self.daily is not None and row.day_calls >= self.daily:
                midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
                wait = (midnight.replace(tzinfo=now.tzinfo) - now).total_seconds()
                raise RateLimited(
                    f"{self.provider} tenant {self.tenant_id} has used its {self.daily} calls "
                    "for today",
                    wait,
                )
            mine = (ApiCall.provider == self.provider) & (ApiCall.tenant_id == self.tenant_id)
            s.execute(
                delete(ApiCall).where(
                    mine,
                    ApiCall.started_at <= now - self.WINDOW,
                    (ApiCall.finished_at.is_not(None)) | (ApiCall.lease_until < now),
                )
            )
            if self.per_minute is not None:
                recent = s.scalars(
                    select(ApiCall.started_at)
                    .where(mine, ApiCall.started_at > now - self.WINDOW)
                    .order_by(ApiCall.started_at)
                ).all()
                if len(recent) >= self.per_minute:
                    return None, (recent[0] + self.WINDOW - now).total_seconds()
            if self.concurrent is not None:
                flying = s.scalar(
                    select(func.count())
                    .select_from(ApiCall)
                    .where(mine, ApiCall.finished_at.is_(None), ApiCall.lease_until > now)
                )
                if (flying or 0) >= self.concurrent:
                    return None, None
            call = ApiCall(
                provider=self.provider,
                tenant_id=self.tenant_id,
                started_at=now,
                lease_until=now + self.lease,
            )
            s.add(call)
            row.day_calls += 1
            s.flush()
            return call.id, 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        waited = 0.0  # the sleeps asked for, so the cap holds whatever the clock does meanwhile
        while True:
            call_id, wait = self._take()
            if call_id is not None:
                break
            pause = self.POLL if wait is None else max(wait, 0.001)
            if waited + pause > self.max_wait:
                raise RateLimited(
                    f"{self.provider} tenant {self.tenant_id} is at its call budget",
                    self.BUSY_RETRY_AFTER if wait is None else wait,
                )
            self.sleep(pause)
            waited += pause
        try:
            yield
        finally:
            with transaction(self.factory) as s:
                s.execute(
                    update(ApiCall)
                    .where(ApiCall.id == call_id)
                    .values(finished_at=self.clock.now())
                )

    # -- the daily allowance as the provider reports it -----------------------------------------

    def _tenant_row(self, s: Session) -> ApiTenant | None:
        return s.scalar(
            select(ApiTenant).where(
                ApiTenant.provider == self.provider, ApiTenant.tenant_id == self.tenant_id
            )
        )

    def observe_day_remaining(self, remaining: int) -> None:
        """The provider said this much of today's allowance is left: our count of today's calls
        is at least what that implies (other apps' or lost calls count there too)."""
        if self.daily is None:
            return
        with transaction(self.factory) as s:
            row = self._tenant_row(s)
            now = self.clock.now()
            if row is None:
                return
            if row.day != now.date():
                row.day, row.day_calls = now.date(), 0
            row.day_calls = max(row.day_calls, self.daily - remaining)

    def day_reserve_low(self, fraction: float = DAY_RESERVE) -> float | None:
        """Seconds until the daily allowance renews (UTC midnight) while less than `fraction`
        of it is left; None otherwise."""
        if self.daily is None:
            return None
        with self.factory() as s:
            row = self._tenant_row(s)
            now = self.clock.now()
            if row is None or row.day != now.date():
                return None
            if self.daily - row.day_calls >= self.daily * fraction:
                return None
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
        return (midnight.replace(tzinfo=now.tzinfo) - now).total_seconds()
