"""The worker: claiming due (company, job) rows, scheduling the next run, surviving a failing
company, and (on PostgreSQL) several worker processes side by side."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from arbridge.clock import SystemClock
from arbridge.connectors.demo import generate_demo_ledger
from arbridge.demo import DEMO_TENANT
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    Company,
    CompanyJob,
    Connection,
    Invoice,
    SyncError,
)
from arbridge.sync.schedule import next_run, reschedule
from arbridge.sync.store import add_connection, company_today, create_company
from arbridge.worker import claim_and_run, tick
from tests.conftest import ON_POSTGRES, env_for_subprocess

CHICAGO = ZoneInfo("America/Chicago")
needs_postgres = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="row locks (SELECT ... FOR UPDATE SKIP LOCKED) need PostgreSQL: "
    "set ARBRIDGE_DATABASE_URL=postgresql+psycopg://...",
)


def job_row(session, company_id: int, job: str) -> CompanyJob:
    row = session.scalar(
        select(CompanyJob).where(CompanyJob.company_id == company_id, CompanyJob.job == job)
    )
    assert row is not None
    return row


def add_demo_company(
    rt: Runtime, slug: str, *, customers: int = 5, invoices: int = 20, ledger: bool = True
) -> Company:
    """A company on its own demo ledger, set up the way arbridge.demo does it."""
    tenant = f"tenant-{slug}"
    with transaction(rt.sessions) as session:
        company = create_company(
            session,
            rt.clock,
            name=f"Company {slug}",
            slug=slug,
            home_currency="USD",
            timezone="America/Chicago",
            country="US",
            owner_email=f"owner@{slug}.example",
        )
        add_connection(session, rt.keyring, rt.clock, company, "demo", tenant, {"note": "demo"})
        session.expunge(company)
    if ledger:
        generate_demo_ledger(
            rt.demo_ledger(tenant),
            company_today(company, rt.clock),
            customers=customers,
            invoices=invoices,
        )
    return company


def activity_kinds(session, company_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Activity.kind).where(Activity.company_id == company_id).order_by(Activity.id)
        )
    )


# 1. One due sync, run once, then scheduled by the company's own interval.
def test_claim_and_run_runs_a_due_sync_once_and_schedules_the_next(rt, clock, demo_company):
    start = clock.now()
    with transaction(rt.sessions) as s:
        s.get(Company, demo_company.id).sync_interval_minutes = 40
    # A change in the ledger that only a sync brings in, to show the job really syncs.
    ledger = rt.demo_ledger(DEMO_TENANT)
    target = next(i for i in ledger.read()["Invoice"] if i["status"] == "AUTHORISED")
    ledger.void_invoice(target["id"])

    assert claim_and_run(rt, "sync", "worker-a") is True

    with rt.sessions() as s:
        job = job_row(s, demo_company.id, "sync")
        assert job.runs == 1
        assert job.last_error is None
        assert job.last_worker == "worker-a"
        assert job.last_started_at == start
        assert job.last_finished_at == start
        assert job.next_run_at == start + timedelta(minutes=40)
        invoice = s.scalar(select(Invoice).where(Invoice.source_id == target["id"]))
        assert invoice.status == "voided"
        conn = s.scalar(select(Connection).where(Connection.company_id == demo_company.id))
        assert conn.last_sync_at == start
        # Claiming the sync job leaves the company's other job alone.
        assert job_row(s, demo_company.id, "collections").runs == 0

    assert claim_and_run(rt, "sync", "worker-a") is False  # nothing due any more

    clock.advance(timedelta(minutes=39, seconds=59))
    assert claim_and_run(rt, "sync", "worker-b") is False
    clock.advance(timedelta(seconds=1))
    assert claim_and_run(rt, "sync", "worker-b") is True
    assert claim_and_run(rt, "sync", "worker-b") is False

    with rt.sessions() as s:
        job = job_row(s, demo_company.id, "sync")
        assert job.runs == 2
        assert job.last_worker == "worker-b"
        assert job.next_run_at == start + timedelta(minutes=80)


def test_a_paused_job_is_not_claimed(rt, demo_company):
    with transaction(rt.sessions) as s:
        job_row(s, demo_company.id, "sync").paused = True
    assert claim_and_run(rt, "sync") is False
    with rt.sessions() as s:
        assert job_row(s, demo_company.id, "sync").runs == 0


def test_tick_runs_every_due_job_once_and_logs_the_daily_collections_run(rt, demo_company):
    assert tick(rt, "worker-a") == 2
    assert tick(rt, "worker-a") == 0
    with rt.sessions() as s:
        for job in ("sync", "collections"):
            assert job_row(s, demo_company.id, job).runs == 1
        daily = s.scalars(
            select(Activity).where(
                Activity.company_id == demo_company.id, Activity.kind == "collections.daily"
            )
        ).all()
    assert len(daily) == 1
    assert "overdue invoice" in daily[0].message
    assert daily[0].data["overdue_balance"]


# 2. The daily collections run, in the company's own timezone, across daylight-saving changes.
def company_at(hour: int, timezone: str = "America/Chicago", interval: int = 15) -> Company:
    return Company(collections_hour=hour, timezone=timezone, sync_interval_minutes=interval)


def chicago(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=CHICAGO, fold=fold).astimezone(UTC)


@pytest.mark.parametrize(
    ("hour", "after", "expected"),
    [
        # An ordinary day: later today if the hour is still to come, else tomorrow.
        (9, chicago(2026, 11, 24, 8, 59), chicago(2026, 11, 24, 9)),
        (9, chicago(2026, 11, 24, 9), chicago(2026, 11, 25, 9)),
        (9, chicago(2026, 11, 24, 15), chicago(2026, 11, 25, 9)),
        # 2026-11-01 DST ends in Chicago: 09:00 is 14:00 UTC on Oct 31, 15:00 UTC on Nov 1.
        (9, chicago(2026, 10, 31, 9, 30), datetime(2026, 11, 1, 15, tzinfo=UTC)),
        (9, chicago(2026, 10, 31, 8), datetime(2026, 10, 31, 14, tzinfo=UTC)),
        # 2027-03-14 DST starts: 09:00 is 15:00 UTC on Mar 13, 14:00 UTC on Mar 14.
        (9, chicago(2027, 3, 13, 9, 30), datetime(2027, 3, 14, 14, tzinfo=UTC)),
        (9, chicago(2027, 3, 14, 9, 30), datetime(2027, 3, 15, 14, tzinfo=UTC)),
        # The repeated hour: having run at 01:00 CDT, the next run is not 01:00 CST that night.
        (1, chicago(2026, 11, 1, 1, 0, 5), chicago(2026, 11, 2, 1)),
        (1, chicago(2026, 11, 1, 0, 30), datetime(2026, 11, 1, 6, tzinfo=UTC)),
        # The skipped hour: 02:00 does not exist on 2027-03-14; the run happens as clocks jump.
        (2, chicago(2027, 3, 13, 2, 0, 5), datetime(2027, 3, 14, 8, tzinfo=UTC)),
        (2, datetime(2027, 3, 14, 8, tzinfo=UTC), chicago(2027, 3, 15, 2)),
        # Midnight on the day after clocks go forward is not skipped.
        (0, chicago(2027, 3, 14, 0, 0, 5), chicago(2027, 3, 15, 0)),
    ],
)
def test_next_collections_run_is_the_hour_on_the_company_clock(hour, after, expected):
    got = next_run("collections", company_at(hour), after)
    assert got == expected
    assert got.tzinfo is UTC


def test_next_collections_run_uses_each_company_timezone():
    after = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert next_run("collections", company_at(9, "UTC"), after) == datetime(
        2026, 11, 25, 9, tzinfo=UTC
    )
    assert next_run("collections", company_at(9, "Asia/Tokyo"), after) == datetime(
        2026, 11, 25, 0, tzinfo=UTC
    )
    assert next_run("collections", company_at(9, "America/Chicago"), after) == datetime(
        2026, 11, 24, 15, tzinfo=UTC
    )


@pytest.mark.parametrize("hour", range(24))
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 11, 12, tzinfo=UTC)),
        (datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 3, 25, tzinfo=UTC)),
    ],
    ids=["dst-ends", "dst-starts"],
)
def test_collections_runs_once_every_local_day_through_dst(hour, start, end):
    """Following next_run from run to run gives exactly one run on every local date."""
    company = company_at(hour)
    runs = []
    at = start
    while at < end:
        following = next_run("collections", company, at)
        assert following > at
        runs.append(following.astimezone(CHICAGO))
        at = following
    days = [r.date() for r in runs]
    assert days == [days[0] + timedelta(days=n) for n in range(len(days))]
    # At the hour itself, except where the clocks skip it (then as they jump to the next hour).
    assert all(r.hour == hour or (r.hour == hour + 1 == 3) for r in runs)


def test_next_sync_run_is_the_company_interval_later_in_utc():
    after = datetime(2026, 11, 1, 6, 50, tzinfo=UTC)  # 01:50 CDT, across the DST change
    got = next_run("sync", company_at(9, interval=25), after)
    assert got == after + timedelta(minutes=25)
    assert got.tzinfo is UTC


# 3. A failing company is recorded and does not stop the others.
def test_a_failing_job_is_recorded_and_does_not_stop_another_company(
    rt, clock, demo_company, caplog
):
    broken = add_demo_company(rt, "broken")
    rt.demo_ledger("tenant-broken").path.unlink()  # its sync now raises
    with transaction(rt.sessions) as s:
        for job in ("sync", "collections"):
            # The broken company's jobs come first in the queue.
            job_row(s, broken.id, job).next_run_at = clock.now() - timedelta(hours=1)

    with caplog.at_level(logging.ERROR, logger="arbridge.worker"):
        assert tick(rt, "worker-a") == 4

    with rt.sessions() as s:
        failed = job_row(s, broken.id, "sync")
        assert failed.runs == 1
        assert failed.last_error is not None
        assert failed.last_error.startswith("NotFound: there is no demo ledger")
        assert failed.next_run_at == clock.now() + timedelta(minutes=15)  # not retried at once
        conn = s.scalar(select(Connection).where(Connection.company_id == broken.id))
        assert "no demo ledger" in (conn.last_sync_error or "")
        assert "sync.failed" in activity_kinds(s, broken.id)
        # Its collections job and the other company's jobs all ran, without error.
        for company_id, job in [
            (broken.id, "collections"),
            (demo_company.id, "sync"),
            (demo_company.id, "collections"),
        ]:
            row = job_row(s, company_id, job)
            assert (row.runs, row.last_error) == (1, None), (company_id, job)
        assert "collections.daily" in activity_kinds(s, demo_company.id)
        assert "sync.failed" not in activity_kinds(s, demo_company.id)

    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    said = failures[0].getMessage()
    assert said.startswith("sync job for company broken failed: there is no demo ledger")
    assert failures[0].exc_info is None  # an expected failure, said in one line: no traceback

    assert tick(rt, "worker-a") == 0  # the failure does not make the job due again

    # Once the ledger is back, the next run succeeds and clears the error.
    generate_demo_ledger(
        rt.demo_ledger("tenant-broken"), company_today(broken, clock), customers=5, invoices=20
    )
    clock.advance(timedelta(minutes=15))
    assert claim_and_run(rt, "sync", "worker-a") is True
    assert claim_and_run(rt, "sync", "worker-a") is True
    with rt.sessions() as s:
        row = job_row(s, broken.id, "sync")
        assert (row.runs, row.last_error) == (2, None)
        conn = s.scalar(select(Connection).where(Connection.company_id == broken.id))
        assert conn.last_sync_error is None
        assert (
            s.scalar(
                select(func.count()).select_from(Invoice).where(Invoice.company_id == broken.id)
            )
            == 20
        )


# 4. Workers side by side, on PostgreSQL.
WORKER_SCRIPT = """
import sys, time
from pathlib import Path
from arbridge.config import Settings
from arbridge.runtime import Runtime
from arbridge.worker import tick

