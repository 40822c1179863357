"""The sync runner against the demo ledger: idempotent, incremental, deletion-aware, and it never
lets one bad record or a crash lose data or move a cursor too far."""

from __future__ import annotations

import gc
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.connectors.demo import DemoConnector
from arbridge.errors import Rejected, Transient
from arbridge.sync.model import (
    Connection,
    CreditNote,
    Invoice,
    Payment,
    PaymentAllocation,
    SyncCursor,
    SyncError,
)
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import aging_report, company_today, ledger_connection
from tests.conftest import sync_now


def snapshot(rt):
    with rt.sessions() as s:
        invoices = s.execute(
            select(
                Invoice.source_id,
                Invoice.open_balance_minor,
                Invoice.status,
                Invoice.source_version,
            ).order_by(Invoice.source_id)
        ).all()
        counts = {
            m.__name__: s.scalar(select(func.count()).select_from(m))
            for m in (Invoice, Payment, CreditNote, PaymentAllocation)
        }
    return invoices, counts


def connection(rt, company):
    with rt.sessions() as s:
        return ledger_connection(s, company.id)


def ledger_totals(rt, conn):
    """Open balance per the ledger itself, by currency, to compare against the model."""
    state = rt.demo_ledger(conn.tenant_id).read()
    out: dict[str, Decimal] = {}
    for inv in state["Invoice"]:
        if inv.get("status") == "AUTHORISED":
            out[inv["currencyCode"]] = out.get(inv["currencyCode"], Decimal(0)) + Decimal(
                inv["balance"]
            )
    return out


def model_totals(rt, company):
    with rt.sessions() as s:
        rows = s.execute(
            select(Invoice.currency, func.sum(Invoice.open_balance_minor))
            .where(Invoice.company_id == company.id, Invoice.status == "open")
            .group_by(Invoice.currency)
        ).all()
    return {cur: Decimal(minor) / 100 for cur, minor in rows}


def test_model_matches_the_ledger_after_a_full_sync(rt, demo_company):
    conn = connection(rt, demo_company)
    assert model_totals(rt, demo_company) == ledger_totals(rt, conn)
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CreditNote)) == 1
        assert s.scalar(select(func.count()).select_from(PaymentAllocation)) > 100
        currencies = set(s.scalars(select(Invoice.currency).distinct()))
    assert {"USD", "EUR"} <= currencies


def test_running_the_sync_again_changes_nothing(rt, demo_company):
    conn = connection(rt, demo_company)
    before = snapshot(rt)
    result = sync_now(rt, conn)
    assert result.upserted == {} and result.pages == 0
    full = sync_now(rt, conn, full=True)
    assert full.upserted["invoices"] == 300
    assert snapshot(rt) == before


def test_incremental_sync_picks_up_changes_voids_and_deletions(rt, demo_company, clock):
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    open_ids = [i["id"] for i in ledger.read()["Invoice"] if i.get("status") == "AUTHORISED"]
    clock.advance(timedelta(hours=1))
    ledger.void_invoice(open_ids[0])
    ledger.delete_invoice(open_ids[1])
    new_id = ledger.add_invoice(
        invoiceNumber="INV-9000",
        contactId="C100",
        date="2026-11-20",
        dueDate="2026-12-20",
        currencyCode="USD",
        currencyRate="1",
        total="999.99",
    )
    result = sync_now(rt, conn)
    assert result.upserted == {"invoices": 2} and result.deleted == {"invoices": 1}
    with rt.sessions() as s:
        by_id = {
            i.source_id: i
            for i in s.scalars(
                select(Invoice).where(Invoice.source_id.in_([*open_ids[:2], new_id]))
            )
        }
    assert by_id[open_ids[0]].status == "voided" and by_id[open_ids[0]].open_balance_minor == 0
    assert by_id[open_ids[1]].status == "deleted" and by_id[open_ids[1]].open_balance_minor == 0
    assert by_id[new_id].open_balance_minor == 99999 and by_id[new_id].status == "open"
    assert model_totals(rt, demo_company) == ledger_totals(rt, conn)


def test_one_connector_kept_across_syncs_sees_each_change_to_the_ledger(rt, demo_company, clock):
    # The connector parses the file again only when its bytes changed: an edit made between
    # two pulls of the same connector is never served from what it read before.
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    connector = DemoConnector(ledger)
    assert sync_connection(rt.sessions, conn.id, connector, rt.clock).upserted == {}
    open_ids = [i["id"] for i in ledger.read()["Invoice"] if i.get("status") == "AUTHORISED"]
    clock.advance(timedelta(hours=1))
    ledger.void_invoice(open_ids[0])
    result = sync_connection(rt.sessions, conn.id, connector, rt.clock)
    assert result.upserted == {"invoices": 1}
    ledger.void_invoice(open_ids[1])
    pulled = [p.records for p in connector.pull("invoices", None)]
    voided = {r.source_id for page in pulled for r in page if r.raw["status"] == "VOIDED"}
    assert {open_ids[0], open_ids[1]} <= voided
    with rt.sessions() as s:
        assert s.scalar(select(Invoice.status).where(Invoice.source_id == open_ids[0])) == "voided"


