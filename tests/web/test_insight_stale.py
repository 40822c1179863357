"""The dashboard never computes a big company's insight inside the request: a stale one is shown
with the time it was computed ("Figures as of 10:42 CST, updating…") and the worker's insight job
computes the current one, once; a small company's is computed at once, as before.

"Big" is `Settings.insight_inline_invoices` (ARBRIDGE_INSIGHT_INLINE_INVOICES), set here to
0 so the small test ledger counts as big."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from arbridge.collections.kpis import DEFAULT_PERIOD_DAYS
from arbridge.sync.db import transaction
from arbridge.sync.insight_cache import (
    INSIGHT_JOB,
    compute,
    decode,
    decode_details,
    encode,
    encode_details,
    version,
)
from arbridge.sync.insight_store import insight
from arbridge.sync.model import Company, CompanyJob, Customer, InsightSnapshot
from arbridge.worker import claim_and_run
from tests.integration.test_insight import T, ledger
from tests.web.conftest import sign_in

URL = "/c/insight/"
INSIGHT = "/c/insight/insight"


@pytest.fixture
def big(request):
    """Whether this test's company counts as big (its insight left to the worker)."""
    return getattr(request, "param", True)


@pytest.fixture
def settings(settings, big):
    return settings.with_(insight_inline_invoices=0) if big else settings


def snapshot_row(rt, company_id: int) -> tuple[int, object] | None:
    with rt.sessions() as s:
        row = s.get(InsightSnapshot, (company_id, f"{DEFAULT_PERIOD_DAYS}:live"))
        return None if row is None else (row.version, row.payload["computed_at"])


def insight_job(rt, company_id: int) -> CompanyJob | None:
    with rt.sessions() as s:
        return s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == company_id, CompanyJob.job == INSIGHT_JOB
            )
        )


def limit_c1(rt, books, minor: int) -> None:
    """C1 owes 450.00: a limit of 100.00 puts them over it."""
    with transaction(rt.sessions) as s:
        s.get(Customer, books.customer("C1").id).credit_limit_minor = minor


def current_version(rt, company_id: int) -> int:
    with rt.sessions() as s:
        return version(s, company_id)


def test_a_big_company_without_a_snapshot_shows_the_dashboard_and_queues_the_insight(rt, client):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    page = client.get(URL).get_data(as_text=True)
    assert "Figures are being computed" in page
    assert 'id="open-balance"' in page  # the rest of the dashboard is there
    assert 'id="chart-trends"' not in page and 'id="charts-pending"' in page
    assert snapshot_row(rt, books.company.id) is None  # nothing computed in the request
    job = insight_job(rt, books.company.id)
    assert job is not None and job.next_run_at <= rt.clock.now()


def test_a_stale_snapshot_is_shown_with_its_time_while_the_worker_computes_it_once(rt, client):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    client.get(URL)  # queues the first computation
    rt.clock.advance(timedelta(hours=1, minutes=42))  # 16:42 UTC, 10:42 in Chicago
    assert claim_and_run(rt, INSIGHT_JOB)
    first = snapshot_row(rt, books.company.id)
    assert first is not None and first[0] == current_version(rt, books.company.id)
    page = client.get(URL).get_data(as_text=True)
    assert "updating" not in page and "being computed" not in page
    assert 'data-kind="over_limit"' not in page

    limit_c1(rt, books, 100_00)  # the owner's edit moves the version
    rt.clock.advance(timedelta(minutes=5))
    page = client.get(URL).get_data(as_text=True)
    assert "Figures as of 10:42 CST, updating…" in page
    assert 'data-kind="over_limit"' not in page  # the last snapshot, as it was
    assert snapshot_row(rt, books.company.id) == first  # not computed in the request
    client.get(URL)  # a second view queues nothing more
    with rt.sessions() as s:
        jobs = s.scalars(
            select(CompanyJob).where(
                CompanyJob.company_id == books.company.id, CompanyJob.job == INSIGHT_JOB
            )
        ).all()
    assert len(jobs) == 1 and jobs[0].runs == 1

    # The worker's tick computes it, once: the next ticks find nothing due.
    assert claim_and_run(rt, INSIGHT_JOB)
    assert not claim_and_run(rt, INSIGHT_JOB)
    second = snapshot_row(rt, books.company.id)
    assert second is not None and second[0] == current_version(rt, books.company.id)
    assert insight_job(rt, books.company.id).runs == 2
    page = client.get(URL).get_data(as_text=True)
    assert "updating" not in page
    assert 'data-kind="over_limit"' in page
    assert not claim_and_run(rt, INSIGHT_JOB)  # a current snapshot queues nothing


def test_a_second_run_of_the_job_on_the_same_version_computes_nothing(rt, client):
    """Two workers (or ticks) that both run the job: the second finds it current."""
    from arbridge.worker import run_insight

    books = ledger().build(rt)
    run_insight(rt, books.company)
    first = snapshot_row(rt, books.company.id)
    rt.clock.advance(timedelta(minutes=1))
    run_insight(rt, books.company)
    assert snapshot_row(rt, books.company.id) == first


@pytest.mark.parametrize("big", [False], indirect=True)
def test_a_small_company_is_computed_in_the_request(rt, client):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    client.get(URL)
    limit_c1(rt, books, 100_00)
    page = client.get(URL).get_data(as_text=True)
    assert "updating" not in page and "being computed" not in page
    assert 'data-kind="over_limit"' in page
    found = snapshot_row(rt, books.company.id)
    assert found is not None and found[0] == current_version(rt, books.company.id)
    assert insight_job(rt, books.company.id) is None


def test_the_insight_page_shows_the_stale_snapshot_and_computes_nothing(rt, client):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    page = client.get(INSIGHT).get_data(as_text=True)
    assert "Figures are being computed" in page and 'id="forecast"' not in page
    rt.clock.advance(timedelta(hours=1, minutes=42))
    assert claim_and_run(rt, INSIGHT_JOB)
    page = client.get(INSIGHT).get_data(as_text=True)
    assert "updating" not in page and 'id="forecast"' in page
    assert 'data-kind="over_limit"' not in page

    limit_c1(rt, books, 100_00)
    first = snapshot_row(rt, books.company.id)
    page = client.get(INSIGHT).get_data(as_text=True)
    assert "Figures as of 10:42 CST, updating…" in page
    assert 'data-kind="over_limit"' not in page and 'id="forecast"' in page
    assert snapshot_row(rt, books.company.id) == first
    assert claim_and_run(rt, INSIGHT_JOB)
    page = client.get(INSIGHT).get_data(as_text=True)
    assert "updating" not in page and 'data-kind="over_limit"' in page


def test_the_insight_pages_details_read_back_exactly_as_computed(rt):
    books = ledger().build(rt)
    with rt.sessions() as s:
        company = s.get(Company, books.company.id)
        found = compute(s, company, T, DEFAULT_PERIOD_DAYS, True, rt.clock.now())
        direct = insight(s, company, T, found.kpi, live_plans=True)
    assert found.details is not None and found.details.proposals is not None
    back = decode_details(encode_details(found.details))
    assert back == found.details
    assert back.insight(decode(encode(found)), direct.policy) == direct
    assert direct.forecast.exposure and direct.customers  # something to compare
