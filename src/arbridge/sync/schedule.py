"""When each company job runs next: pure date arithmetic on the company's own wall clock, shared
by the worker (after a run) and the settings page (after the owner changes the hour, the timezone
or the sync interval), so the web process never loads the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import local_date
from arbridge.sync.insight_cache import IDLE, INSIGHT_JOB
from arbridge.sync.model import Company, CompanyJob


def next_run(job: str, company: Company, after: datetime) -> datetime:
    """When the job runs next, as an aware UTC datetime.

    Collections run daily at collections_hour:00 on the company's own wall clock. This is not
    APScheduler's CronTrigger, which around daylight-saving changes skips a day (hour 0 on the
    day after clocks go forward) and runs twice (hour 1 on the night clocks go back).
    """
    if job == "collections":
        zone = ZoneInfo(company.timezone)
        wall_after = after.astimezone(zone).replace(tzinfo=None)
        day = wall_after.date()
        while True:
            # fold=0: the first of a repeated hour; an hour the clocks skip maps to the moment
            # they jump (02:00 CST is 03:00 CDT), so that day's run still happens, once.
            wall = datetime.combine(day, time(company.collections_hour))
            if wall > wall_after:
                return wall.replace(tzinfo=zone).astimezone(UTC)
            day += timedelta(days=1)
    if job == INSIGHT_JOB:  # runs when a page queues it again
        return (after + IDLE).astimezone(UTC)
    # Syncs every sync_interval_minutes after the last one finished.
    return (after + timedelta(minutes=company.sync_interval_minutes)).astimezone(UTC)


def reschedule(session: Session, company: Company, now: datetime) -> None:
    """After the owner changes the timezone, the daily hour or the sync interval: move the jobs."""
    for row in session.scalars(select(CompanyJob).where(CompanyJob.company_id == company.id)):
        if row.last_finished_at is None or row.job == INSIGHT_JOB:
            continue  # never run yet: it is due already; the insight's runs when queued
        if row.job == "sync":
            row.next_run_at = next_run("sync", company, row.last_finished_at)
            continue
        upcoming = next_run(row.job, company, now)
        # At most one daily run per local day, even when the hour moves later on the same day.
        if local_date(upcoming, company.timezone) == local_date(
            row.last_finished_at, company.timezone
        ):
            upcoming = next_run(row.job, company, upcoming)
        row.next_run_at = upcoming
