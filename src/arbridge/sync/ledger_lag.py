"""Where a reading of the ledger lags behind arbridge: money collected (or given back) here whose
ledger write had not landed when the reading was taken.

The runner saves what the ledger said (`Invoice.ledger_balance_minor`) and, from the collected
payments on each invoice and the state of their ledger writes in the outbox, what the reading
does not show yet (`Invoice.unposted_minor`), so a reading older than a write-back never undoes
a payment. A reading that may or may not hold a write (it landed during the read) is not trusted:
the invoice keeps what arbridge held and is read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from arbridge.collections.aging import open_balance
from arbridge.money import Money
from arbridge.sync.db import among
from arbridge.sync.model import CollectedAllocation, CollectedPayment, Invoice, OutboxMessage
from arbridge.sync.outbox_kinds import (
    LEDGER_WRITES,
    OutboxKind,
    ledger_discount_key,
    ledger_payment_key,
    ledger_reversal_prefix,
)


@dataclass(frozen=True)
class WrittenBack:
    """Which of a company's ledger writes (`outbox_kinds.LEDGER_WRITES`: a collected payment's
    write-back, its early-payment discount, its restatements) the ledger had confirmed when a
    read began: the highest outbox id then, and the writes not confirmed then."""

    last_id: int
    in_flight: frozenset[int]

    def holds(self, write: OutboxMessage) -> bool | None:
        """Does a reading taken after this point show the write? True: it was confirmed before
        the read; False: it has not landed (queued, failing, given up); None: it may or may not
        (it is being sent, or it landed while the ledger was being read)."""
        if write.status == "sending":
            return None
        if write.status != "sent":
            return False
        return None if write.id > self.last_id or write.id in self.in_flight else True


NOW = WrittenBack(2**62, frozenset())  # a reading taken now: every confirmed write is in it


def written_back(session: Session, company_id: int) -> WrittenBack:
    last = session.scalar(select(func.max(OutboxMessage.id))) or 0
    waiting = session.scalars(
        select(OutboxMessage.id).where(
            OutboxMessage.company_id == company_id,
            OutboxMessage.kind.in_(LEDGER_WRITES),
            OutboxMessage.status != "sent",
        )
    )
    return WrittenBack(last, frozenset(waiting))


def _chain(payment_intent: str, ledger_key: str | None) -> list[str]:
    """The outbox keys of a payment's ledger writes, oldest first, up to its latest."""
    if ledger_key is None:
        return []
    root = ledger_payment_key(payment_intent)
    prefix = ledger_reversal_prefix(payment_intent)
    last = ledger_key.removeprefix(prefix)
    if ledger_key == last or not last.isdigit():
        return [ledger_key]
    return [root, *(f"{prefix}{n}" for n in range(1, int(last) + 1))]


def _stated(write: OutboxMessage, invoices: dict[str, int]) -> dict[int, int]:
    """What a landed write left applied in the ledger, per invoice (minor units)."""
    p = write.payload or {}
    if write.kind == OutboxKind.LEDGER_REVERSAL:
        return {
            r["invoice_id"]: int(r["amount_minor"]) for r in p.get("stated", p.get("repost", []))
        }
    stated: dict[int, int] = {}
    for line in p.get("refit", p.get("lines", [])):
        invoice_id = invoices.get(line["invoice_source_id"])
        if invoice_id is not None:
            minor = Money(Decimal(line["amount"]), p["currency"]).minor
            stated[invoice_id] = stated.get(invoice_id, 0) + minor
    return stated


@dataclass
class Lag:
    """Where a reading of the ledger lags behind what arbridge did with the money it collected.

    `by`: per invoice, what the balance read lacks (negative: holds too much), so that each
    collected payment whose latest ledger write the reading does not hold counts as arbridge's
    allocations say now, not as the ledger said before: the invoice's `unposted_minor`. `unsure`: invoices whose reading may or
    may not hold such a write (it landed during the read): they keep the state arbridge holds,
    and are read again once the sync is done."""

    by: dict[int, int] = field(default_factory=dict)
    unsure: set[int] = field(default_factory=set)


