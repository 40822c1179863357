"""The insight stored per change of the data behind it (sync.insight_cache): read back exactly
as computed, computed once while nothing changes, and computed afresh after any change, through
a sync or through an owner's edit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete, event, select

from arbridge.sync.db import transaction
from arbridge.sync.insight_cache import bump, report_data
from arbridge.sync.insight_store import insight, insight_dict, trends_list
from arbridge.sync.model import Customer, InsightSnapshot, Invoice
from arbridge.sync.store import aging_report, get_company, kpi_report, report_dict
from arbridge.sync.trends_store import kpi_trends
from arbridge.worker import run_sync
from tests.integration.test_insight import T, ledger


def computed(rt, slug: str = "insight") -> dict:
    """The report as computed from scratch, every figure from its queries (no snapshot)."""
    with rt.sessions() as s:
        company = get_company(s, slug)
        kpi = kpi_report(s, company, T, 90)
        data = report_dict(company, aging_report(s, company, T), kpi)
        data.update(insight_dict(insight(s, company, T, kpi, live_plans=True)))
        data["trends"] = trends_list(kpi_trends(s, company, T))
        return data


def reported(rt, slug: str = "insight") -> tuple[dict, int]:
    """The report as `arbridge report` gives it, and how many SQL statements that took."""
    count = [0]

    def counted(*_args) -> None:
        count[0] += 1

    event.listen(rt.engine, "before_cursor_execute", counted)
    try:
        with rt.sessions() as s:
            return report_data(s, get_company(s, slug), T, 90, True, rt.clock.now()), count[0]
    finally:
        event.remove(rt.engine, "before_cursor_execute", counted)


def test_a_stored_insight_reads_back_exactly_as_computed(rt):
    ledger().build(rt)
    first, _ = reported(rt)
    again, _ = reported(rt)
    assert first == again == computed(rt)
    assert first["forecast"]["weeks"][0]["amount"] != "0"  # a ledger with something to show


def test_an_unchanged_ledger_is_not_computed_again(rt):
    ledger().build(rt)
    _, first = reported(rt)
    _, again = reported(rt)
    # Again: the version, the snapshot and the aging (2 queries), nothing of the insight.
    assert again <= 5 < first


def test_a_sync_that_changes_the_ledger_is_shown_at_once(rt):
    books = ledger().build(rt)
    before, _ = reported(rt)
    books.ledger.void_invoice(books.invoice("O1").source_id)  # 200.00 open, due T+10
    books.sync()
    after, _ = reported(rt)
    assert after == computed(rt)
    assert Decimal(after["open_balance"]) == Decimal(before["open_balance"]) - Decimal("200.00")
    weeks = [Decimal(w["amount"]) for w in after["forecast"]["weeks"]]
    assert sum(weeks) + Decimal(after["forecast"]["later"]) == Decimal(after["open_balance"])


def test_a_sync_that_changes_nothing_keeps_the_stored_insight(rt):
    books = ledger().build(rt)
    reported(rt)
    books.sync()
    _, statements = reported(rt)
    assert statements <= 5


def test_an_owners_edit_is_shown_at_once(rt):
    """C1 owes 450.00 (O1 200.00, O2 250.00): a limit of 100.00 puts them over it."""
    books = ledger().build(rt)
    before, _ = reported(rt)
    assert not [f for f in before["flags"] if f["kind"] == "over_limit"]
    with transaction(rt.sessions) as s:
        s.get(Customer, books.customer("C1").id).credit_limit_minor = 100_00
    after, _ = reported(rt)
    assert after == computed(rt)
    assert [(f["customer_id"], f["kind"]) for f in after["flags"] if f["kind"] == "over_limit"] == [
        ("C1", "over_limit")
    ]


def test_a_snapshot_of_an_older_version_is_not_shown(rt):
    """A change that landed while the snapshot was being computed leaves it on the older
    version: it is computed again, not shown."""
    books = ledger().build(rt)
    reported(rt)
    with transaction(rt.sessions) as s:
        bump(s, books.company.id)
    _, statements = reported(rt)
    assert statements > 5
    with rt.sessions() as s:
        kinds = s.scalars(
            select(InsightSnapshot.kind).where(InsightSnapshot.company_id == books.company.id)
        ).all()
    # The insight page's beside it, and the customers' lateness alone (the forecast week's list)
    assert sorted(kinds) == ["90:live", "90:live:lateness", "90:live:page"]


def test_the_forecast_weeks_list_decoded_every_customers_details_for_their_lateness(rt):
    """Issue 14: the invoices list of a forecast week needs each customer's lateness and read
    the insight page's details for it (every customer's terms and limits: a third of that page
    at 20,000 customers). The lateness is kept in a row of its own and read alone: the page's
    row may be gone, the lateness is there, and the details are not decoded."""
    from arbridge.sync.insight_cache import shown

    books = ledger().build(rt)
    reported(rt)
    with rt.sessions() as s:
        company = get_company(s, "insight")
        full = shown(s, company, T, 90, rt.clock.now(), None, details=True).found
    assert full is not None and full.details is not None and full.details.lateness
    with transaction(rt.sessions) as s:
        s.execute(
            delete(InsightSnapshot).where(
                InsightSnapshot.company_id == books.company.id,
                InsightSnapshot.kind == "90:live:page",
            )
        )
    with rt.sessions() as s:
        company = get_company(s, "insight")
        # inline_invoices 0: a company too big to compute in the request, so what is stored
        # is what is shown.
        got = shown(s, company, T, 90, rt.clock.now(), 0, lateness=True)
    assert not got.stale and got.found is not None
    assert got.found.details is None
    assert got.found.lateness == full.details.lateness == full.lateness


def test_the_workers_sync_leaves_todays_insight_computed(rt):
    """The owner's first view after a sync that changed the ledger reads what the sync job
    computed, and sees the change."""
    books = ledger().build(rt)
    reported(rt)
    books.ledger.void_invoice(books.invoice("O1").source_id)
    run_sync(rt, books.company)
    after, statements = reported(rt)
    assert statements <= 5
    assert after == computed(rt)


def test_a_change_the_insight_does_not_read_keeps_it_stored(rt):
    """An invoice paused and marked payment-pending: nothing of the insight moves, nothing is
    computed again; its due date moved (read by the forecast): computed again."""
    books = ledger().build(rt)
    reported(rt)
    with transaction(rt.sessions) as s:
        row = s.get(Invoice, books.invoice("O2").id)
        row.paused, row.payment_pending = True, True
    _, statements = reported(rt)
    assert statements <= 5
    with transaction(rt.sessions) as s:
        row = s.get(Invoice, books.invoice("O2").id)
        row.due_on = row.due_on + timedelta(days=60)
    after, statements = reported(rt)
    assert statements > 5 and after == computed(rt)


def test_an_insight_stored_before_its_lateness_row_was_kept_stayed_without_it(rt):
    """A snapshot stored before the lateness had a row of its own is current but incomplete:
    the forecast week's list of a company too big to compute it in the request queues the
    worker, and the worker's run, which found the snapshot current, did nothing, so the list
    never got the lateness it needs. The worker's run now computes it again when a row the
    pages read is missing."""
    from arbridge.sync.insight_cache import shown
    from arbridge.sync.store import company_today
    from arbridge.worker import run_insight

    books = ledger().build(rt)

    def lateness_shown(inline: int | None):
        with rt.sessions() as s:
            company = get_company(s, "insight")
            today = company_today(company, rt.clock)
            return shown(s, company, today, 90, rt.clock.now(), inline, lateness=True)

    assert lateness_shown(None).found.lateness  # computed and stored, every row
    with transaction(rt.sessions) as s:
        s.execute(
            delete(InsightSnapshot).where(
                InsightSnapshot.company_id == books.company.id,
                InsightSnapshot.kind == "90:live:lateness",
            )
        )
    assert lateness_shown(0).found is None  # queued for the worker
    run_insight(rt, books.company)
    got = lateness_shown(0)
    assert not got.stale and got.found is not None and got.found.lateness
