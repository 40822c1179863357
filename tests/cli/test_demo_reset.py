"""`arbridge demo --reset` and `--port`: the ledger rebuilt from scratch, and the links of a demo served elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select

from arbridge.sync.model import Invoice, Payment
from tests.cli.conftest import Instance, fresh_instance


@pytest.fixture
def demo(tmp_path) -> Iterator[Instance]:
    with fresh_instance(tmp_path / "demo") as instance:
        instance.ok("demo", "--no-serve")
        yield instance


def report(instance: Instance) -> dict:
    return json.loads(instance.ok("report", "--company", "demo", "--format", "json"))


def test_a_reset_demo_kept_the_invoices_the_old_ledger_had_and_the_new_one_has_not(demo):
    fresh = report(demo)
    with demo.runtime() as rt:
        ledger = rt.demo_ledger("demobooks-acme")
        customer = ledger.read()["Customer"][0]["id"]
        # What a day of the demo adds to its ledger: a late fee's invoice, and a payment written
        # back against an open invoice.
        extra = ledger.add_invoice(
            invoiceNumber="LF-0001",
            contactId=customer,
            date="2026-11-01",
            dueDate="2026-11-15",
            currencyCode="USD",
            currencyRate="1",
            total="25.00",
            lineItems=[],
        )
    demo.ok("sync", "--company", "demo")
    assert Decimal(report(demo)["open_balance"]) == Decimal(fresh["open_balance"]) + 25

    demo.ok("demo", "--no-serve", "--reset")

    after = report(demo)
    assert after["open_invoices"] == fresh["open_invoices"]
    assert after["open_balance"] == fresh["open_balance"]
    assert after["aging"] == fresh["aging"]
    with demo.runtime() as rt, rt.sessions() as s:
        gone = s.scalar(select(Invoice).where(Invoice.source_id == extra))
        assert gone is not None and gone.status == "deleted"
        # The rebuilt ledger's own records are all there, none of them deleted.
        ids = {r["id"] for r in rt.demo_ledger("demobooks-acme").read()["Payment"]}
        stored = dict(s.execute(select(Payment.source_id, Payment.status)).tuples().all())
        assert ids <= set(stored)
        assert all(stored[i] != "deleted" for i in ids)


def test_a_damaged_demo_ledger_is_rebuilt_by_a_reset_as_its_error_says(demo):
    fresh = report(demo)
    with demo.runtime() as rt:
        path = rt.demo_ledger("demobooks-acme").path
    path.write_text("{ not json")

    demo.ok("demo", "--no-serve", "--reset")

    assert report(demo) == fresh


def test_links_made_after_a_demo_on_another_port_led_to_port_5000(tmp_path):
    """`arbridge demo --port 5123` printed its own links with 5123, but what the CLI and the
    worker did afterwards (a sign-in link, the reminders `clock advance` queues) linked to 5000,
    where nothing listens."""
    with fresh_instance(tmp_path / "ported") as instance:
        out = instance.ok("demo", "--no-serve", "--port", "5123")
        assert "http://127.0.0.1:5123/sign-in/" in out
        link = instance.ok("companies", "sign-in-link", "demo")
        assert link.startswith("http://127.0.0.1:5123/sign-in/"), link
        with instance.runtime() as rt:
            assert rt.settings.base_url == "http://127.0.0.1:5123"
        # The address the install is given wins, as ever.
        given = instance.ok(
            "companies", "sign-in-link", "demo", ARBRIDGE_BASE_URL="https://ar.example.com"
        )
        assert given.startswith("https://ar.example.com/sign-in/"), given
