"""Upgrading a database whose payments were refunded under the old reversal keys: each payment
learns its latest ledger write and its overpayment refund, so the next restatement voids the
right ledger payment and the refund's state shows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sqlalchemy import select, text, update

from arbridge.sync.db import transaction
from arbridge.sync.model import CollectedPayment
from arbridge.sync.outbox import enqueue

VERSIONS = Path(__file__).resolve().parents[2] / "src/arbridge/sync/migrations/versions"


def _backfill():
    [path] = VERSIONS.glob("*_payment_restatements.py")
    spec = importlib.util.spec_from_file_location("payment_restatements", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BACKFILL


def test_payments_refunded_before_the_upgrade_know_their_latest_ledger_write(rt, demo_company):
    with transaction(rt.sessions) as s:
        for pi in ("pi_old_1", "pi_old_10", "pi_never"):
            s.add(
                CollectedPayment(
                    company_id=demo_company.id,
                    payment_intent_id=pi,
                    currency="USD",
                    amount_minor=10000,
                    discount_minor=0,
                    unapplied_minor=0,
                    refunded_minor=3000,
                    status="succeeded",
                    created_at=rt.clock.now(),
                    updated_at=rt.clock.now(),
                )
            )
        for kind, key in [
            ("ledger_payment", "ledger_payment:pi_old_1"),
            ("ledger_payment", "ledger_payment:pi_old_10"),
            ("ledger_reversal", "ledger_reversal:pi_old_1:1000:refunded"),
            ("ledger_reversal", "ledger_reversal:pi_old_10:2000:refunded"),
            ("ledger_reversal", "ledger_reversal:pi_old_1:3000:refunded"),
            ("stripe_refund", "stripe_refund:pi_old_10:overpayment"),
        ]:
            enqueue(s, rt.clock, company_id=demo_company.id, kind=kind, key=key, payload={})
        s.execute(update(CollectedPayment).values(ledger_key=None, refund_key=None))
    with rt.engine.begin() as conn:
        for statement in _backfill():
            conn.execute(text(statement))
    with rt.sessions() as s:
        keys = {
            pi: (ledger, refund)
            for pi, ledger, refund in s.execute(
                select(
                    CollectedPayment.payment_intent_id,
                    CollectedPayment.ledger_key,
                    CollectedPayment.refund_key,
                )
            )
        }
    assert keys == {
        "pi_old_1": ("ledger_reversal:pi_old_1:3000:refunded", None),
        "pi_old_10": (
            "ledger_reversal:pi_old_10:2000:refunded",
            "stripe_refund:pi_old_10:overpayment",
        ),
        "pi_never": (None, None),
    }