def test_a_malformed_record_is_skipped_with_a_visible_error(rt, demo_company, clock):
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    bad = ledger.add_invoice(
        invoiceNumber="INV-BAD",
        contactId="C100",
        date="yesterday",
        currencyCode="USD",
        total="10.00",
    )
    good = ledger.add_invoice(
        invoiceNumber="INV-GOOD",
        contactId="C100",
        date="2026-11-20",
        currencyCode="USD",
        total="10.00",
    )
    orphan = ledger.add_invoice(
        invoiceNumber="INV-ORPHAN",
        contactId="C-NOPE",
        date="2026-11-20",
        currencyCode="USD",
        total="5.00",
    )
    result = sync_now(rt, conn)
    assert result.errors == 2
    with rt.sessions() as s:
        errors = {e.source_id: e.message for e in s.scalars(select(SyncError))}
        numbers = set(
            s.scalars(select(Invoice.number).where(Invoice.source_id.in_([bad, good, orphan])))
        )
    assert "not a date" in errors[bad] and "C-NOPE" in errors[orphan]
    assert numbers == {"INV-GOOD"}


class FailingAfterFirstPage:
    """The ledger drops the connection after the first page (an outside failure, not our code)."""

    source = "demo"

    def __init__(self, inner: DemoConnector) -> None:
        self.inner = inner

    def pull(self, entity, cursor):
        for n, page in enumerate(self.inner.pull(entity, cursor)):
            if n == 1:
                raise Transient("connection reset by the ledger")
            yield page

    def post_payment(self, payment):
        return self.inner.post_payment(payment)


def test_cursor_moves_only_with_committed_data_and_a_rerun_completes(rt, demo_company, clock):
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    clock.advance(timedelta(minutes=5))
    ids = [
        ledger.add_invoice(
            invoiceNumber=f"N-{n}",
            contactId="C101",
            date="2026-11-21",
            currencyCode="USD",
            total="1.00",
        )
        for n in range(5)
    ]
    flaky = FailingAfterFirstPage(DemoConnector(ledger, page_size=2))
    with pytest.raises(Transient):
        sync_connection(rt.sessions, conn.id, flaky, rt.clock)
    with rt.sessions() as s:
        synced = set(s.scalars(select(Invoice.source_id).where(Invoice.source_id.in_(ids))))
        cursor = s.scalar(select(SyncCursor.value).where(SyncCursor.entity == "invoices"))
    assert synced == set(ids[:2])
    with rt.sessions() as s:
        assert "connection reset" in s.get(Connection, conn.id).last_sync_error
    seq = {i["id"]: i["seq"] for i in ledger.read()["Invoice"]}
    assert cursor == str(seq[ids[1]])
    sync_connection(rt.sessions, conn.id, DemoConnector(ledger, page_size=2), rt.clock)
    with rt.sessions() as s:
        assert set(s.scalars(select(Invoice.source_id).where(Invoice.source_id.in_(ids)))) == set(
            ids
        )


def test_a_sync_gives_the_garbage_collector_back_everything_it_froze(rt, demo_company, clock):
    # The sync keeps what the connector read out of the collector's sight while it runs; after
    # it, finished or failed, nothing of this process stays frozen.
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    clock.advance(timedelta(minutes=5))
    for n in range(3):
        ledger.add_invoice(
            invoiceNumber=f"G-{n}",
            contactId="C101",
            date="2026-11-21",
            currencyCode="USD",
            total="1",
        )
    assert gc.get_freeze_count() == 0
    flaky = FailingAfterFirstPage(DemoConnector(ledger, page_size=2))
    with pytest.raises(Transient):
        sync_connection(rt.sessions, conn.id, flaky, rt.clock)
    assert gc.get_freeze_count() == 0
    assert sync_now(rt, conn).upserted == {"invoices": 1}  # the first page (2) was kept
    assert gc.get_freeze_count() == 0


class CollectorWatch:
    """Records, for each page the ledger hands over, whether the garbage collector was on while
    it was read; fails on the first page of one entity when asked."""

    source = "demo"

    def __init__(self, inner: DemoConnector, fail_on: str | None = None) -> None:
        self.inner = inner
        self.fail_on = fail_on
        self.seen: list[tuple[str, bool]] = []

    def pull(self, entity, cursor):
        if entity == self.fail_on:
            self.seen.append((entity, gc.isenabled()))
            raise Transient("connection reset by the ledger")
        for page in self.inner.pull(entity, cursor):
            self.seen.append((entity, gc.isenabled()))
            yield page