rt = Runtime.open(Settings.from_env(dotenv=False))
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("the test never said go")
    time.sleep(0.005)
print(tick(rt))
rt.close()
"""


def wait_for(paths: list[Path], procs: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"worker exited early ({proc.returncode}): {out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail("the workers did not start")
        time.sleep(0.01)


@needs_postgres
def test_two_worker_processes_run_every_job_exactly_once(rt, settings, tmp_path):
    companies = [add_demo_company(rt, f"co-{n}", customers=40, invoices=500) for n in range(6)]
    # The workers run on the system clock, not the test's fixed one: make every job due now.
    due = SystemClock().now() - timedelta(hours=1)
    with transaction(rt.sessions) as s:
        for row in s.scalars(select(CompanyJob)):
            row.next_run_at = due

    env = env_for_subprocess(settings)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, str(r), str(go)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    try:
        wait_for(ready, procs)
        go.touch()
        results = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    ran = [int(out.strip()) for out, _err in results]
    assert sum(ran) == 12, ran

    names = {f"{socket.gethostname()}:{proc.pid}:" for proc in procs}
    with rt.sessions() as s:
        jobs = s.scalars(select(CompanyJob).order_by(CompanyJob.id)).all()
        assert len(jobs) == 12
        for job in jobs:
            assert job.runs == 1, (job.company_id, job.job, job.runs)
            assert job.last_error is None, job.last_error
            assert job.next_run_at > due
        workers = {job.last_worker.rsplit(":", 1)[0] + ":" for job in jobs if job.last_worker}
        assert workers == names, (workers, names)  # both workers took jobs, and only they did
        for company in companies:
            kinds = activity_kinds(s, company.id)
            assert kinds.count("collections.daily") == 1, (company.slug, kinds)
            assert "sync.failed" not in kinds
            count = s.scalar(
                select(func.count()).select_from(Invoice).where(Invoice.company_id == company.id)
            )
            assert count == 500
            conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
            assert conn.last_sync_error is None
        assert s.scalar(select(func.count()).select_from(SyncError)) == 0

    # Each company's sync ran once, so no two syncs of one company overlapped; and the two
    # workers did run side by side, each on its own company, rather than one after the other.
    syncs = [job for job in jobs if job.job == "sync"]
    assert len({job.company_id for job in syncs}) == 6
    by_worker: dict[str, list[CompanyJob]] = {}
    for job in jobs:
        by_worker.setdefault(job.last_worker.split(":")[1], []).append(job)
    first, second = by_worker.values()
    assert any(
        a.last_started_at < b.last_finished_at and b.last_started_at < a.last_finished_at
        for a in first
        for b in second
    ), "the two workers never ran jobs at the same time"


@needs_postgres
def test_a_job_row_locked_elsewhere_is_skipped_not_waited_for(rt, settings, clock, demo_company):
    other = add_demo_company(rt, "other", ledger=False)
    with transaction(rt.sessions) as s:
        # The demo company's sync is first in the queue, the other company's second.
        job_row(s, other.id, "sync").next_run_at = clock.now() - timedelta(minutes=1)
        job_row(s, demo_company.id, "sync").next_run_at = clock.now() - timedelta(minutes=2)
        # The other company has no ledger file: make its sync a no-op.
        s.scalar(
            select(Connection).where(Connection.company_id == other.id)
        ).status = "disconnected"
    # If the claim waited for the lock instead of skipping the row, fail rather than hang.
    url = settings.database_url + "%20-clock_timeout%3D5s"
    claimer = Runtime.open(settings.with_(database_url=url), clock)
    holder = rt.sessions()
    try:
        with holder.begin():
            locked = holder.scalar(
                select(CompanyJob)
                .where(CompanyJob.company_id == demo_company.id, CompanyJob.job == "sync")
                .with_for_update()
            )
            assert locked is not None
            assert claim_and_run(claimer, "sync", "claimer") is True  # took the other company's
            assert claim_and_run(claimer, "sync", "claimer") is False  # only the locked one left
            with rt.sessions() as s:
                assert job_row(s, other.id, "sync").runs == 1
                assert job_row(s, demo_company.id, "sync").runs == 0
        # The holder's transaction is over: the row can be claimed now.
        assert claim_and_run(claimer, "sync", "claimer") is True
    finally:
        holder.close()
        claimer.close()
    with rt.sessions() as s:
        row = job_row(s, demo_company.id, "sync")
        assert (row.runs, row.last_worker, row.last_error) == (1, "claimer", None)


def test_moving_the_daily_hour_later_never_runs_twice_the_same_day(rt, clock, demo_company):
    # The clock reads 09:00 in Chicago: the daily run is due and runs now.
    assert claim_and_run(rt, "collections")
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.collections_hour = 15
        reschedule(s, company, clock.now())
        assert job_row(s, company.id, "collections").next_run_at == chicago(2026, 11, 25, 15)
        company.collections_hour = 7  # earlier: tomorrow 07:00 anyway
        reschedule(s, company, clock.now())
        assert job_row(s, company.id, "collections").next_run_at == chicago(2026, 11, 25, 7)


def test_moving_the_daily_hour_when_today_has_not_run_yet(rt, clock, demo_company):
    with transaction(rt.sessions) as s:
        row = job_row(s, demo_company.id, "collections")
        row.last_finished_at = clock.now() - timedelta(days=1)
        company = s.get(Company, demo_company.id)
        company.collections_hour = 17
        reschedule(s, company, clock.now())
        assert row.next_run_at == chicago(2026, 11, 24, 17)


def test_a_new_sync_interval_counts_from_the_last_sync(rt, clock, demo_company):
    assert claim_and_run(rt, "sync")
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.sync_interval_minutes = 60
        reschedule(s, company, clock.now())
        row = job_row(s, company.id, "sync")
        assert row.next_run_at == row.last_finished_at + timedelta(minutes=60)


def test_a_tick_outlasting_the_interval_warned_on_the_console(rt, caplog):
    """One tick at a time is by design (a long drain skips the next tick); APScheduler's
    WARNING about each skipped tick reached the demo's console."""
    import threading

    from apscheduler.triggers.interval import IntervalTrigger

    from arbridge.worker import build_scheduler

    scheduler = build_scheduler(rt)
    scheduler.remove_job("arbridge-tick")  # a job that outlasts its interval stands in for it
    ran = threading.Event()

    def long_tick() -> None:
        time.sleep(1.0)
        ran.set()

    scheduler.add_job(long_tick, IntervalTrigger(seconds=0.2), max_instances=1)
    caplog.set_level(logging.INFO)
    scheduler.start()
    try:
        assert ran.wait(5)
        time.sleep(0.3)
    finally:
        scheduler.shutdown(wait=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    # Nor its own chatter ("Added job", "Scheduler started"), which never reached it before.
    assert not [r for r in caplog.records if r.name == "arbridge.worker.scheduler"]
