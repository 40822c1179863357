"""Payments collected through arbridge land in QuickBooks once, however often they are retried."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.connectors.quickbooks import RealmLimiter
from arbridge.errors import RateLimited
from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.ledger.writebacks import post_ledger_payment
from arbridge.services.payments.refunds import refit_to_ledger
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, Invoice, OutboxMessage, Payment
from arbridge.sync.outbox import LEASE, deliver, enqueue
from arbridge.sync.outbox_kinds import OutboxKind, ledger_payment_payload
from arbridge.sync.quickbooks_store import ConnectionTokens
from tests.contract.quickbooks.conftest import TODAY, connector, seed_ledger, sync
from tests.contract.quickbooks.test_sync import assert_same_books

STRIPE_ID = "pi_3QhGfK2eZvKYlo2C1x2y3z4w"


def queue_payment(rt, conn, invoice_id: str, customer_id: str, amount: str, key: str) -> None:
    with transaction(rt.sessions) as s:
        enqueue(
            s,
            rt.clock,
            company_id=conn.company_id,
            kind=OutboxKind.LEDGER_PAYMENT,
            key=key,
            payload=ledger_payment_payload(
                conn,
                customer_source_id=customer_id,
                currency="USD",
                amount=Decimal(amount),
                received_on=TODAY,
                reference=STRIPE_ID,
                lines=[(invoice_id, Decimal(amount))],
            ),
        )


def outbox_row(rt, key):
    with rt.sessions() as s:
        return s.scalar(select(OutboxMessage).where(OutboxMessage.key == key))


def test_a_collected_payment_becomes_one_linked_payment(rt, fake, connected):
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    invoice = ids["invoices"][2]
    before = fake.records["Invoice"][invoice]["Balance"]
    queue_payment(rt, connected.conn, invoice, ids["customers"][2], "20.00", "pay:1")
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    row = outbox_row(rt, "pay:1")
    assert row.status == "sent", row.last_error
    [payment] = fake.payments_with_reference(STRIPE_ID)
    assert row.provider_ref == payment["Id"]
    assert payment["Line"] == [
        {"Amount": Decimal("20.00"), "LinkedTxn": [{"TxnId": invoice, "TxnType": "Invoice"}]}
    ]
    assert payment["TotalAmt"] == Decimal("20.00")
    assert payment["PaymentRefNum"] == STRIPE_ID[-21:]
    assert payment["DepositToAccountRef"]["name"] == "Undeposited Funds"  # the default
    assert fake.records["Invoice"][invoice]["Balance"] == before - Decimal("20.00")
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        ours = s.scalar(select(Payment).where(Payment.source_id == payment["Id"]))
        assert ours.amount_minor == 2000 and ours.reference == STRIPE_ID[-21:]


def test_the_owner_s_deposit_account_is_used(rt, fake, connected):
    ids = seed_ledger(fake)
    with transaction(rt.sessions) as s:
        company = s.get(Company, connected.company.id)
        company.settings = {**company.settings, "quickbooks": {"deposit_account_id": "35"}}
    queue_payment(rt, connected.conn, ids["invoices"][2], ids["customers"][2], "5.00", "pay:2")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    [payment] = fake.payments_with_reference(STRIPE_ID)
    assert payment["DepositToAccountRef"] == {"value": "35"}


def test_a_crash_between_posting_and_recording_posts_no_second_payment(rt, fake, connected):
    ids = seed_ledger(fake)
    queue_payment(rt, connected.conn, ids["invoices"][2], ids["customers"][2], "20.00", "pay:3")
    message = outbox_row(rt, "pay:3")
    # The worker claimed the row and reached QuickBooks, then died before recording the result.
    first_id = post_ledger_payment(rt, message, refit_to_ledger)
    with transaction(rt.sessions) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == "pay:3")
            .values(status="sending", attempts=1, next_attempt_at=rt.clock.now())
        )
    rt.clock.advance(LEASE + timedelta(minutes=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1  # the lease ran out: retried
    row = outbox_row(rt, "pay:3")
    assert (row.status, row.provider_ref) == ("sent", first_id)
    assert len(fake.payments_with_reference(STRIPE_ID)) == 1


def test_an_answer_lost_on_the_wire_is_retried_with_the_same_requestid(rt, fake, connected):
    ids = seed_ledger(fake)
    fake.drop_after_write()
    sleeps: list[float] = []
    qbo = connector(rt, connected.conn, sleep=sleeps.append)
    payment = PaymentWriteBack(
        idempotency_key="pay:4:" + "x" * 80,  # longer than requestid allows: hashed, stably
        customer_source_id=ids["customers"][1],
        currency="USD",
        amount=Decimal("10.00"),
        received_on=TODAY,
        reference=STRIPE_ID,
        lines=[PaymentLine(ids["invoices"][1], Decimal("10.00"))],
    )
    first = qbo.post_payment(payment)
    assert sleeps == [1.0]
    assert qbo.post_payment(payment) == first  # and once more for good measure
    assert len(fake.payments_with_reference(STRIPE_ID)) == 1


def test_a_write_is_retried_after_a_throttle(rt, fake, connected):
    ids = seed_ledger(fake)
    fake.throttle(xml=True)
    sleeps: list[float] = []
    qbo = connector(rt, connected.conn, sleep=sleeps.append, max_wait=60)
    qbo.post_payment(
        PaymentWriteBack(
            "pay:5",
            ids["customers"][1],
            "USD",
            Decimal("3.00"),
            TODAY,
            STRIPE_ID,
            [PaymentLine(ids["invoices"][1], Decimal("3.00"))],
        )
    )
    assert sleeps == [60.0]
    assert len(fake.payments_with_reference(STRIPE_ID)) == 1


def test_a_refund_voids_the_payment_and_reopens_the_invoice(rt, fake, connected):
    ids = seed_ledger(fake)
    invoice = ids["invoices"][2]
    before = fake.records["Invoice"][invoice]["Balance"]
    queue_payment(rt, connected.conn, invoice, ids["customers"][2], "20.00", "pay:6")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    payment_id = outbox_row(rt, "pay:6").provider_ref
    qbo = connector(rt, connected.conn)
    qbo.reverse_payment(payment_id, "reverse:6")
    qbo.reverse_payment(payment_id, "reverse:6")  # twice: still one void
    assert fake.records["Invoice"][invoice]["Balance"] == before
    voided = fake.records["Payment"][payment_id]
    assert voided["TotalAmt"] == 0 and voided["PrivateNote"].startswith("Voided")
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        ours = s.scalar(select(Payment).where(Payment.source_id == payment_id))
        assert ours.status == "voided"
        inv = s.scalar(select(Invoice).where(Invoice.source_id == invoice))
        assert inv.open_balance_minor == int(before * 100)


def test_two_workers_refreshing_at_once_keep_the_rotated_token(rt, fake, connected):
    seed_ledger(fake)
    fake.expire_access_tokens()
    fake.refresh_delay = 0.2  # both workers are inside refresh at the same time
    with rt.sessions() as s:
        conn = s.get(Connection, connected.conn.id)
        s.expunge(conn)
    from arbridge.connectors.quickbooks import IntuitOAuth
    from arbridge.sync.quickbooks_store import quickbooks_config

    oauth = IntuitOAuth(quickbooks_config(rt.settings), rt.clock)
    stale = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, conn.id, oauth).access_token()
    tokens, errors = [], []

    def worker():
        try:
            source = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, conn.id, oauth)
            tokens.append(source.refresh(stale))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.token_calls == 1, "the second worker must use the first worker's new token"
    assert len(set(tokens)) == 1 and tokens[0] in fake.access_tokens
    # The stored refresh token is the live one: the next refresh still works.
    fake.expire_access_tokens()
    rt.clock.advance(timedelta(hours=2))
    sync(rt, connected.conn)
    assert_same_books(rt, fake)
    with rt.sessions() as s:
        assert s.get(Connection, conn.id).status == "active"


def test_the_in_process_limiter_waits_a_few_seconds_at_most_then_hands_the_job_back():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RealmLimiter(per_minute=2, monotonic=lambda: now[0], sleep=sleep)
    with limiter.slot():
        pass
    now[0] = 55.0
    with limiter.slot():
        pass
    with limiter.slot():  # the first call leaves the minute in 5 s: waited for here
        pass
    assert waits == [5.0]
    with pytest.raises(RateLimited) as throttled, limiter.slot():  # frees up only in 55 s
        pass
    assert waits == [5.0] and throttled.value.retry_after == 55.0


def test_the_limiter_keeps_to_500_a_minute_and_10_in_flight():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RealmLimiter(monotonic=lambda: now[0], sleep=sleep)
    for _ in range(500):
        with limiter.slot():
            pass
    assert waits == []
    with pytest.raises(RateLimited) as throttled, limiter.slot():
        pass
    assert waits == [] and throttled.value.retry_after == 60.0  # the job comes back, no sleep
    now[0] = 60.0
    with limiter.slot():
        pass
    assert waits == []
    # In flight: the 11th concurrent request waits for a slot.
    inside, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()
    fresh = RealmLimiter()

    def request():
        with fresh.slot():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            release.wait(1)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(15)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join()
    assert peak[0] <= 10


def test_an_early_payment_discount_is_a_credit_memo_applied_once(rt, fake, connected):
    from arbridge.connectors.base import DiscountWriteBack

    ids = seed_ledger(fake)
    invoice = ids["invoices"][2]
    before = fake.records["Invoice"][invoice]["Balance"]
    sleeps: list[float] = []
    qbo = connector(rt, connected.conn, sleep=sleeps.append)
    discount = DiscountWriteBack(
        idempotency_key="discount:inv:2",
        customer_source_id=ids["customers"][2],
        currency="USD",
        issued_on=TODAY,
        reference=STRIPE_ID,
        lines=[PaymentLine(invoice, Decimal("4.50"))],
    )
    fake.drop_after_write()  # the credit memo's answer is lost: retried with its requestid
    memo = qbo.post_discount(discount)
    assert qbo.post_discount(discount) == memo
    memos = [m for m in fake.live("CreditMemo") if STRIPE_ID in m.get("PrivateNote", "")]
    assert [m["Id"] for m in memos] == [memo]
    assert memos[0]["RemainingCredit"] == 0
    assert fake.records["Invoice"][invoice]["Balance"] == before - Decimal("4.50")
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert_same_books(rt, fake)


def test_a_refund_through_the_outbox_voids_the_quickbooks_payment_once(rt, fake, connected):
    """The payments code (issue 4) queues "ledger_reversal"; on QuickBooks it becomes one void."""
    ids = seed_ledger(fake)
    invoice = ids["invoices"][2]
    before = fake.records["Invoice"][invoice]["Balance"]
    queue_payment(rt, connected.conn, invoice, ids["customers"][2], "20.00", "pay:7")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    payment_id = outbox_row(rt, "pay:7").provider_ref
    with transaction(rt.sessions) as s:
        enqueue(
            s,
            rt.clock,
            company_id=connected.company.id,
            kind="ledger_reversal",
            key="reverse:pay:7",
            payload={
                "connection_id": connected.conn.id,
                "payment_key": "pay:7",
                "currency": "USD",
                "reference": STRIPE_ID,
                "repost": [],
            },
        )
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    row = outbox_row(rt, "reverse:pay:7")
    assert row.status == "sent", row.last_error
    assert fake.records["Payment"][payment_id]["PrivateNote"].startswith("Voided")
    assert fake.records["Invoice"][invoice]["Balance"] == before
    assert fake.calls["payment"] == 3  # the write, one read for the SyncToken, one void


def test_a_payment_collected_while_disconnected_lands_after_reconnecting(rt, fake, connected):
    from arbridge.connectors.quickbooks import Grant
    from arbridge.sync.quickbooks_store import attach

    ids = seed_ledger(fake)
    fake.revoke_everything()  # the owner's grant died (revoked at Intuit, or 100 days unused)
    queue_payment(rt, connected.conn, ids["invoices"][2], ids["customers"][2], "20.00", "pay:8")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    row = outbox_row(rt, "pay:8")
    assert row.status == "failed" and row.last_error.startswith("AuthExpired:")
    with rt.sessions() as s:
        assert s.get(Connection, connected.conn.id).status == "needs_reconnect"
    access, refresh = fake.issue_grant()
    with transaction(rt.sessions) as s:
        company = s.get(Company, connected.company.id)
        grant = Grant(access, refresh, rt.clock.now() + timedelta(hours=1), None)
        attach(s, rt.keyring, rt.clock, company, fake.realm_id, grant)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert outbox_row(rt, "pay:8").status == "sent"
    assert len(fake.payments_with_reference(STRIPE_ID)) == 1


def test_workers_share_the_realm_s_limits_through_the_database(rt):
    """Two limiters (two worker processes) on one realm: 10 in flight and 500 a minute in all."""
    from contextlib import ExitStack

    from arbridge.sync.quickbooks_store import DatabaseLimiter

    class Waited(Exception):
        pass

    def refuse(seconds: float) -> None:
        raise Waited(seconds)

    a = DatabaseLimiter(rt.sessions, rt.clock, "4620816365", refuse)
    b = DatabaseLimiter(rt.sessions, rt.clock, "4620816365", refuse)
    other_realm = DatabaseLimiter(rt.sessions, rt.clock, "1234567890", refuse)
    with ExitStack() as flying:
        for i in range(10):
            flying.enter_context((a if i % 2 else b).slot())
        with pytest.raises(Waited):
            flying.enter_context(b.slot())  # the 11th in flight waits
        with other_realm.slot():  # another company is not held up
            pass
    with a.slot():  # released: free again
        pass
    for _ in range(500 - 11):  # 11 taken so far this minute
        with b.slot():
            pass
    # The 501st in the same minute would wait a minute: the job leaves to come back then.
    with pytest.raises(RateLimited) as waited, a.slot():
        pass
    assert 59 <= waited.value.retry_after <= 60
    rt.clock.advance(timedelta(seconds=61))
    with a.slot():
        pass


def test_a_crashed_worker_s_slot_frees_itself(rt):
    from arbridge.sync.quickbooks_store import DatabaseLimiter

    start = rt.clock.now()

    def sleep(seconds: float) -> None:
        rt.clock.advance(timedelta(seconds=5))  # time passes while the live worker polls

    limiter = DatabaseLimiter(rt.sessions, rt.clock, "4620816365", sleep)
    dead = [limiter.slot() for _ in range(10)]
    for slot in dead:
        slot.__enter__()  # entered and never left: the worker died mid-call
    with limiter.slot():
        pass
    # The lease outlives Intuit's 120 s request timeout, then frees the slot.
    assert timedelta(seconds=130) <= rt.clock.now() - start <= timedelta(seconds=140)


def _collect(rt, connected, invoice_source_id: str, amount: str) -> None:
    """A card payment for the invoice comes back from Stripe (recorded as its event would be)."""
    from arbridge.money import Money
    from arbridge.services.payments.events import Observed
    from arbridge.services.payments.recording import record

    with transaction(rt.sessions) as s:
        inv = s.scalar(select(Invoice).where(Invoice.source_id == invoice_source_id))
        record(
            rt,
            s,
            Observed(
                payment_intent=STRIPE_ID,
                status="succeeded",
                company_id=connected.company.id,
                invoice_ids=(inv.id,),
                amount=Money(Decimal(amount), "USD"),
                method="card",
            ),
        )


def _cheque_in_quickbooks(rt, connected, ids, invoice: str, amount: str) -> None:
    connector(rt, connected.conn).post_payment(
        PaymentWriteBack(
            idempotency_key="bookkeeper-cheque",
            customer_source_id=ids["customers"][2 % 3],
            currency="USD",
            amount=Decimal(amount),
            received_on=TODAY,
            reference="CHK 4417",
            lines=[PaymentLine(invoice, Decimal(amount))],
        )
    )


def _collected(rt):
    from arbridge.sync.model import CollectedPayment

    with rt.sessions() as s:
        row = s.scalar(select(CollectedPayment))
        return row, sum(a.amount_minor for a in row.allocations)


@pytest.mark.parametrize(("cheque", "fits"), [("174.25", None), ("100.00", "74.25")])
def test_a_write_back_quickbooks_refuses_as_overapplied_becomes_an_overpayment(
    rt, fake, connected, cheque, fits
):
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    invoice = ids["invoices"][2]
    assert fake.records["Invoice"][invoice]["Balance"] == Decimal("174.25")
    # The bookkeeper records a cheque in QuickBooks while the customer is on the checkout.
    _cheque_in_quickbooks(rt, connected, ids, invoice, cheque)
    _collect(rt, connected, invoice, "174.25")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    [written] = [
        m
        for m in [outbox_row(rt, f"ledger_payment:{STRIPE_ID}")]
        if m is not None and m.kind == OutboxKind.LEDGER_PAYMENT
    ]
    assert written.status == "sent", written.last_error
    posted = fake.payments_with_reference(STRIPE_ID)
    row, applied = _collected(rt)
    if fits is None:
        assert posted == [] and written.provider_ref is None
        assert row.unapplied_minor == 17425 and applied == 0
    else:
        [payment] = posted
        assert payment["TotalAmt"] == Decimal(fits) and written.provider_ref == payment["Id"]
        assert row.unapplied_minor == 17425 - 7425 and applied == 7425
    # Collected = in the ledger + overpaid, to the cent.
    in_ledger = sum((p["TotalAmt"] for p in posted), Decimal(0))
    assert in_ledger * 100 + row.unapplied_minor == row.amount_minor
    assert fake.records["Invoice"][invoice]["Balance"] == 0
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    with rt.sessions() as s:
        ours = s.scalar(select(Invoice).where(Invoice.source_id == invoice))
        assert (ours.status, ours.open_balance_minor) == ("paid", 0)


def test_a_refitted_write_back_retried_after_a_crash_posts_once(rt, fake, connected):
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    invoice = ids["invoices"][2]
    _cheque_in_quickbooks(rt, connected, ids, invoice, "100.00")
    _collect(rt, connected, invoice, "174.25")
    message = outbox_row(rt, f"ledger_payment:{STRIPE_ID}")
    # The worker refits and posts, then dies before recording the result.
    first_id = post_ledger_payment(rt, message, refit_to_ledger)
    with transaction(rt.sessions) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.id)
            .values(status="sending", attempts=1, next_attempt_at=rt.clock.now())
        )
    rt.clock.advance(LEASE + timedelta(minutes=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) >= 1
    row = outbox_row(rt, f"ledger_payment:{STRIPE_ID}")
    assert (row.status, row.provider_ref) == ("sent", first_id)
    [payment] = fake.payments_with_reference(STRIPE_ID)
    assert payment["TotalAmt"] == Decimal("74.25")
    collected, applied = _collected(rt)
    assert (collected.unapplied_minor, applied) == (10000, 7425)


class _WriteBackDuringTheRead:
    """The QuickBooks connector, with the worker's write-back run after the sync read the
    invoices and before it saved them."""

    def __init__(self, inner, write_back) -> None:
        self.inner, self.write_back, self.source = inner, write_back, inner.source

    def pull(self, entity, cursor):
        for page in self.inner.pull(entity, cursor):
            if entity == "invoices" and self.write_back is not None:
                self.write_back()
                self.write_back = None
            yield page

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_sync_reading_quickbooks_before_the_write_back_keeps_the_invoice_paid(
    rt, fake, connected
):
    from arbridge.sync.runner import sync_connection

    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    invoice = ids["invoices"][2]
    _collect(rt, connected, invoice, "174.25")
    rt.clock.advance(timedelta(minutes=1))
    racing = _WriteBackDuringTheRead(
        rt.connector_for(connected.conn),
        lambda: deliver(rt.sessions, rt.clock, outbox_handlers(rt)),
    )
    sync_connection(rt.sessions, connected.conn.id, racing, rt.clock, full=True)
    assert fake.records["Invoice"][invoice]["Balance"] == 0
    with rt.sessions() as s:
        ours = s.scalar(select(Invoice).where(Invoice.source_id == invoice))
        assert (ours.status, ours.open_balance_minor) == ("paid", 0)
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert_same_books(rt, fake)


def _observe(rt, connected, status: str, **seen) -> None:
    """A Stripe event about the collected payment, taken in (its ledger writes wait)."""
    from arbridge.services.payments.events import Observed
    from arbridge.services.payments.recording import record

    with transaction(rt.sessions) as s:
        record(
            rt,
            s,
            Observed(
                payment_intent=STRIPE_ID, status=status, company_id=connected.company.id, **seen
            ),
        )


DISPUTE = "dp_1QhGfK2eZvKYlo2C5m6n7o8p"


def _won_dispute_waiting_to_be_restated(rt, fake, connected) -> str:
    """Collected and written back, disputed and voided in QuickBooks, then the dispute won:
    paid again here, with the restatement that says so still in the outbox."""
    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    invoice = ids["invoices"][2]
    _collect(rt, connected, invoice, "174.25")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    _observe(rt, connected, "disputed", dispute_id=DISPUTE, dispute_status="needs_response")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert fake.records["Invoice"][invoice]["Balance"] == Decimal("174.25")
    _observe(rt, connected, "dispute_closed", dispute_id=DISPUTE, dispute_status="won")
    assert _ours(rt, invoice) == ("paid", 0)
    return invoice


def _refund_waiting_to_be_reversed(rt, fake, connected) -> str:
    """Collected and written back, then refunded: owed again here, the reversal in the outbox."""
    from arbridge.money import Money

    ids = seed_ledger(fake)
    sync(rt, connected.conn)
    invoice = ids["invoices"][2]
    _collect(rt, connected, invoice, "174.25")
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert fake.records["Invoice"][invoice]["Balance"] == 0
    _observe(rt, connected, "refunded", refunded=Money(Decimal("174.25"), "USD"))
    assert _ours(rt, invoice) == ("open", 17425)
    return invoice


def _ours(rt, invoice_source_id: str) -> tuple[str, int]:
    with rt.sessions() as s:
        ours = s.scalar(select(Invoice).where(Invoice.source_id == invoice_source_id))
        return ours.status, ours.open_balance_minor


def test_a_sync_before_a_won_disputes_restatement_lands_never_reopens_the_invoice(
    rt, fake, connected
):
    invoice = _won_dispute_waiting_to_be_restated(rt, fake, connected)
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)  # QuickBooks still shows the payment voided: the invoice owed
    assert _ours(rt, invoice) == ("paid", 0)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert fake.records["Invoice"][invoice]["Balance"] == 0
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert _ours(rt, invoice) == ("paid", 0)
    assert_same_books(rt, fake)


def test_a_sync_before_a_refunds_reversal_lands_keeps_the_invoice_owed(rt, fake, connected):
    invoice = _refund_waiting_to_be_reversed(rt, fake, connected)
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)  # QuickBooks still shows the payment: the invoice paid
    assert _ours(rt, invoice) == ("open", 17425)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert fake.records["Invoice"][invoice]["Balance"] == Decimal("174.25")
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert _ours(rt, invoice) == ("open", 17425)
    assert_same_books(rt, fake)


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [
        (_won_dispute_waiting_to_be_restated, ("paid", 0)),
        (_refund_waiting_to_be_reversed, ("open", 17425)),
    ],
    ids=["won dispute", "refund"],
)
def test_a_restatement_landing_between_the_syncs_read_and_save_keeps_arbridge_s_view(
    rt, fake, connected, waiting, expected
):
    from arbridge.sync.runner import sync_connection

    invoice = waiting(rt, fake, connected)
    rt.clock.advance(timedelta(minutes=1))
    racing = _WriteBackDuringTheRead(
        rt.connector_for(connected.conn),
        lambda: deliver(rt.sessions, rt.clock, outbox_handlers(rt)),
    )
    sync_connection(rt.sessions, connected.conn.id, racing, rt.clock, full=True)
    assert fake.records["Invoice"][invoice]["Balance"] * 100 == expected[1]  # it landed
    assert _ours(rt, invoice) == expected
    rt.clock.advance(timedelta(minutes=1))
    sync(rt, connected.conn)
    assert _ours(rt, invoice) == expected
    assert_same_books(rt, fake)
