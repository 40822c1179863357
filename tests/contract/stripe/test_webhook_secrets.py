"""A business that pastes its own Stripe key gets its own webhook endpoint and signing secret:
created through Stripe's API when the key allows it, pasted by the owner otherwise. Each delivery
is trusted only through the secret that signed it, which says whose it is. Stripe is faked at
HTTP level with `responses`, with Stripe's own example objects."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
from sqlalchemy import select

from arbridge.connectors.stripe.simulated import sign
from arbridge.crypto import Keyring, new_key
from arbridge.services.payments.events import STRIPE_EVENTS
from arbridge.services.payments.webhook_secrets import install_webhook_secrets
from arbridge.sync.db import transaction
from arbridge.sync.model import CollectedPayment, Connection, Invoice, WebhookEvent
from arbridge.sync.store import create_company, open_invoices, rotate_secrets
from arbridge.worker import drain
from tests.web.conftest import csrf_token, parse, sign_in

API = "http://stripe.test"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"
WHSEC = "whsec_4f0c3b2a1d9e8f7a6b5c4d3e2f1a0b9c"
PERMISSION_DENIED = {
    "error": {
        "type": "invalid_request_error",
        "message": "The provided key 'rk_test_51Re****Key' does not have the required permissions "
        "for this endpoint on account 'acct_1PgafTB7WZ01zgkW'. Having the 'rak_webhook_write' "
        "permission would allow this request to continue.",
    }
}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def own_key_rt(rt, settings):
    """A self-hosted install where each business pastes its own key: no install-wide key, no
    install-wide signing secret, and Stripe faked."""
    rt.settings = settings.with_(stripe_api_base=API, base_url="https://ar.example.com")
    return rt


@pytest.fixture
def client(app):
    """The test client speaking https, as the base URL does (secure cookies)."""
    c = app.test_client()
    c.environ_base["wsgi.url_scheme"] = "https"
    c.environ_base["HTTP_REFERER"] = "https://localhost/"  # Flask-WTF's strict https check
    return c


def fake_account(account_id: str) -> None:
    responses.get(
        f"{API}/v1/account",
        json={
            **fixture("account"),
            "id": account_id,
            "capabilities": {"card_payments": "active", "us_bank_account_ach_payments": "active"},
        },
    )


def form(body: str) -> dict[str, list[str]]:
    """Stripe's form encoding, with `enabled_events[0]`, `[1]`... gathered into one list."""
    sent = parse_qs(body)
    sent["enabled_events"] = [
        v[0] for k, v in sorted(sent.items()) if k.startswith("enabled_events[")
    ]
    return sent


def fake_endpoint_created(endpoint_id: str = "we_1Pgc6yB7WZ01zgkWzAudq4eU", secret: str = WHSEC):
    responses.get(
        f"{API}/v1/webhook_endpoints",
        json={"object": "list", "data": [], "has_more": False, "url": "/v1/webhook_endpoints"},
    )

    def created(request):
        sent = form(request.body)
        return (
            200,
            {},
            json.dumps(
                {
                    **fixture("webhook_endpoint"),
                    "id": endpoint_id,
                    "url": sent["url"][0],
                    "enabled_events": sent["enabled_events"],
                    "metadata": {"arbridge_company": sent["metadata[arbridge_company]"][0]},
                    "secret": secret,
                }
            ),
        )

    responses.add_callback(responses.POST, f"{API}/v1/webhook_endpoints", callback=created)


def fake_endpoint_forbidden() -> None:
    responses.get(f"{API}/v1/webhook_endpoints", status=403, json=PERMISSION_DENIED)
    responses.post(f"{API}/v1/webhook_endpoints", status=403, json=PERMISSION_DENIED)


def settings_doc(client, slug="demo"):
    page = client.get(f"/c/{slug}/settings")
    assert page.status_code == 200
    return page, parse(page.data)


def connect_key(client, key: str, slug="demo"):
    page, _ = settings_doc(client, slug)
    return client.post(
        f"/c/{slug}/stripe/key", data={"csrf_token": csrf_token(page.data), "api_key": key}
    )


def stripe_conn(rt, company_id) -> Connection:
    with rt.sessions() as s:
        return s.scalar(
            select(Connection).where(
                Connection.provider == "stripe", Connection.company_id == company_id
            )
        )


