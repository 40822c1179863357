"""The demo ledger and the simulated Stripe's state are readable by the owner only, like the
database and the secret file (issue 8, low)."""

from __future__ import annotations

import stat

from sqlalchemy import select

from arbridge.runtime import demo_ledger_path
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice
from arbridge.sync.store import issue_pay_token
from tests.web.conftest import csrf_token


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_demo_ledger_and_simulated_stripe_files_are_0600(rt, client, demo_company):
    ledgers = list(demo_ledger_path(rt.settings.instance_path, "x").parent.glob("*.json"))
    assert ledgers
    assert {p.name: _mode(p) for p in ledgers} == {p.name: 0o600 for p in ledgers}
    with transaction(rt.sessions) as s:
        inv = s.scalars(
            select(Invoice).where(Invoice.company_id == demo_company.id, Invoice.status == "open")
        ).first()
        token = issue_pay_token(s, rt.clock, inv)
    page = client.get(f"/pay/{token}")
    assert client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    state = rt.settings.instance_path / "simulated-stripe.json"
    assert state.exists()
    assert _mode(state) == 0o600
    # A change to the ledger (a payment written back) keeps it private.
    with rt.demo_ledger(ledgers[0].stem).change() as ledger_state:
        ledger_state.setdefault("touched", 1)
    assert {_mode(p) for p in ledgers} == {0o600}
    # Their lock files too: nothing of the demo's is left readable by others.
    locks = [*ledgers[0].parent.glob("*.lock"), *rt.settings.instance_path.glob("*.lock")]
    assert locks
    assert {p.name: _mode(p) for p in locks} == {p.name: 0o600 for p in locks}
