"""Full and incremental sync against the fake QuickBooks: the books match the ledger."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.collections.aging import OpenItem, age
from arbridge.errors import AuthExpired
from arbridge.money import Money
from arbridge.sync.model import (
    Activity,
    CompanyJob,
    Connection,
    CreditNote,
    Customer,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentAllocation,
    SyncCursor,
    SyncError,
)
from arbridge.sync.store import aging_report, get_company
from tests.contract.quickbooks.conftest import TODAY, seed_ledger, sync
from tests.contract.quickbooks.fake import FakeQuickBooks


def ledger_aging(fake: FakeQuickBooks, as_of=TODAY):
    """The fake ledger's own answer: open invoices aged straight from its records."""
    items = []
    for raw in fake.live("Invoice"):
        if raw["Balance"] == 0:
            continue
        currency = raw["CurrencyRef"]["value"]
        items.append(
            OpenItem(
                date_of(raw["DueDate"]),
                Money(raw["Balance"], currency),
                raw.get("ExchangeRate", Decimal(1)),
            )
        )
    return age(items, as_of, "USD")


def date_of(text):
    from datetime import date

    return date.fromisoformat(text)


def our_aging(rt, slug="harbor"):
    with rt.sessions() as s:
        return aging_report(s, get_company(s, slug), TODAY)


def assert_same_books(rt, fake):
    ours, theirs = our_aging(rt), ledger_aging(fake)
    assert ours.open_balance == theirs.open_balance
    assert ours.buckets == theirs.buckets
    assert ours.counts == theirs.counts
    assert ours.open_invoices == theirs.open_invoices


def count(rt, model, *where):
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_full_sync_matches_the_ledger(rt, fake, connected):
    seed_ledger(fake)
    result = sync(rt, connected.conn)
    assert result.errors == 0
    assert_same_books(rt, fake)
    assert our_aging(rt).open_balance.amount > 0
    # Inactive customers come too (QuickBooks hides them unless asked).
    with rt.sessions() as s:
        inactive = s.scalar(select(Customer).where(Customer.name == "Summit Logistics"))
        assert inactive is not None and inactive.active is False
        eur = s.scalar(select(Invoice).where(Invoice.currency == "EUR"))
        assert eur.exchange_rate == Decimal("1.0842")
        assert eur.total_minor == 80000
        memo = s.scalar(select(CreditNote))
        assert (memo.total_minor, memo.remaining_minor, memo.status) == (4000, 0, "closed")
        # The credit applied through a zero Payment is allocated to the invoice it names.
        alloc = s.scalars(select(PaymentAllocation)).all()
        assert [a.amount_minor for a in alloc] == [4000]
    assert count(rt, SyncError) == 0


def test_full_sync_pages_by_1000_in_a_stable_order(rt, fake, connected):
    customer = fake.add_customer("Big Customer")
    for _ in range(2001):
        fake.add_invoice(customer, "10.00", issued=TODAY, due=TODAY + timedelta(days=30))
    before = fake.calls["query"]
    sync(rt, connected.conn)
    invoice_queries = fake.calls["query"] - before - 3  # one page each: customers, memos, payments
    assert invoice_queries == math.ceil(2001 / 1000)
    assert count(rt, Invoice) == 2001


def test_exactly_1000_records_reads_one_empty_page_and_saves_the_cursor(rt, fake, connected):
    customer = fake.add_customer("Big Customer")
    for _ in range(1000):
        fake.add_invoice(customer, "10.00", issued=TODAY, due=TODAY)
    sync(rt, connected.conn)
    with rt.sessions() as s:
        cursor = s.scalar(select(SyncCursor.value).where(SyncCursor.entity == "invoices"))
    assert cursor is not None
    assert count(rt, Invoice) == 1000


def test_incremental_sync_uses_cdc_with_deletions_and_voids(rt, fake, connected):
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(minutes=15))
    fake.void_invoice(ids["invoices"][2])
    fake.delete("Invoice", ids["invoices"][3])
    fake.update_invoice(ids["invoices"][4], Balance=Decimal("1.25"))
    new = fake.add_invoice(ids["customers"][1], "99.99", issued=TODAY, due=TODAY)
    queries = fake.calls["query"]
    result = sync(rt, connected.conn)
    assert fake.calls["query"] == queries, "an incremental sync reads CDC, not queries"
    assert fake.calls["cdc"] == 4
    assert result.deleted == {"invoices": 1}
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        by_id = {i.source_id: i for i in s.scalars(select(Invoice))}
    assert by_id[ids["invoices"][2]].status == "voided"
    assert by_id[ids["invoices"][3]].status == "deleted"
    assert by_id[ids["invoices"][4]].open_balance_minor == 125
    assert by_id[new].open_balance_minor == 9999