def paid_session(rt, company, invoice, pi: str) -> dict:
    return {
        **fixture("checkout_session"),
        "id": f"cs_{pi}",
        "payment_intent": pi,
        "amount_total": invoice.open_balance_minor,
        "currency": "usd",
        "status": "complete",
        "payment_status": "paid",
        "payment_method_types": ["card"],
        "metadata": {"arbridge_company": str(company.id), "arbridge_invoices": str(invoice.id)},
    }


def deliver(client, rt, event_type, obj, event_id, secret):
    event = {
        **fixture("event"),
        "id": event_id,
        "type": event_type,
        "created": int(rt.clock.now().timestamp()),
        "data": {"object": obj},
    }
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={
            "Stripe-Signature": sign(body, secret, int(rt.clock.now().timestamp())),
            "Content-Type": "application/json",
        },
    )


def usd_invoice(rt, company_id) -> Invoice:
    with rt.sessions() as s:
        inv = next(i for i in open_invoices(s, company_id) if i.currency == "USD")
        s.expunge(inv)
        return inv


@responses.activate
def test_business_with_own_key_receives_webhooks_signed_with_its_endpoint_secret(
    own_key_rt, client, demo_company
):
    rt = own_key_rt
    sign_in(client, rt, demo_company)
    fake_account("acct_1PgafTB7WZ01zgkW")
    fake_endpoint_created()

    assert connect_key(client, "sk_test_51OwnKey").status_code == 302

    [create] = [c for c in responses.calls if c.request.method == "POST"]
    sent = form(create.request.body)
    assert sent["url"] == ["https://ar.example.com/webhooks/stripe"]
    assert sorted(sent["enabled_events"]) == sorted(STRIPE_EVENTS)
    assert create.request.headers["Idempotency-Key"].startswith("arbridge:webhook-endpoint:")
    assert create.request.headers["Authorization"] == "Bearer sk_test_51OwnKey"
    conn = stripe_conn(rt, demo_company.id)
    assert conn.webhook_endpoint_id == "we_1Pgc6yB7WZ01zgkWzAudq4eU"
    assert WHSEC not in conn.webhook_secret_encrypted  # encrypted at rest
    assert rt.keyring.decrypt(conn.webhook_secret_encrypted) == WHSEC

    inv = usd_invoice(rt, demo_company.id)
    session = paid_session(rt, demo_company, inv, "pi_own_key_1")
    assert (
        deliver(
            client, rt, "checkout.session.completed", session, "evt_o1", "whsec_other"
        ).status_code
        == 400
    )
    assert (
        deliver(client, rt, "checkout.session.completed", session, "evt_o1", WHSEC).status_code
        == 200
    )
    drain(rt)
    with rt.sessions() as s:
        assert s.get(Invoice, inv.id).status == "paid"
        event = s.scalar(select(WebhookEvent))
    assert event.company_id == demo_company.id and event.status == "processed"
    assert stripe_conn(rt, demo_company.id).webhook_last_event_at == rt.clock.now()


@responses.activate
def test_restricted_key_that_cannot_create_endpoints_lets_the_owner_paste_the_secret(
    own_key_rt, client, demo_company
):
    rt = own_key_rt
    sign_in(client, rt, demo_company)
    fake_account("acct_1PgafTB7WZ01zgkW")
    fake_endpoint_forbidden()
    assert connect_key(client, "rk_test_51Restricted").status_code == 302
    conn = stripe_conn(rt, demo_company.id)
    assert conn.status == "active" and conn.webhook_secret_encrypted is None

    page, doc = settings_doc(client)
    missing = doc.by_id("stripe-webhook-missing")
    assert missing is not None and "https://ar.example.com/webhooks/stripe" in missing.text
    assert "checkout.session.completed" in missing.text

    bad = client.post(
        "/c/demo/stripe/webhook-secret",
        data={"csrf_token": csrf_token(page.data), "webhook_secret": "sk_test_wrong_thing"},
        follow_redirects=True,
    )
    assert b"does not look like a Stripe signing secret" in bad.data
    assert stripe_conn(rt, demo_company.id).webhook_secret_encrypted is None
    client.post(
        "/c/demo/stripe/webhook-secret",
        data={"csrf_token": csrf_token(page.data), "webhook_secret": f"  {WHSEC} "},
    )
    conn = stripe_conn(rt, demo_company.id)
    assert rt.keyring.decrypt(conn.webhook_secret_encrypted) == WHSEC
    assert conn.webhook_endpoint_id is None  # the owner's endpoint, not ours to delete

    # Events are not arriving yet: the owner is told, with where to look.
    _, doc = settings_doc(client)
    assert doc.by_id("stripe-webhook-missing") is None
    assert "No event from Stripe has arrived yet" in doc.by_id("stripe-webhook-none").text

    inv = usd_invoice(rt, demo_company.id)
    session = paid_session(rt, demo_company, inv, "pi_pasted_1")
    rt.clock.advance(timedelta(minutes=5))
    assert (
        deliver(client, rt, "checkout.session.completed", session, "evt_p1", WHSEC).status_code
        == 200
    )
    _, doc = settings_doc(client)
    assert doc.by_id("stripe-webhook-none") is None
    last = doc.by_id("stripe-webhook-last")
    assert "Last event received: Nov 24, 2026, 09:05 CST" in last.text
    drain(rt)
    with rt.sessions() as s:
        assert s.get(Invoice, inv.id).status == "paid"


