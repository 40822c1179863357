"""Throttles, outages, expired and revoked grants, and the tenant connections, against the fake."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from arbridge.connectors.xero import (
    Remaining,
    TenantLimiter,
    XeroConfig,
    XeroConnector,
    XeroIdentity,
)
from arbridge.errors import AuthExpired, ConfigError, RateLimited, Transient
from tests.contract.xero.conftest import TODAY


def invoice_calls(fake):
    return sum(1 for r in fake.requests if r["path"] == "/api.xro/2.0/Invoices")


def test_a_short_throttle_waits_and_retries(fake, xero, sleeps):
    fake.add_invoice(fake.add_contact("Harbor Cafe"), "1.00", issued=TODAY, due=TODAY)
    fake.injected = [("throttle", 3, "minute"), ("throttle", 2, "minute")]
    records = [r for p in xero.pull("invoices", None) for r in p.records]
    assert len(records) == 1 and sleeps == [3.0, 2.0]
    assert invoice_calls(fake) == 3


def test_a_long_throttle_leaves_at_once_as_rate_limited(fake, xero, sleeps):
    """The daily limit asks for hours: the job is rescheduled, nothing sleeps, and urllib3 does
    not quietly retry (or sleep) on its own either."""
    fake.injected = [("throttle", 3600, "day")]
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        list(xero.pull("invoices", None))
    assert caught.value.retry_after == 3600 and "day" in str(caught.value)
    assert time.monotonic() - started < 5 and sleeps == []
    assert invoice_calls(fake) == 1


def test_a_5xx_is_transient_and_retried_with_backoff(fake, xero, sleeps):
    fake.injected = [("status", 503), ("status", 500)]
    assert list(xero.pull("invoices", None))[-1].records == []
    assert sleeps == [1.0, 2.0]


def test_an_outage_that_lasts_leaves_as_transient(fake, xero):
    fake.injected = [("status", 503)] * 10
    with pytest.raises(Transient):
        list(xero.pull("invoices", None))


def test_an_unreachable_xero_is_transient(config, tokens, clock, fake):
    dead = XeroConfig(
        "id", "secret", api_base="http://127.0.0.1:9", identity_base="http://127.0.0.1:9"
    )
    xero = XeroConnector(
        dead, fake.tenant_id, tokens, clock, sleep=lambda _s: None, limiter=TenantLimiter()
    )
    with pytest.raises(Transient):
        xero.organisation()


def test_the_remaining_budget_is_read_from_every_answer(fake, make_connector):
    seen: list[Remaining] = []
    fake.day_calls = 4000
    xero = make_connector(on_limits=seen.append)
    xero.organisation()
    assert xero.remaining == Remaining(minute=59, day=999, app_minute=9999)
    assert seen == [xero.remaining]
    assert Remaining.from_headers({}) is None
    assert Remaining.from_headers({"X-DayLimit-Remaining": "x"}) is None


def test_an_expired_access_token_is_refreshed_once(fake, xero, tokens):
    old_refresh = tokens.refresh_token
    fake.expire_access_tokens()
    assert xero.organisation()["name"] == "Harbor Bakery Ltd"
    assert tokens.refreshes == 1 and tokens.refresh_token != old_refresh
    # Rotation: the refresh token that was spent no longer works.
    assert old_refresh in fake.retired_refresh and old_refresh not in fake.refresh_tokens


def test_a_token_refused_after_refreshing_gives_up(fake, xero, tokens):
    fake.expire_access_tokens()
    fake.access_tokens = _Refusing()
    with pytest.raises(AuthExpired):
        xero.organisation()
    assert tokens.refreshes == 1 and len(tokens.gave_up) == 1


class _Refusing(set):
    """An access-token set that never holds a token: every API call is a 401."""

    def __contains__(self, _item: object) -> bool:
        return False


def test_a_disconnected_tenant_is_forbidden_and_needs_reconnecting(fake, xero, tokens):
    fake.connections.clear()
    with pytest.raises(AuthExpired):
        xero.organisation()
    assert tokens.refreshes == 0 and "tenant" in tokens.gave_up[0]


def test_a_spent_refresh_token_past_the_grace_is_auth_expired(fake, identity, tokens):
    grant = identity.refresh(tokens.refresh_token)
    assert grant.refresh_token != tokens.refresh_token
    assert grant.access_expires_at == identity.clock.now() + timedelta(minutes=30)
    fake.now += timedelta(minutes=31)  # past the grace Xero gives a rotated token
    with pytest.raises(AuthExpired):
        identity.refresh(tokens.refresh_token)  # already rotated


def test_a_wrong_client_secret_is_auth_expired(config, clock, tokens):
    wrong = XeroIdentity(
        XeroConfig(config.client_id, "wrong", identity_base=config.identity_base), clock
    )
    with pytest.raises(AuthExpired):
        wrong.refresh(tokens.refresh_token)


def test_an_unconfigured_identity_refuses_to_start(clock):
    with pytest.raises(ConfigError):
        XeroIdentity(XeroConfig("", ""), clock)


def test_code_exchange_tenants_and_disconnect(fake, identity):
    grant = identity.exchange(fake.issue_code())
    assert grant.id_token and grant.refresh_expires_at is not None
    [tenant] = identity.connections(grant.access_token)
    assert (tenant.tenant_id, tenant.name, tenant.tenant_type) == (
        fake.tenant_id,
        "Harbor Bakery Ltd",
        "ORGANISATION",
    )
    identity.delete_connection(grant.access_token, tenant.connection_id)
    assert identity.connections(grant.access_token) == []
    identity.delete_connection(grant.access_token, tenant.connection_id)  # already gone: fine
    with pytest.raises(AuthExpired):
        identity.connections("not-a-token")
    identity.revoke(grant.refresh_token)
    assert fake.revoked == [grant.refresh_token]


def test_the_consent_url(identity):
    url = identity.authorization_url("st4te")
    assert url.startswith("https://login.xero.com/identity/connect/authorize?")
    assert "offline_access" in url and "accounting.payments" in url and "state=st4te" in url


def test_a_missing_record_is_none(fake, xero):
    assert xero.read_credit_note("00000000-0000-0000-0000-000000000000") is None