def read_lag(
    session: Session, company_id: int, source: str, source_ids: Iterable[str], before: WrittenBack
) -> Lag:
    """One look at the collected payments applied to these invoices (by their ledger ids) and at
    their ledger writes (a fixed number of queries, whatever the page holds)."""
    lag = Lag()
    wanted = list(source_ids)
    if not wanted:
        return lag
    rows = session.execute(
        select(
            CollectedAllocation.invoice_id,
            CollectedAllocation.amount_minor,
            CollectedAllocation.discount_minor,
            CollectedPayment.id,
            CollectedPayment.payment_intent_id,
            CollectedPayment.ledger_key,
            Invoice.source_id,
        )
        .join(CollectedPayment, CollectedPayment.id == CollectedAllocation.collected_payment_id)
        .join(Invoice, Invoice.id == CollectedAllocation.invoice_id)
        .where(
            Invoice.company_id == company_id,
            Invoice.source == source,
            among(session, Invoice.source_id, wanted),
        )
    ).all()
    # The invoices of the page that collected payments touch: all a landed write's lines are
    # looked up against (`_stated` is asked only about these).
    invoices = {row.source_id: row.invoice_id for row in rows}
    keys = {
        key
        for row in rows
        for key in (
            *_chain(row.payment_intent_id, row.ledger_key),
            ledger_discount_key(row.payment_intent_id),
        )
    }
    writes = (
        {
            w.key: w
            for w in session.scalars(
                select(OutboxMessage).where(among(session, OutboxMessage.key, keys))
            )
        }
        if keys
        else {}
    )
    for row in rows:
        invoice_id, amount, discount, _id, payment_intent, ledger_key, _source_id = row
        chain = [writes[k] for k in _chain(payment_intent, ledger_key) if k in writes]
        credit = writes.get(ledger_discount_key(payment_intent))
        root = writes.get(ledger_payment_key(payment_intent))
        held = {w.id: before.holds(w) for w in (*chain, *([credit] if credit else []))}
        if None in held.values():
            lag.unsure.add(invoice_id)
            continue
        latest = writes.get(ledger_key) if ledger_key else None
        if root is not None and not held[root.id]:
            # The write-back has not landed (restatements wait for it, or find nothing to
            # restate when it gave up): nothing of the payment is in the ledger.
            shown = 0
        elif latest is not None and held[latest.id]:
            shown = amount  # the reading holds the latest write: it says what we say
        else:
            landed = [w for w in chain if held[w.id]]
            shown = _stated(landed[-1], invoices).get(invoice_id, 0) if landed else 0
        # The discount's credit goes with the write-back where no write of its own was queued.
        credited = held[credit.id] if credit is not None else (root is not None and held[root.id])
        shown_discount = discount if credited else 0
        behind = (amount + discount) - (shown + shown_discount)
        if behind:
            lag.by[invoice_id] = lag.by.get(invoice_id, 0) + behind
    return lag


# What arbridge holds of an invoice: (ledger_balance_minor, unposted_minor, status).
Held = tuple[int, int, str]


def held_now(session: Session, invoice_ids: Iterable[int]) -> dict[int, Held]:
    wanted = list(invoice_ids)
    if not wanted:
        return {}
    rows = session.execute(
        select(
            Invoice.id, Invoice.ledger_balance_minor, Invoice.unposted_minor, Invoice.status
        ).where(among(session, Invoice.id, wanted))
    )
    return {i: (ledger, unposted, status) for i, ledger, unposted, status in rows}


def catch_up(session: Session, lag: Lag, kept: dict[int, Held]) -> None:
    """Bring the invoices just saved from the ledger's reading up to date with what arbridge did
    that the reading does not hold (see `Lag`): the lag becomes their `unposted_minor`, and
    their status follows the open balance. One read and one batched write."""
    wanted = set(lag.by) | set(kept)
    if not wanted:
        return
    rows = session.execute(
        select(Invoice.id, Invoice.ledger_balance_minor, Invoice.status, Invoice.total_minor).where(
            among(session, Invoice.id, wanted)
        )
    ).all()
    changes = []
    for invoice_id, ledger, status, total in rows:
        if status not in ("open", "paid"):
            continue  # voided or deleted in the ledger: its word stands
        if invoice_id in kept:
            ledger, unposted, status = kept[invoice_id]
        else:
            unposted = lag.by[invoice_id]
            status = "open" if open_balance(ledger, unposted, total) else "paid"
        changes.append(
            {
                "id": invoice_id,
                "ledger_balance_minor": ledger,
                "unposted_minor": unposted,
                "status": status,
            }
        )
    if changes:
        session.execute(update(Invoice), changes)