@pytest.fixture
def second_business(own_key_rt, demo_company):
    """Another business on the same install, with its own key and its own signing secret."""
    rt = own_key_rt
    with transaction(rt.sessions) as s:
        other = create_company(
            s,
            rt.clock,
            name="Borealis",
            slug="borealis",
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="o@borealis.example",
        )
        s.add(
            Connection(
                company_id=other.id,
                provider="stripe",
                tenant_id="acct_borealis",
                status="active",
                credentials_encrypted=rt.keyring.encrypt(json.dumps({"api_key": "rk_test_b"})),
                webhook_secret_encrypted=rt.keyring.encrypt("whsec_borealis_own"),
                created_at=rt.clock.now(),
            )
        )
        s.add(
            Connection(
                company_id=demo_company.id,
                provider="stripe",
                tenant_id="acct_acme",
                status="active",
                credentials_encrypted=rt.keyring.encrypt(json.dumps({"api_key": "rk_test_a"})),
                webhook_secret_encrypted=rt.keyring.encrypt(WHSEC),
                created_at=rt.clock.now(),
            )
        )
        return other.id


def test_one_business_cannot_sign_events_for_another(
    own_key_rt, client, demo_company, second_business
):
    """Borealis knows its own signing secret (it pasted it). An event it signs that names Acme's
    company in its metadata, or Acme's PaymentIntent in a refund, changes nothing of Acme's."""
    rt = own_key_rt
    inv = usd_invoice(rt, demo_company.id)
    forged = paid_session(rt, demo_company, inv, "pi_forged")
    assert (
        deliver(
            client, rt, "checkout.session.completed", forged, "evt_f1", "whsec_borealis_own"
        ).status_code
        == 200
    )
    drain(rt)
    with rt.sessions() as s:
        event = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_f1"))
        assert event.company_id == second_business and event.status == "failed"
        assert s.get(Invoice, inv.id).status == "open"
        assert s.scalar(select(CollectedPayment)) is None

    # Acme's real payment, signed by Acme's endpoint; then Borealis "refunds" it.
    real = paid_session(rt, demo_company, inv, "pi_acme_real")
    assert (
        deliver(client, rt, "checkout.session.completed", real, "evt_a1", WHSEC).status_code == 200
    )
    drain(rt)
    charge = {
        **fixture("charge"),
        "payment_intent": "pi_acme_real",
        "amount": inv.open_balance_minor,
        "amount_refunded": inv.open_balance_minor,
        "refunded": True,
        "currency": "usd",
    }
    assert (
        deliver(client, rt, "charge.refunded", charge, "evt_f2", "whsec_borealis_own").status_code
        == 200
    )
    drain(rt)
    with rt.sessions() as s:
        assert s.scalar(select(CollectedPayment.status)) == "succeeded"
        assert s.get(Invoice, inv.id).status == "paid"
        assert (
            s.scalar(select(WebhookEvent.status).where(WebhookEvent.event_id == "evt_f2"))
            == "failed"
        )


