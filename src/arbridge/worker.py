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
from collections.abc import Callable
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

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
from arbridge.services.reminders.run import run_reminders
from arbridge.sync.db import transaction
from arbridge.sync.insight_cache import INSIGHT_JOB, snapshot
from arbridge.sync.model import Company, CompanyJob
from arbridge.sync.outbox import deliver
from arbridge.sync.runner import sync_connection
from arbridge.sync.schedule import next_run
from arbridge.sync.store import aging_report, company_today, ledger_connection, log_activity
from arbridge.webhooks.dispatch import process_pending

log = logging.getLogger(__name__)

JobFunc = Callable[[Runtime, Company], None]


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
                f"Sync skipped {result.errors} ledger record(s) it could not read",
            )


def run_collections(rt: Runtime, company: Company) -> None:
    """The daily collections run: the day's aging snapshot for the activity log, then reminders."""
    with transaction(rt.sessions) as session:
        aging = aging_report(session, company, company_today(company, rt.clock))
        log_activity(
            session,
            rt.clock,
            company.id,
            "collections.daily",
            f"Daily run: {aging.overdue_invoices} overdue invoice(s), "
            f"{aging.overdue_balance.format()} overdue of {aging.open_balance.format()} open",
            overdue_balance=str(aging.overdue_balance.amount),
        )
    # Installment plans fit what their invoices owe now (a payment made elsewhere, a void).
    reconcile_company_plans(rt, company.id)
    # Reminders: decide and queue today's messages; the outbox sends them.
    run_reminders(rt, company)
    # Late fees and interest, after the reminders so a fault here never holds them: claim each
    # charge once and queue its ledger invoice.
    assess_late_fees(rt, company)
    # Customers over (or near) their credit limit: one email to the owner a day.
    tell_limits(rt, company)


def run_insight(rt: Runtime, company: Company) -> None:
    """Today's insight for the pages, queued by a page that found it stale for a company too big
    to compute it in the request (sync.insight_cache.shown); a no-op when it is current already
    (another run computed it)."""
    with rt.sessions() as session:
        fresh = session.get(Company, company.id)
        if fresh is not None:
            today = company_today(fresh, rt.clock)
            snapshot(session, fresh, today, DEFAULT_PERIOD_DAYS, True, rt.clock.now())


JOBS: dict[str, JobFunc] = {
    "sync": run_sync,
    "collections": run_collections,
    INSIGHT_JOB: run_insight,
}


def default_worker_name() -> str:
    name = f"{os.getpid()}:{threading.get_ident()}"
    return f"{socket.gethostname()[: 99 - len(name)]}:{name}"


def claim_and_run(rt: Runtime, job: str, worker_name: str | None = None) -> bool:
    """Run one due (company, job), if any is due and unclaimed; return whether one ran."""
    name = worker_name or default_worker_name()
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        row = session.scalar(
            select(CompanyJob)
            .where(
                CompanyJob.job == job, CompanyJob.next_run_at <= now, CompanyJob.paused.is_(False)
            )
            .order_by(CompanyJob.next_run_at, CompanyJob.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if row is None:
            return False
        company = session.get(Company, row.company_id)
        assert company is not None
        session.expunge(company)
        row.last_started_at, row.last_worker = rt.clock.now(), name
        retry_at = None
        try:
            JOBS[job](rt, company)
            row.last_error = None
        except RateLimited as e:
            # The provider asked for a pause: run again then, not at the usual time, and never
            # sleep it out here while this row (and its company's job) stays locked.
            retry_at = rt.clock.now() + timedelta(seconds=e.retry_after)
            log.warning(
                "%s job for company %s throttled until %s: %s", job, company.slug, retry_at, e
            )
            row.last_error = f"{type(e).__name__}: {e}"[:2000]
        except ArbridgeError as e:
            # Expected failures (a ledger that cannot be read, a grant gone) say what is wrong in
            # one sentence, already recorded for the owner: a log line, not a traceback.
            log.error("%s job for company %s failed: %s", job, company.slug, e)
            row.last_error = f"{type(e).__name__}: {e}"[:2000]
        except Exception as e:  # a failing company must not stop the others
            log.exception("%s job for company %s failed", job, company.slug)
            row.last_error = f"{type(e).__name__}: {e}"[:2000]
        row.runs += 1
        row.last_finished_at = rt.clock.now()
        row.next_run_at = retry_at or next_run(job, company, rt.clock.now())
    return True


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
        while ran < limit and claim_and_run(rt, job, worker_name):
            ran += 1
    drain(rt)
    return ran


def build_scheduler(
    rt: Runtime, scheduler: BackgroundScheduler | None = None
) -> BackgroundScheduler:
    scheduler = scheduler or BackgroundScheduler(timezone="UTC")
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