def test_rerunning_a_sync_changes_nothing(rt, fake, connected):
    seed_ledger(fake)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(minutes=5))

    def snapshot():
        with rt.sessions() as s:
            return (
                sorted(
                    (i.source_id, i.open_balance_minor, i.status)
                    for i in s.scalars(select(Invoice))
                ),
                sorted((p.source_id, p.amount_minor) for p in s.scalars(select(Payment))),
                count(rt, PaymentAllocation),
            )

    first = snapshot()
    sync(rt, connected.conn)  # re-reads what changed at the cursor's instant (an inclusive >=)
    rt.clock.advance(timedelta(minutes=5))
    quiet = sync(rt, connected.conn)
    assert sum(quiet.upserted.values()) == 0  # nothing changed since the cursor
    full = sync(rt, connected.conn, full=True)
    assert sum(full.upserted.values()) > 0
    assert snapshot() == first


def test_cdc_response_of_1000_objects_is_re_read_in_pages(rt, fake, connected):
    customer = fake.add_customer("Busy Customer")
    doomed = fake.add_invoice(customer, "7.00", issued=TODAY, due=TODAY)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(minutes=5))
    fake.delete("Invoice", doomed)
    for _ in range(1500):
        fake.add_invoice(customer, "5.00", issued=TODAY, due=TODAY)
    cdc, queries = fake.calls["cdc"], fake.calls["query"]
    sync(rt, connected.conn)
    assert fake.calls["cdc"] - cdc == 4
    assert fake.calls["query"] - queries == 2  # the truncated invoice window, in 1000s
    assert count(rt, Invoice, Invoice.status == "open") == 1500
    assert count(rt, Invoice, Invoice.status == "deleted") == 1
    assert_same_books(rt, fake)


def test_a_cursor_older_than_30_days_falls_back_to_a_full_sync(rt, fake, connected):
    seed_ledger(fake)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(days=31))
    cdc = fake.calls["cdc"]
    result = sync(rt, connected.conn)
    assert fake.calls["cdc"] == cdc, "CDC refuses windows over 30 days: a full sync instead"
    assert result.upserted["invoices"] == len(fake.live("Invoice"))


def test_cursor_moves_only_after_the_data_is_committed(rt, fake, connected):
    seed_ledger(fake)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(minutes=5))
    with rt.sessions() as s:
        before = dict(s.execute(select(SyncCursor.entity, SyncCursor.value)).tuples().all())
    customer = fake.add_customer("Late Customer")
    fake.add_invoice(customer, "12.00", issued=TODAY, due=TODAY)
    fake.fail(times=50, status=503)  # QuickBooks is down for the rest of the sync
    sleeps: list[float] = []
    with pytest.raises(Exception, match="HTTP 503"):
        sync(rt, connected.conn, sleep=sleeps.append)
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # backoff, injected: no real waiting
    with rt.sessions() as s:
        after = dict(s.execute(select(SyncCursor.entity, SyncCursor.value)).tuples().all())
        conn = s.get(Connection, connected.conn.id)
        assert "503" in (conn.last_sync_error or "")
    assert after == before
    fake.injected.clear()
    sync(rt, connected.conn)
    assert_same_books(rt, fake)


@pytest.mark.parametrize("xml", [False, True])
def test_throttles_wait_and_retry(rt, fake, connected, xml):
    seed_ledger(fake)
    fake.throttle(times=2, xml=xml)
    sleeps: list[float] = []
    # A connector allowed to wait a minute (the default raises RateLimited instead: see
    # test_a_long_throttle_reschedules_the_sync_instead_of_sleeping).
    sync(rt, connected.conn, sleep=sleeps.append, max_wait=60)
    assert sleeps == [60.0, 60.0]
    assert_same_books(rt, fake)


def test_an_unmappable_record_is_skipped_with_a_sync_error(rt, fake, connected):
    ids = seed_ledger(fake)
    fake.update_invoice(ids["invoices"][5], TotalAmt=Decimal("10.001"))  # more digits than USD
    fake.update_invoice(ids["invoices"][6], CurrencyRef=None)
    result = sync(rt, connected.conn)
    assert result.errors == 2
    with rt.sessions() as s:
        errors = s.scalars(select(SyncError).order_by(SyncError.source_id)).all()
    assert {e.source_id for e in errors} == {ids["invoices"][5], ids["invoices"][6]}
    assert any("CurrencyRef" in e.message for e in errors)
    assert count(rt, Invoice) == len(fake.live("Invoice")) - 2