def test_a_business_naming_itself_settled_another_businesss_pending_bank_payment(
    own_key_rt, client, demo_company, second_business
):
    """Borealis signs, with its own secret, Acme's bank debit "succeeded", naming itself in the
    metadata (so the event's company and the metadata agree) and Acme's PaymentIntent (printed on
    Acme's customer's receipt). The payment was found by its PaymentIntent alone: Acme's invoice
    went paid, and its payment into Acme's ledger, while the debit was still clearing."""
    rt = own_key_rt
    inv = usd_invoice(rt, demo_company.id)
    clearing = {
        **paid_session(rt, demo_company, inv, "pi_acme_bank"),
        "payment_status": "unpaid",
        "payment_method_types": ["us_bank_account"],
    }
    assert (
        deliver(client, rt, "checkout.session.completed", clearing, "evt_a1", WHSEC).status_code
        == 200
    )
    drain(rt)
    with rt.sessions() as s:
        assert s.scalar(select(CollectedPayment.status)) == "pending"
    forged = {
        **clearing,
        "payment_status": "paid",
        "metadata": {"arbridge_company": str(second_business), "arbridge_invoices": str(inv.id)},
    }
    assert (
        deliver(
            client,
            rt,
            "checkout.session.async_payment_succeeded",
            forged,
            "evt_f1",
            "whsec_borealis_own",
        ).status_code
        == 200
    )
    drain(rt)
    with rt.sessions() as s:
        event = s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_f1"))
        assert event.status == "failed" and "another company's payment" in event.last_error
        payment = s.scalar(select(CollectedPayment))
        assert payment.status == "pending" and payment.company_id == demo_company.id
        assert s.get(Invoice, inv.id).status == "open"


@responses.activate
def test_disconnecting_deletes_the_endpoint_arbridge_created(own_key_rt, client, demo_company):
    rt = own_key_rt
    sign_in(client, rt, demo_company)
    fake_account("acct_1PgafTB7WZ01zgkW")
    fake_endpoint_created("we_made_by_arbridge")
    connect_key(client, "sk_test_51OwnKey")
    responses.delete(
        f"{API}/v1/webhook_endpoints/we_made_by_arbridge",
        json={**fixture("deleted_webhook_endpoint"), "id": "we_made_by_arbridge"},
    )
    page, _ = settings_doc(client)
    client.post("/c/demo/stripe/disconnect", data={"csrf_token": csrf_token(page.data)})
    [delete] = [c for c in responses.calls if c.request.method == "DELETE"]
    assert delete.request.headers["Authorization"] == "Bearer sk_test_51OwnKey"
    assert (
        delete.request.headers["Idempotency-Key"]
        == "arbridge:webhook-endpoint-delete:we_made_by_arbridge"
    )
    conn = stripe_conn(rt, demo_company.id)
    assert conn.status == "disconnected"
    assert conn.webhook_endpoint_id is None and conn.webhook_secret_encrypted is None
    # Its events are no longer accepted.
    inv = usd_invoice(rt, demo_company.id)
    session = paid_session(rt, demo_company, inv, "pi_after")
    assert (
        deliver(client, rt, "checkout.session.completed", session, "evt_d1", WHSEC).status_code
        == 400
    )


@responses.activate
def test_a_failed_endpoint_deletion_is_told_to_the_owner(own_key_rt, client, demo_company):
    rt = own_key_rt
    sign_in(client, rt, demo_company)
    fake_account("acct_1PgafTB7WZ01zgkW")
    fake_endpoint_created("we_made_by_arbridge")
    connect_key(client, "sk_test_51OwnKey")
    responses.delete(
        f"{API}/v1/webhook_endpoints/we_made_by_arbridge",
        status=401,
        json={"error": {"type": "invalid_request_error", "message": "Expired API Key provided"}},
    )
    page, _ = settings_doc(client)
    done = client.post(
        "/c/demo/stripe/disconnect",
        data={"csrf_token": csrf_token(page.data)},
        follow_redirects=True,
    )
    assert b"Stripe disconnected" in done.data
    assert b"we_made_by_arbridge could not be deleted" in done.data
    assert stripe_conn(rt, demo_company.id).status == "disconnected"


