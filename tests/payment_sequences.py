"""What Stripe may send about a payment after the money arrived (partial and full refunds,
disputes opened, won and lost, duplicates), as signed Stripe-shaped events through the real
ingestion and worker, and the one invariant that must hold after each of them: the ledger holds
exactly one live payment for the collected payment, equal to the net collected, or none.

Used against the demo ledger (tests/integration) and the QuickBooks fake (tests/contract)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import strategies as st
from sqlalchemy import func, select

from arbridge.connectors.stripe.simulated import sign
from arbridge.runtime import Runtime
from arbridge.services.payments.events import ingest_stripe
from arbridge.services.payments.webhook_secrets import webhook_secret
from arbridge.sync.model import Invoice, OutboxMessage, WebhookEvent
from arbridge.worker import drain

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
LEDGER_KINDS = ("ledger_payment", "ledger_reversal", "ledger_discount")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def deliver(rt: Runtime, event_type: str, obj: dict) -> dict:
    """Sign an event with the configured secret and hand it to the webhook ingestion."""
    event = {
        **fixture("event"),
        "id": f"evt_{secrets.token_hex(12)}",
        "type": event_type,
        "created": int(rt.clock.now().timestamp()),
        "data": {"object": obj},
    }
    redeliver(rt, event)
    return event


def redeliver(rt: Runtime, event: dict) -> None:
    """Stripe delivers the same event again (same id): stored once."""
    body = json.dumps(event).encode()
    header = sign(body, webhook_secret(rt), int(rt.clock.now().timestamp()))
    ingest_stripe(rt, body, header)


def settle(rt: Runtime, rounds: int = 14) -> None:
    """Run the worker until nothing is waiting, letting backoffs run out between rounds."""
    for _ in range(rounds):
        drain(rt)
        with rt.sessions() as s:
            waiting = s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(("pending", "sending")))
            ) + s.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status == "pending")
            )
        if not waiting:
            return
        rt.clock.advance(timedelta(hours=1))
    raise AssertionError("the worker never settled")


@dataclass
class Charge:
    """The test's model of the Stripe charge behind one Checkout payment."""

    company_id: int
    invoice_ids: Sequence[int]
    amount: int  # minor units
    currency: str = "usd"
    pi: str = field(default_factory=lambda: f"pi_seq_{secrets.token_hex(10)}")
    refunded: int = 0
    dispute: str | None = None  # None, "open", "won", "lost"
    dispute_id: str = field(default_factory=lambda: f"dp_seq_{secrets.token_hex(10)}")
    sent: list[dict] = field(default_factory=list, repr=False)

    owed: int | None = None  # what the invoices owed; the rest of `amount` is an overpayment

    @property
    def net(self) -> int:
        """What the business keeps towards the invoices, and so what the ledger must show as
        paid (refunds take back the overpayment first)."""
        if self.dispute in ("open", "lost"):
            return 0
        owed = self.amount if self.owed is None else self.owed
        return min(owed, self.amount - self.refunded)

    def session(self) -> dict:
        return {
            **fixture("checkout_session"),
            "id": f"cs_seq_{self.pi[7:]}",
            "status": "complete",
            "payment_status": "paid",
            "payment_intent": self.pi,
            "amount_total": self.amount,
            "currency": self.currency,
            "payment_method_types": ["card"],
            "metadata": {
                "arbridge_company": str(self.company_id),
                "arbridge_invoices": ",".join(str(i) for i in self.invoice_ids),
                "arbridge_discount": "0",
            },
        }

    def charge(self) -> dict:
        return {
            **fixture("charge"),
            "id": f"ch_seq_{self.pi[7:]}",
            "amount": self.amount,
            "amount_captured": self.amount,
            "amount_refunded": self.refunded,
            "currency": self.currency,
            "payment_intent": self.pi,
            "paid": True,
            "refunded": self.refunded >= self.amount,
            "disputed": self.dispute is not None,
            "status": "succeeded",
        }

    def dispute_obj(self, status: str) -> dict:
        return {
            **fixture("dispute"),
            "id": self.dispute_id,
            "amount": self.amount - self.refunded,
            "charge": f"ch_seq_{self.pi[7:]}",
            "currency": self.currency,
            "payment_intent": self.pi,
            "reason": "fraudulent",
            "status": status,
            "is_charge_refundable": False,
        }

    # -- what can happen, as Stripe allows it ------------------------------------------------

    def pay(self, rt: Runtime) -> None:
        self.sent.append(deliver(rt, "checkout.session.completed", self.session()))

    def refund(self, rt: Runtime, minor: int) -> bool:
        if self.refunded >= self.amount or self.dispute in ("open", "lost"):
            return False  # nothing left, or a disputed charge cannot be refunded
        self.refunded += max(1, min(minor, self.amount - self.refunded))
        self.sent.append(deliver(rt, "charge.refunded", self.charge()))
        return True

    def open_dispute(self, rt: Runtime) -> bool:
        if self.dispute is not None or self.refunded >= self.amount:
            return False  # one dispute per charge
        self.dispute = "open"
        self.sent.append(deliver(rt, "charge.dispute.created", self.dispute_obj("needs_response")))
        return True

    def win(self, rt: Runtime, reinstated_first: bool) -> bool:
        if self.dispute != "open":
            return False
        self.dispute = "won"
        events = [
            ("charge.dispute.funds_reinstated", self.dispute_obj("won")),
            ("charge.dispute.closed", self.dispute_obj("won")),
        ]
        for kind, obj in events if reinstated_first else events[::-1]:
            self.sent.append(deliver(rt, kind, obj))
        return True

    def lose(self, rt: Runtime) -> bool:
        if self.dispute != "open":
            return False
        self.dispute = "lost"
        self.sent.append(deliver(rt, "charge.dispute.closed", self.dispute_obj("lost")))
        return True