def test_reading_a_ledgers_first_page_set_off_a_full_collection_of_everything_read(
    rt, demo_company, clock
):
    # The first page of each entity is read with the collector off (what it reads stays alive
    # and is then frozen: a collection meanwhile walked all of it once more); the pages after
    # it with the collector on; and the collector is on after the sync, failed or not.
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    assert gc.isenabled()
    watch = CollectorWatch(DemoConnector(ledger, page_size=5))
    sync_connection(rt.sessions, conn.id, watch, rt.clock, full=True)
    firsts = {}
    for entity, on in watch.seen:
        firsts.setdefault(entity, []).append(on)
    assert firsts["invoices"][0] is False and len(firsts["invoices"]) > 2
    assert all(pages[0] is False and all(pages[1:]) for pages in firsts.values())
    assert gc.isenabled() and gc.get_freeze_count() == 0
    failing = CollectorWatch(DemoConnector(ledger, page_size=5), fail_on="invoices")
    with pytest.raises(Transient):
        sync_connection(rt.sessions, conn.id, failing, rt.clock, full=True)
    assert ("invoices", False) in failing.seen
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_payment_write_back_posts_once_however_often_retried(rt, demo_company):
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    inv = next(
        i
        for i in ledger.read()["Invoice"]
        if i.get("status") == "AUTHORISED" and i["currencyCode"] == "USD"
    )
    connector = rt.connector_for(conn)
    payment = PaymentWriteBack(
        idempotency_key="outbox:writeback:1",
        customer_source_id=inv["contactId"],
        currency="USD",
        amount=Decimal(inv["balance"]),
        received_on=company_today(demo_company, rt.clock),
        reference="pi_3MtwBwLkdIwHu7ix28a3tqPa",
        lines=[PaymentLine(inv["id"], Decimal(inv["balance"]))],
    )
    first = connector.post_payment(payment)
    assert connector.post_payment(payment) == first
    assert connector.post_payment(payment) == first
    state = ledger.read()
    assert sum(1 for p in state["Payment"] if p["reference"] == payment.reference) == 1
    assert ledger.find(state, "Invoice", inv["id"])["status"] == "PAID"
    with pytest.raises(Rejected):
        connector.post_payment(PaymentWriteBack(**{**payment.__dict__, "idempotency_key": "other"}))
    sync_now(rt, conn)
    with rt.sessions() as s:
        row = s.scalar(select(Invoice).where(Invoice.source_id == inv["id"]))
        assert row.status == "paid" and row.open_balance_minor == 0
        alloc = s.scalar(
            select(func.count())
            .select_from(PaymentAllocation)
            .where(PaymentAllocation.invoice_id == row.id)
        )
    assert alloc >= 1


def test_voided_payment_reopens_the_invoice(rt, demo_company, clock):
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    state = ledger.read()
    pmt = next(p for p in state["Payment"] if p["applied"])
    inv_id = pmt["applied"][0]["invoiceId"]
    before = aging_report_open(rt, demo_company)
    clock.advance(timedelta(minutes=1))
    ledger.void_payment(pmt["id"])
    sync_now(rt, conn)
    with rt.sessions() as s:
        row = s.scalar(select(Invoice).where(Invoice.source_id == inv_id))
        assert row.status == "open"
        assert (
            s.scalar(
                select(func.count())
                .select_from(PaymentAllocation)
                .join(Payment)
                .where(Payment.source_id == pmt["id"])
            )
            == 0
        )
    assert aging_report_open(rt, demo_company) > before


def aging_report_open(rt, company):
    with rt.sessions() as s:
        return aging_report(s, company, company_today(company, rt.clock)).open_balance


def test_a_large_load_refreshes_the_planners_statistics(rt, demo_company, monkeypatch):
    from sqlalchemy import text

    from arbridge.sync import runner

    def last_analyzed() -> dict[str, object]:
        # The test process's schema outlives a test: an earlier one may have analyzed a table
        # (a large load of its own), so compare before and after this sync.
        with rt.engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT relname, last_analyze FROM pg_stat_user_tables "
                    "WHERE schemaname = current_schema()"
                )
            ).all()
            return {name: at for name, at in rows}

    monkeypatch.setattr(runner, "ANALYZE_AFTER", 100)  # the demo's 300 invoices count as large
    on_postgres = rt.engine.dialect.name == "postgresql"
    before = last_analyzed() if on_postgres else {}
    sync_now(rt, connection(rt, demo_company), full=True)
    if not on_postgres:
        return  # SQLite plans without table statistics
    after = last_analyzed()
    analyzed = [t for t, at in after.items() if at is not None and at != before.get(t)]
    assert {"invoices", "payments", "payment_allocations"} <= set(analyzed)
    assert "customers" not in analyzed  # 40 customers: not a large load