def test_the_signing_secrets_are_rotated_with_the_keys(own_key_rt, demo_company, second_business):
    rt = own_key_rt
    newer = new_key()
    rotated = Keyring([newer, *rt.settings.encryption_keys])
    with transaction(rt.sessions) as s:
        # The demo ledger's credentials, two Stripe keys and their two signing secrets.
        assert rotate_secrets(s, rotated) == 5
    conn = stripe_conn(rt, demo_company.id)
    assert Keyring([newer]).decrypt(conn.webhook_secret_encrypted) == WHSEC


def test_connect_mode_keeps_the_install_secret_and_shows_events_arriving(
    rt, settings, client, demo_company
):
    rt.settings = settings.with_(
        stripe_connect=True,
        stripe_secret_key="sk_test_platform",
        stripe_webhook_secret="whsec_platform",
    )
    with transaction(rt.sessions) as s:
        s.add(
            Connection(
                company_id=demo_company.id,
                provider="stripe",
                tenant_id="acct_connected",
                status="active",
                created_at=rt.clock.now(),
            )
        )
    event = {
        **fixture("event"),
        "id": "evt_c1",
        "type": "customer.created",
        "account": "acct_connected",
        "created": int(rt.clock.now().timestamp()),
    }
    body = json.dumps(event).encode()
    header = sign(body, "whsec_platform", int(rt.clock.now().timestamp()))
    assert (
        client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header}).status_code
        == 200
    )
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.company_id)) == demo_company.id
    assert stripe_conn(rt, demo_company.id).webhook_last_event_at == rt.clock.now()
    assert install_webhook_secrets(rt) == ["whsec_platform"]


@responses.activate
def test_replacing_the_key_leaves_one_endpoint_with_a_secret_we_hold(
    own_key_rt, client, demo_company
):
    rt = own_key_rt
    sign_in(client, rt, demo_company)
    fake_account("acct_1PgafTB7WZ01zgkW")
    fake_endpoint_created("we_first", secret="whsec_first_secret")
    connect_key(client, "sk_test_51First")
    responses.reset()
    fake_account("acct_1PgafTB7WZ01zgkW")
    ours = {"arbridge_company": str(demo_company.id)}
    leftover = {
        **fixture("webhook_endpoint"),
        "id": "we_leftover",
        "url": "https://ar.example.com/webhooks/stripe",
        "metadata": ours,
    }
    someone_elses = {**fixture("webhook_endpoint"), "id": "we_their_own"}
    responses.get(
        f"{API}/v1/webhook_endpoints",
        json={"object": "list", "data": [leftover, someone_elses], "has_more": False},
    )
    for gone in ("we_first", "we_leftover"):
        responses.delete(
            f"{API}/v1/webhook_endpoints/{gone}",
            json={**fixture("deleted_webhook_endpoint"), "id": gone},
        )

    def created(request):
        return (
            200,
            {},
            json.dumps({**fixture("webhook_endpoint"), "id": "we_second", "secret": WHSEC}),
        )

    responses.add_callback(responses.POST, f"{API}/v1/webhook_endpoints", callback=created)
    connect_key(client, "sk_test_51Second")

    deletes = [
        (c.request.url.rsplit("/", 1)[1], c.request.headers["Authorization"])
        for c in responses.calls
        if c.request.method == "DELETE"
    ]
    assert deletes == [
        ("we_first", "Bearer sk_test_51First"),  # made with the old key, deleted with it
        ("we_leftover", "Bearer sk_test_51Second"),
    ]
    conn = stripe_conn(rt, demo_company.id)
    assert conn.webhook_endpoint_id == "we_second"
    assert rt.keyring.decrypt(conn.webhook_secret_encrypted) == WHSEC


@pytest.mark.parametrize("named", ["²", "١٢٣", "9" * 30, str(2**31), "12,13"])
def test_a_forged_event_naming_a_company_in_odd_digits_is_refused_not_a_500(
    own_key_rt, client, demo_company, named
):
    """The company an unverified event names only orders the secrets tried; digits from other
    scripts ('²' broke int()) or beyond what an id column holds are no company at all."""
    rt = own_key_rt
    inv = usd_invoice(rt, demo_company.id)
    forged = {
        **paid_session(rt, demo_company, inv, "pi_odd"),
        "metadata": {"arbridge_company": named},
    }
    response = deliver(client, rt, "checkout.session.completed", forged, "evt_odd", "whsec_nobody")
    assert response.status_code == 400
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent).where(WebhookEvent.event_id == "evt_odd")) is None