STEPS = ("refund", "refund_all", "dispute", "lose", "win")


def steps(kinds: Sequence[str] = STEPS) -> st.SearchStrategy:
    """A sequence of (what, a number for amounts and orders, deliver the last event twice?,
    run the worker now?)."""
    return st.lists(
        st.tuples(
            st.sampled_from(kinds),
            st.integers(min_value=1, max_value=10**7),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=7,
    )


def play(
    rt: Runtime,
    charge: Charge,
    sequence: Sequence[tuple[str, int, bool, bool]],
    check: Callable[[Charge], None],
) -> None:
    """Pay, then play the sequence; after each step the worker settles and `check` runs."""
    charge.pay(rt)
    settle(rt)
    check(charge)
    for what, number, twice, now in sequence:
        if what == "refund":
            happened = charge.refund(rt, 1 + number % max(1, charge.amount - charge.refunded))
        elif what == "refund_all":
            happened = charge.refund(rt, charge.amount)
        elif what == "dispute":
            happened = charge.open_dispute(rt)
        elif what == "win":
            happened = charge.win(rt, reinstated_first=number % 2 == 0)
        else:
            happened = charge.lose(rt)
        if happened and twice:
            redeliver(rt, charge.sent[-1])
        if now or happened:
            settle(rt)
            check(charge)
    settle(rt)
    check(charge)


def check_ours(rt: Runtime, charge: Charge, before: dict[int, int], strict: bool = True) -> None:
    """arbridge's invoices show exactly the net as paid, and no ledger write gave up."""
    with rt.sessions() as s:
        now = {i: s.get(Invoice, i).open_balance_minor for i in charge.invoice_ids}
        gave_up = s.scalars(
            select(OutboxMessage.key).where(
                OutboxMessage.kind.in_(LEDGER_KINDS),
                OutboxMessage.status.in_(("failed", "dead")),
            )
        ).all()
    assert gave_up == [] or not strict
    assert sum(before.values()) - sum(now.values()) == charge.net, (before, now, charge)


def one_live(amounts: list[Decimal], charge: Charge) -> None:
    expected = Decimal(charge.net).scaleb(-2)
    if charge.net == 0:
        assert amounts == [], (amounts, charge)
    else:
        assert amounts == [expected], (amounts, charge)
