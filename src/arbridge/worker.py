"""The worker: APScheduler ticks, and each tick claims the company jobs that are due.

A job row (company, job) is claimed with SELECT ... FOR UPDATE SKIP LOCKED and stays locked while
the job runs, so on PostgreSQL any number of workers can run side by side and no two ever run
the same company's job at once; the next run time is written before the lock is released, so a
second worker never repeats a run either. SQLite has no row locks: run a single worker there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from arbridge.clock import SystemClock
from arbridge.collections.kpis import DEFAULT_PERIOD_DAYS
from arbridge.connectors.stripe.simulated import simulation_allowed
from arbridge.errors import ArbridgeError, RateLimited
from arbridge.providers import refetch_pending, sync_deferral
from arbridge.runtime import Runtime
from arbridge.services.bootstrap import outbox_handlers, webhook_handlers
from arbridge.services.delivery.send import send_new_invoices
from arbridge.services.fees.assess import assess_late_fees
from arbridge.services.insight.limits import tell_limits
from arbridge.services.payments.plan_runs import reconcile_company_plans, run_due_plans
from arbridge.services.payments.simulated import settle_simulated_payments
from arbridge.services.reminders.run import RunResult, run_reminders, run_reminders_of
from arbridge.sync.db import transaction
from arbridge.sync.insight_cache import INSIGHT_JOB, snapshot
from arbridge.sync.model import Company, CompanyJob
from arbridge.sync.outbox import deliver
from arbridge.sync.runner import sync_connection
from arbridge.sync.schedule import next_run
from arbridge.sync.store import aging_report, company_today, ledger_connection, log_activity
from arbridge.webhooks.dispatch import process_pending
from arbridge.wording import counted

log = logging.getLogger(__name__)

JobFunc = Callable[[Runtime, Company], None]
# Daily collections jobs a worker claims and runs together (their reminders in one run): a
# batch's rows stay locked until all of them are done, so not too many.
COLLECTIONS_BATCH = 200


def run_sync(rt: Runtime, company: Company) -> None:
    with rt.sessions() as session:
        conn = ledger_connection(session, company.id)
    if conn is None or conn.status != "active":
        return
    wait = sync_deferral(rt, conn)
    if wait is not None:
        raise RateLimited(
            f"little of {conn.provider}'s daily call allowance is left: the sync waits for the "
            "next day's, webhooks and write-backs go first",
            wait,
        )
    result = sync_connection(rt.sessions, conn.id, rt.connector_for(conn), rt.clock)
    # New invoices the sync brought in go to their customers the day they appear, when the
    # owner chose so (each once: its outbox key is the invoice's).
    send_new_invoices(rt, company)
    # Today's insight for the dashboard, computed here when the sync changed what it reads (a
    # no-op otherwise), so the owner's first view after a sync does not wait for it.
    with rt.sessions() as session:
        fresh = session.get(Company, company.id)
        if fresh is not None:
            today = company_today(fresh, rt.clock)
            snapshot(session, fresh, today, DEFAULT_PERIOD_DAYS, True, rt.clock.now())
    if result.errors:
        with transaction(rt.sessions) as session:
            log_activity(
                session,
                rt.clock,
                company.id,
                "sync.errors",
                f"Sync skipped {counted(result.errors, 'ledger record')} it could not read",
            )


def run_collections(rt: Runtime, company: Company) -> None:
    """The daily collections run: the day's aging snapshot for the activity log, then reminders."""
    before_reminders(rt, company)
    # Reminders: decide and queue today's messages; the outbox sends them.
    run_reminders(rt, company)
    after_reminders(rt, company)


def before_reminders(rt: Runtime, company: Company) -> None:
    """The daily run's first part: the aging snapshot, and plans fitted to what is owed now."""
    with transaction(rt.sessions) as session:
        aging = aging_report(session, company, company_today(company, rt.clock))
        log_activity(
            session,
            rt.clock,
            company.id,
            "collections.daily",
            f"Daily run: {counted(aging.overdue_invoices, 'overdue invoice')}, "
            f"{aging.overdue_balance.format()} overdue of {aging.open_balance.format()} open",
            overdue_balance=str(aging.overdue_balance.amount),
        )
    # Installment plans fit what their invoices owe now (a payment made elsewhere, a void).
    reconcile_company_plans(rt, company.id)