def test_an_expired_access_token_is_refreshed_once(rt, fake, connected):
    seed_ledger(fake)
    fake.expire_access_tokens()
    sync(rt, connected.conn)
    assert fake.token_calls == 1
    assert_same_books(rt, fake)


def test_a_dead_grant_marks_the_connection_and_tells_the_owner(rt, fake, connected):
    seed_ledger(fake)
    fake.revoke_everything()
    with pytest.raises(AuthExpired):
        sync(rt, connected.conn)
    with rt.sessions() as s:
        conn = s.get(Connection, connected.conn.id)
        assert conn.status == "needs_reconnect"
        job = s.scalar(select(CompanyJob).where(CompanyJob.job == "sync"))
        assert job.paused is True
        assert s.scalar(select(Activity).where(Activity.kind == "connection.needs_reconnect"))
        mail = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "email"))
        assert mail.payload["to"] == "owner@harbor-bakery.example"
        assert "Reconnect" in mail.payload["text"]
    # The email handler (issue 5) takes the notice: the in-app mailbox here, SMTP when set.
    from arbridge.services.bootstrap import outbox_handlers
    from arbridge.sync.outbox import deliver

    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        mail = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "email"))
        assert mail.status == "sent", mail.last_error
    # A second attempt does not hammer Intuit: the connection is paused until reconnected.
    calls = fake.token_calls
    with pytest.raises(AuthExpired):
        sync(rt, connected.conn)
    assert fake.token_calls == calls


def test_timeouts_back_off_and_retry(rt, fake, connected):
    seed_ledger(fake)
    fake.time_out(times=2)
    sleeps: list[float] = []
    sync(rt, connected.conn, sleep=sleeps.append)
    assert sleeps == [1.0, 2.0]
    assert_same_books(rt, fake)


def test_a_401_after_a_refresh_marks_the_connection_needs_reconnect(rt, fake, connected):
    seed_ledger(fake)
    fake.refuse_every_token = True
    with pytest.raises(AuthExpired, match="freshly refreshed"):
        sync(rt, connected.conn)
    assert fake.token_calls == 1  # refreshed once, not in a loop
    with rt.sessions() as s:
        assert s.get(Connection, connected.conn.id).status == "needs_reconnect"
        assert s.scalar(select(CompanyJob.paused).where(CompanyJob.job == "sync"))


def test_a_full_sync_after_a_stale_cursor_catches_deletions(rt, fake, connected):
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    rt.clock.advance(timedelta(days=31))  # CDC no longer reaches back to the cursor
    fake.delete("Invoice", ids["invoices"][4])
    fake.delete("Customer", ids["customers"][1])
    result = sync(rt, connected.conn)
    assert result.deleted == {"invoices": 1, "customers": 1}
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        gone = s.scalar(select(Invoice).where(Invoice.source_id == ids["invoices"][4]))
        assert gone.status == "deleted"
    assert sum(sync(rt, connected.conn, full=True).deleted.values()) == 0  # said once


class DeleteMidRead:
    """Deletes a record in QuickBooks after the first page of a full read has been taken."""

    source = "quickbooks"

    def __init__(self, inner, fake, victim):
        self.inner, self.fake, self.victim = inner, fake, victim

    def pull(self, entity, cursor):
        for i, page in enumerate(self.inner.pull(entity, cursor)):
            yield page
            if entity == "invoices" and i == 0:
                self.fake.delete("Invoice", self.victim)


def test_a_record_the_paging_skipped_is_not_called_deleted(rt, fake, connected):
    from arbridge.sync.runner import sync_connection
    from tests.contract.quickbooks.conftest import connector

    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    # Page size 5: deleting a record of page 1 shifts record 6 onto page 1, so page 2 skips it.
    qbo = DeleteMidRead(connector(rt, connected.conn, page_size=5), fake, ids["invoices"][0])
    sync_connection(rt.sessions, connected.conn.id, qbo, rt.clock, full=True)
    with rt.sessions() as s:
        statuses = dict(s.execute(select(Invoice.source_id, Invoice.status)).tuples().all())
    assert statuses[ids["invoices"][5]] != "deleted"  # asked for by id, found, kept
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)  # CDC brings the deletion that happened mid-read
    assert_same_books(rt, fake)
