"""Settings in sections: one per outside service, None while unconfigured, read from the same
ARBRIDGE_* variables as before."""

from __future__ import annotations

import pytest

from arbridge.config import Settings, SmtpSettings, StripeSettings, XeroSettings
from arbridge.connectors.xero.sdk import PAGE_SIZE
from arbridge.errors import ConfigError

BASE = {"ARBRIDGE_INSTANCE_PATH": "/tmp/arbridge-sections-test"}


def test_every_section_is_none_until_configured():
    s = Settings.from_env(BASE, dotenv=False)
    assert (s.quickbooks, s.stripe, s.smtp, s.xero, s.twilio) == (None, None, None, None, None)


def test_sections_are_read_from_the_same_variables():
    s = Settings.from_env(
        {
            **BASE,
            "ARBRIDGE_QBO_CLIENT_ID": "ABcid",
            "ARBRIDGE_QBO_CLIENT_SECRET": "qbo-secret",
            "ARBRIDGE_QBO_ENVIRONMENT": "production",
            "ARBRIDGE_QBO_WEBHOOK_VERIFIER": "verifier-token",
            "ARBRIDGE_STRIPE_SECRET_KEY": "sk_test_51Secret",
            "ARBRIDGE_STRIPE_CONNECT": "true",
            "ARBRIDGE_SMTP_URL": "smtp://mailer:smtp-password@mail.example:587",
        },
        dotenv=False,
    )
    assert s.quickbooks is not None
    assert (s.quickbooks.client_id, s.quickbooks.environment) == ("ABcid", "production")
    assert s.quickbooks.webhook_verifier == "verifier-token"
    assert s.stripe == StripeSettings(secret_key="sk_test_51Secret", connect=True)
    assert s.smtp == SmtpSettings(url="smtp://mailer:smtp-password@mail.example:587")
    shown = repr(s)
    for secret in ("qbo-secret", "verifier-token", "sk_test_51Secret", "smtp-password"):
        assert secret not in shown


def test_a_client_id_without_its_secret_is_not_a_quickbooks_app():
    s = Settings.from_env({**BASE, "ARBRIDGE_QBO_CLIENT_ID": "ABcid"}, dotenv=False)
    assert s.quickbooks is None


def test_the_flat_names_still_set_and_read_the_sections():
    s = Settings.from_env(BASE, dotenv=False)
    changed = s.with_(stripe_api_base="http://127.0.0.1:9", smtp_url="smtp://127.0.0.1:2525")
    assert changed.stripe == StripeSettings(api_base="http://127.0.0.1:9")
    assert changed.stripe_api_base == "http://127.0.0.1:9" and changed.stripe_connect is False
    assert changed.smtp_url == "smtp://127.0.0.1:2525"
    qbo = changed.with_(qbo_client_id="ABcid", qbo_client_secret="x", qbo_api_base="http://q")
    assert qbo.quickbooks is not None and qbo.quickbooks.api_base == "http://q"
    assert qbo.stripe == changed.stripe  # the other sections are left as they were
    assert s.qbo_environment == "sandbox" and s.qbo_client_id is None


def test_the_xero_section_is_read_from_its_variables_and_hides_its_secrets():
    s = Settings.from_env(
        {
            **BASE,
            "ARBRIDGE_XERO_CLIENT_ID": "XEROCID",
            "ARBRIDGE_XERO_CLIENT_SECRET": "xero-secret",
            "ARBRIDGE_XERO_REDIRECT_URI": "https://ar.example/xero/callback",
            "ARBRIDGE_XERO_WEBHOOK_KEY": "xero-hook-key",
            "ARBRIDGE_XERO_API_BASE": "http://127.0.0.1:8123/",
        },
        dotenv=False,
    )
    assert s.xero == XeroSettings(
        client_id="XEROCID",
        client_secret="xero-secret",
        redirect_uri="https://ar.example/xero/callback",
        webhook_key="xero-hook-key",
        api_base="http://127.0.0.1:8123",
        identity_base="https://identity.xero.com",
    )
    shown = repr(s)
    assert "XEROCID" in shown
    for secret in ("xero-secret", "xero-hook-key"):
        assert secret not in shown


def test_xero_defaults_to_xeros_own_servers_and_needs_both_credentials():
    s = Settings.from_env(
        {**BASE, "ARBRIDGE_XERO_CLIENT_ID": "XEROCID", "ARBRIDGE_XERO_CLIENT_SECRET": "x"},
        dotenv=False,
    )
    assert s.xero is not None
    assert (s.xero.api_base, s.xero.identity_base) == (
        "https://api.xero.com",
        "https://identity.xero.com",
    )
    alone = Settings.from_env({**BASE, "ARBRIDGE_XERO_CLIENT_ID": "XEROCID"}, dotenv=False)
    assert alone.xero is None


def test_a_xero_base_must_be_a_url():
    with pytest.raises(ConfigError, match="ARBRIDGE_XERO_IDENTITY_BASE"):
        Settings.from_env(
            {**BASE, "ARBRIDGE_XERO_IDENTITY_BASE": "identity.xero.com"}, dotenv=False
        )


XERO_APP = {**BASE, "ARBRIDGE_XERO_CLIENT_ID": "XEROCID", "ARBRIDGE_XERO_CLIENT_SECRET": "x"}


@pytest.mark.parametrize("value", ["1", "250", "1000", " 1000 "])
def test_the_xero_page_size_is_read_from_its_variable(value):
    s = Settings.from_env({**XERO_APP, "ARBRIDGE_XERO_PAGE_SIZE": value}, dotenv=False)
    assert s.xero is not None and s.xero.page_size == int(value)


def test_the_xero_page_size_defaults_to_xeros_documented_page():
    s = Settings.from_env(XERO_APP, dotenv=False)
    assert s.xero is not None and s.xero.page_size == PAGE_SIZE == 100
    empty = Settings.from_env({**XERO_APP, "ARBRIDGE_XERO_PAGE_SIZE": ""}, dotenv=False)
    assert empty.xero is not None and empty.xero.page_size == 100


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "at least 1, not 0"),
        ("-5", "at least 1, not -5"),
        ("1001", "at most 1000, not 1001"),
        ("100000", "at most 1000, not 100000"),
        ("lots", "a whole number, not 'lots'"),
        ("100.0", "a whole number, not '100.0'"),
    ],
)
def test_a_xero_page_size_out_of_range_or_not_a_number_is_refused(value, problem):
    with pytest.raises(ConfigError, match=f"^ARBRIDGE_XERO_PAGE_SIZE must be {problem}"):
        Settings.from_env({**XERO_APP, "ARBRIDGE_XERO_PAGE_SIZE": value}, dotenv=False)


def test_a_bad_xero_page_size_is_refused_before_xero_is_configured():
    """Startup fails on the mistake itself, not later when the credentials are added."""
    with pytest.raises(ConfigError, match="ARBRIDGE_XERO_PAGE_SIZE"):
        Settings.from_env({**BASE, "ARBRIDGE_XERO_PAGE_SIZE": "5000"}, dotenv=False)
