"""`arbridge plans create|list` and `arbridge clock advance` on a demo instance, as a newcomer
uses them: offer a plan for an invoice, take it through its link (the simulated checkout), move
the demo's clock and watch the installments charge; and the refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from arbridge.services.payments.checkout import handle_checkout_return
from arbridge.services.payments.plans import agree_to_offer
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.sync.model import Invoice, Plan
from tests.cli.conftest import Instance, assert_one_sentence_error, fresh_instance

LINK = re.compile(r"^  (http://127\.0\.0\.1:5000/pay/([A-Za-z0-9_-]{32,})/plan)$", re.MULTILINE)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Instance]:
    with fresh_instance(tmp_path_factory.mktemp("plans-demo")) as instance:
        instance.ok("demo", "--no-serve")
        yield instance


def an_open_invoice(instance: Instance, minimum_minor: int = 30000) -> Invoice:
    with instance.runtime() as rt, rt.sessions() as s:
        inv = s.scalars(
            select(Invoice)
            .where(Invoice.is_open, Invoice.currency == "USD", Invoice.total_minor >= minimum_minor)
            .where(Invoice.ledger_balance_minor == Invoice.total_minor)
            .order_by(Invoice.id)
        ).first()
        s.expunge(inv)
        return inv


def test_a_plan_made_on_the_command_line_charges_as_the_demo_clock_moves(demo: Instance):
    inv = an_open_invoice(demo)
    out = demo.ok(
        "plans",
        "create",
        "--company",
        "demo",
        "--invoice",
        inv.number,
        "--installments",
        "3",
        "--every",
        "month",
        "--deposit-percent",
        "10",
    )
    assert "deposit" in out and "installment 3" in out
    assert "cents left over are added to the first installment" in out
    [(_link, token)] = LINK.findall(out)
    listed = json.loads(demo.ok("plans", "list", "--company", "demo", "--format", "json"))
    [plan] = [p for p in listed["plans"] if p["invoices"] == [inv.number]]
    assert plan["status"] == "offered"
    amounts = [Decimal(i["amount"]) for i in plan["installments"]]
    assert sum(amounts) == Decimal(inv.total_minor) / 100  # to the cent
    assert [i["number"] for i in plan["installments"]] == [0, 1, 2, 3]
    # The customer agrees and pays the deposit through the link (the simulated checkout).
    with demo.runtime() as rt:
        with rt.sessions() as s:
            version = s.get(Plan, plan["id"]).agreement_version
        url = agree_to_offer(
            rt, token, plan["id"], agreed=True, version=version, ip="198.51.100.7", user_agent="t"
        )
        back = simulated_stripe(rt).complete(url.rsplit("/", 1)[1], "card", "succeed", "succeeds")
        assert handle_checkout_return(rt, token, back.split("session_id=")[1]) == "paid"
    listed = json.loads(demo.ok("plans", "list", "--company", "demo", "--format", "json"))
    [plan] = [p for p in listed["plans"] if p["id"] == plan["id"]]
    assert plan["status"] == "current"
    assert [i["status"] for i in plan["installments"]] == [
        "paid",
        "scheduled",
        "scheduled",
        "scheduled",
    ]
    assert plan["installments"][0]["payment_reference"].startswith("pi_sim_")
    # Each month of the demo's clock charges the next installment, and only that one.
    for month in range(1, 4):
        out = demo.ok("clock", "advance", "--days", "31")
        assert "moved forward 31 days: it is now" in out and " CST (" in out
        listed = json.loads(demo.ok("plans", "list", "--company", "demo", "--format", "json"))
        [plan] = [p for p in listed["plans"] if p["id"] == plan["id"]]
        statuses = [i["status"] for i in plan["installments"]]
        assert statuses == ["paid"] * (month + 1) + ["scheduled"] * (3 - month), statuses
    assert plan["status"] == "completed"
    charged = sum(Decimal(i["amount"]) for i in plan["installments"])
    assert charged == Decimal(inv.total_minor) / 100
    with demo.runtime() as rt, rt.sessions() as s:
        assert s.get(Invoice, inv.id).open_balance_minor == 0
    table = demo.ok("plans", "list", "--company", "demo")
    assert f"Plan {plan['id']} · completed" in table


def test_plans_create_refuses_an_unknown_invoice_and_a_bad_count(demo: Instance):
    result = demo.run(
        "plans",
        "create",
        "--company",
        "demo",
        "--invoice",
        "NOPE-1",
        "--installments",
        "3",
        "--every",
        "month",
    )
    assert_one_sentence_error(result, "no such invoice")
    result = demo.run(
        "plans",
        "create",
        "--company",
        "demo",
        "--invoice",
        "INV-1001",
        "--installments",
        "０",
        "--every",
        "month",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_real_install_refuses_to_move_its_clock(tmp_path):
    with fresh_instance(tmp_path) as instance:
        instance.ok("init")
        result = instance.run("clock", "advance", "--days", "1")
        assert_one_sentence_error(result, "only in the demo")