def test_a_large_load_looked_its_pages_up_in_a_table_never_analyzed(rt, demo_company, monkeypatch):
    """Issue 14: the invoices were analyzed only after their last page, so on PostgreSQL each
    page's lookups by source id planned for a table never analyzed and scanned every invoice
    loaded so far (3 ms a page, then 50 ms by the 100th page of a 100k-invoice sync). Now an
    entity's tables are analyzed as soon as its load reaches ANALYZE_AFTER rows."""
    from sqlalchemy import event

    from arbridge.sync import runner

    monkeypatch.setattr(runner, "ANALYZE_AFTER", 100)  # the demo's 300 invoices count as large
    conn = connection(rt, demo_company)
    connector = DemoConnector(rt.demo_ledger(conn.tenant_id), page_size=50)
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith(("INSERT INTO invoices ", "ANALYZE ")):
            statements.append(statement.split(" (")[0])

    event.listen(rt.engine, "before_cursor_execute", seen)
    try:
        sync_connection(rt.sessions, conn.id, connector, rt.clock, full=True)
    finally:
        event.remove(rt.engine, "before_cursor_execute", seen)
    if rt.engine.dialect.name != "postgresql":
        assert not [s for s in statements if s.startswith("ANALYZE")]  # SQLite: no statistics
        return
    pages = [i for i, s in enumerate(statements) if s == "INSERT INTO invoices"]
    analyzed = [i for i, s in enumerate(statements) if s == "ANALYZE invoices"]
    assert len(pages) == 6, statements
    # After the page that reached 100 invoices (the second), before the third; and at the end.
    assert analyzed == [pages[1] + 1, pages[-1] + 1], statements


def test_a_sqlite_sync_committed_each_page_on_its_own(rt, demo_company):
    """Issue 14: on SQLite each commit writes every database page its transaction changed to the
    log, and a page of invoices lands all over each of the invoices' indexes, so committing each
    page alone wrote the same index pages again and again (13.5 s of a 100k-invoice sync, 10.5 s
    with pages committed in tens). SQLite now commits pages together until they hold
    SQLITE_RECORDS_PER_COMMIT records; PostgreSQL still commits each page alone."""
    from sqlalchemy import event

    conn = connection(rt, demo_company)
    connector = DemoConnector(rt.demo_ledger(conn.tenant_id), page_size=50)
    seen: list[str] = []

    def statement(_conn, _cursor, sql, *_args) -> None:
        if sql.startswith("INSERT INTO invoices "):
            seen.append("invoices")

    def commit(_conn) -> None:
        seen.append("commit")

    event.listen(rt.engine, "before_cursor_execute", statement)
    event.listen(rt.engine, "commit", commit)
    try:
        sync_connection(rt.sessions, conn.id, connector, rt.clock, full=True)
    finally:
        event.remove(rt.engine, "before_cursor_execute", statement)
        event.remove(rt.engine, "commit", commit)
    first, last = seen.index("invoices"), len(seen) - seen[::-1].index("invoices")
    assert seen[first:last].count("invoices") == 6  # the demo's 300 invoices, 50 a page
    commits_between_pages = seen[first:last].count("commit")
    assert commits_between_pages == (5 if rt.engine.dialect.name == "postgresql" else 0), seen
    assert snapshot(rt)[1]["Invoice"] == 300


class TrailingPageWithoutCursor:
    """A ledger whose last page of each entity carries no cursor after one that does. Ours put
    the cursor on the last page; the connector interface allows any page to carry it, and each
    page committed alone saved whichever it got."""

    source = "demo"

    def __init__(self, inner: DemoConnector) -> None:
        self.inner = inner

    def pull(self, entity, cursor):
        from arbridge.connectors.base import Page

        yield from self.inner.pull(entity, cursor)
        yield Page(entity, [], None)


def test_pages_committed_together_kept_the_cursor_of_a_page_before_the_last(
    rt, demo_company, clock
):
    # Pages committed together save the last cursor any of them gave, as each page saving its
    # own did; the last page's alone (None here) left the cursor where it was.
    conn = connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    clock.advance(timedelta(minutes=5))
    ledger.add_invoice(
        invoiceNumber="N-CURSOR", contactId="C101", date="2026-11-21", currencyCode="USD", total="1"
    )
    connector = TrailingPageWithoutCursor(DemoConnector(ledger, page_size=50))
    assert sync_connection(rt.sessions, conn.id, connector, rt.clock).upserted["invoices"] == 1
    with rt.sessions() as s:
        cursor = s.scalar(
            select(SyncCursor.value).where(
                SyncCursor.connection_id == conn.id, SyncCursor.entity == "invoices"
            )
        )
    assert cursor == str(max(i["seq"] for i in ledger.read()["Invoice"]))
