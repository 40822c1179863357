"""The simulated checkout and its settlement exist only on a demo install (no Stripe key): with
a Stripe key configured, real Stripe pays and the simulated pages are not there at all."""

from __future__ import annotations

from datetime import timedelta

from arbridge.sync.model import Invoice
from arbridge.web import create_app
from arbridge.worker import drain
from tests.web.conftest import assert_friendly_error, csrf_token
from tests.web.test_payments_web import _finish, _to_checkout

KEY = "sk_test_install_key"


def _simulated_rules(app) -> list[str]:
    return [r.rule for r in app.url_map.iter_rules() if "simulated" in r.rule]


def test_a_demo_install_serves_the_simulated_checkout(app, client, rt, demo_company):
    assert set(_simulated_rules(app)) == {"/simulated-checkout/<session_id>"}
    _token, checkout = _to_checkout(client, rt, demo_company)
    assert checkout.startswith("/simulated-checkout/cs_sim_")
    assert client.get(checkout).status_code == 200


def test_with_a_stripe_key_the_simulated_checkout_does_not_exist(app, client, rt, demo_company):
    _token, checkout = _to_checkout(client, rt, demo_company)  # made while it was a demo
    csrf = csrf_token(client.get(checkout).data)
    rt.settings = rt.settings.with_(stripe_secret_key=KEY)
    production = create_app(rt, TESTING=True)
    assert _simulated_rules(production) == []
    for c in (production.test_client(), client):  # a new app, and a key set while running
        for response in (
            c.get(checkout),
            c.post(checkout, data={"csrf_token": csrf, "method": "card", "outcome": "succeed"}),
        ):
            assert response.status_code == 404
            assert_friendly_error(response.get_data(as_text=True))


def _pending_bank_payment(client, rt, demo_company) -> int:
    _token, checkout = _to_checkout(client, rt, demo_company)
    _finish(client, rt, checkout, "us_bank_account")
    drain(rt)
    with rt.sessions() as s:
        pending = [i.id for i in s.query(Invoice).filter(Invoice.payment_pending.is_(True))]
    assert len(pending) == 1
    return pending[0]


def test_simulated_bank_payments_clear_on_a_demo_install(client, rt, demo_company):
    invoice_id = _pending_bank_payment(client, rt, demo_company)
    rt.clock.advance(timedelta(minutes=5))
    drain(rt)
    with rt.sessions() as s:
        assert s.get(Invoice, invoice_id).status == "paid"


def test_with_a_stripe_key_simulated_settlement_does_not_run(client, rt, demo_company):
    invoice_id = _pending_bank_payment(client, rt, demo_company)
    state = (rt.settings.instance_path / "simulated-stripe.json").read_text()
    rt.settings = rt.settings.with_(stripe_secret_key=KEY)
    rt.clock.advance(timedelta(minutes=5))
    drain(rt)
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv.status == "open" and inv.payment_pending
    assert (rt.settings.instance_path / "simulated-stripe.json").read_text() == state