def after_reminders(rt: Runtime, company: Company) -> None:
    """The daily run's last part: late fees and credit limits."""
    # Late fees and interest, after the reminders so a fault here never holds them: claim each
    # charge once and queue its ledger invoice.
    assess_late_fees(rt, company)
    # Customers over (or near) their credit limit: one email to the owner a day.
    tell_limits(rt, company)


def run_insight(rt: Runtime, company: Company) -> None:
    """Today's insight for the pages, queued by a page that found it stale for a company too big
    to compute it in the request (sync.insight_cache.shown); a no-op when it is current already
    (another run computed it) and has every row the pages read."""
    with rt.sessions() as session:
        fresh = session.get(Company, company.id)
        if fresh is not None:
            today = company_today(fresh, rt.clock)
            now = rt.clock.now()
            snapshot(session, fresh, today, DEFAULT_PERIOD_DAYS, True, now, details=True)


JOBS: dict[str, JobFunc] = {
    "sync": run_sync,
    "collections": run_collections,
    INSIGHT_JOB: run_insight,
}


def default_worker_name() -> str:
    name = f"{os.getpid()}:{threading.get_ident()}"
    return f"{socket.gethostname()[: 99 - len(name)]}:{name}"


def _due_jobs(job: str, now: datetime, limit: int) -> Select[tuple[CompanyJob]]:
    """Due, unpaused (company, job) rows, oldest first, none another worker holds."""
    return (
        select(CompanyJob)
        .where(CompanyJob.job == job, CompanyJob.next_run_at <= now, CompanyJob.paused.is_(False))
        .order_by(CompanyJob.next_run_at, CompanyJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def _attempt(rt: Runtime, job: str, company: Company, step: Callable[[], object]) -> Outcome:
    """Run one company's job (or part of it); what to record on its row: the error, if any,
    and when to retry when the provider asked for a pause."""
    try:
        step()
    except RateLimited as e:
        # The provider asked for a pause: run again then, not at the usual time, and never
        # sleep it out here while this row (and its company's job) stays locked.
        retry_at = rt.clock.now() + timedelta(seconds=e.retry_after)
        log.warning("%s job for company %s throttled until %s: %s", job, company.slug, retry_at, e)
        return Outcome(f"{type(e).__name__}: {e}"[:2000], retry_at)
    except ArbridgeError as e:
        # Expected failures (a ledger that cannot be read, a grant gone) say what is wrong in
        # one sentence, already recorded for the owner: a log line, not a traceback.
        log.error("%s job for company %s failed: %s", job, company.slug, e)
        return Outcome(f"{type(e).__name__}: {e}"[:2000])
    except Exception as e:  # a failing company must not stop the others
        log.exception("%s job for company %s failed", job, company.slug)
        return Outcome(f"{type(e).__name__}: {e}"[:2000])
    return Outcome()


@dataclass(frozen=True)
class Outcome:
    error: str | None = None
    retry_at: datetime | None = None


def _finish(rt: Runtime, row: CompanyJob, job: str, company: Company, outcome: Outcome) -> None:
    row.last_error = outcome.error
    row.runs += 1
    row.last_finished_at = rt.clock.now()
    row.next_run_at = outcome.retry_at or next_run(job, company, rt.clock.now())


def _claimed_companies(
    session: Session, rt: Runtime, rows: Sequence[CompanyJob], name: str
) -> list[Company]:
    """The companies of claimed job rows (detached, in the rows' order), the rows marked taken."""
    found = {
        c.id: c
        for c in session.scalars(
            select(Company).where(Company.id.in_([row.company_id for row in rows]))
        )
    }
    for row in rows:
        row.last_started_at, row.last_worker = rt.clock.now(), name
    for company in found.values():
        session.expunge(company)
    return [found[row.company_id] for row in rows]


def claim_and_run(rt: Runtime, job: str, worker_name: str | None = None) -> bool:
    """Run one due (company, job), if any is due and unclaimed; return whether one ran."""
    name = worker_name or default_worker_name()
    with transaction(rt.sessions) as session:
        row = session.scalar(_due_jobs(job, rt.clock.now(), 1))
        if row is None:
            return False
        [company] = _claimed_companies(session, rt, [row], name)
        _finish(rt, row, job, company, _attempt(rt, job, company, lambda: JOBS[job](rt, company)))
    return True


def claim_and_run_collections(rt: Runtime, worker_name: str | None = None, limit: int = 200) -> int:
    """Run up to `limit` due daily collections jobs together; return how many ran.

    The rows are claimed as `claim_and_run` claims one (held while the jobs run, so another
    worker skips them) and each company's job does what `run_collections` does, in its order;
    only the reminders run for all of them at once (`run_reminders_of`: the decisions in one
    pass, the claims and outbox rows a table at a time). A company whose job fails is recorded
    on its own row, as alone: a failure before its reminders skips them, and one in them skips
    what follows."""
    name = worker_name or default_worker_name()
    with transaction(rt.sessions) as session:
        rows = session.scalars(_due_jobs("collections", rt.clock.now(), limit)).all()
        if not rows:
            return 0
        companies = _claimed_companies(session, rt, rows, name)
        outcomes = {
            c.id: _attempt(rt, "collections", c, partial(before_reminders, rt, c))
            for c in companies
        }
        ready = [c for c in companies if outcomes[c.id].error is None]
        reminded = run_reminders_of(rt, ready)
        for company in ready:
            outcome = _attempt(
                rt, "collections", company, partial(_after, rt, company, reminded[company.id])
            )
            outcomes[company.id] = outcome
        for row, company in zip(rows, companies, strict=True):
            _finish(rt, row, "collections", company, outcomes[company.id])
    return len(rows)


def _after(rt: Runtime, company: Company, reminded: RunResult | Exception) -> None:
    """The rest of a company's collections job once its reminders ran (or raised)."""
    if isinstance(reminded, Exception):
        raise reminded
    after_reminders(rt, company)


def drain(rt: Runtime) -> tuple[int, int]:
    """Process stored webhook events, then carry out due side effects; returns both counts."""
    if simulation_allowed(rt.settings):  # a demo install: its simulated bank payments clear
        settle_simulated_payments(rt)
    events = refetch_pending(rt)
    events += process_pending(rt.sessions, rt.clock, webhook_handlers(rt))
    # Installment plans: charges and notices that have come due (one query when none has).
    run_due_plans(rt)
    sent = deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    return events, sent


def tick(rt: Runtime, worker_name: str | None = None, limit: int = 1000) -> int:
    """One scheduler tick: due company jobs, then the webhook inbox and the outbox.

    Returns how many company jobs ran."""
    ran = 0
    for job in JOBS:
        if job == "collections":
            # Many companies' daily runs together: their reminders are one run (issue 14).
            while ran < limit and (
                batch := claim_and_run_collections(
                    rt, worker_name, min(COLLECTIONS_BATCH, limit - ran)
                )
            ):
                ran += batch
            continue
        while ran < limit and claim_and_run(rt, job, worker_name):
            ran += 1
    drain(rt)
    return ran


class _OverlapSkipped(logging.Filter):
    """A tick still running when the next one is due makes APScheduler skip the next (one tick
    at a time, `max_instances=1`) and warn about it; by design here (a drain of many messages
    outlasts the interval), and the warning alarmed whoever watched the demo's console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)


# APScheduler's own lines ("Added job", "Scheduler started") stay out of the console, as under
# its own logger name; its warnings and errors (a tick that raised) do not.
SCHEDULER_LOG = logging.getLogger("arbridge.worker.scheduler")
SCHEDULER_LOG.setLevel(logging.WARNING)
SCHEDULER_LOG.addFilter(_OverlapSkipped())


def build_scheduler(
    rt: Runtime, scheduler: BackgroundScheduler | None = None
) -> BackgroundScheduler:
    scheduler = scheduler or BackgroundScheduler(timezone="UTC", logger=SCHEDULER_LOG)
    scheduler.add_job(
        tick,
        IntervalTrigger(seconds=rt.settings.worker_tick_seconds),
        args=[rt],
        id="arbridge-tick",
        max_instances=1,
        coalesce=True,
        next_run_time=SystemClock().now(),  # the scheduler itself runs on wall time
    )
    return scheduler
