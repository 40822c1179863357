"""ARBRIDGE_QBO_* settings: read, checked, and kept out of reprs."""

from __future__ import annotations

import pytest

from arbridge.config import Settings
from arbridge.errors import ConfigError

BASE = {"ARBRIDGE_INSTANCE_PATH": "/tmp/arbridge-qbo-config-test"}


def test_the_quickbooks_settings_are_read():
    s = Settings.from_env(
        {
            **BASE,
            "ARBRIDGE_QBO_CLIENT_ID": "ABcid",
            "ARBRIDGE_QBO_CLIENT_SECRET": "very-secret",
            "ARBRIDGE_QBO_REDIRECT_URI": "https://ar.example/quickbooks/callback",
            "ARBRIDGE_QBO_ENVIRONMENT": "Production",
            "ARBRIDGE_QBO_WEBHOOK_VERIFIER": "verifier-token",
            "ARBRIDGE_QBO_API_BASE": "http://127.0.0.1:9999",
            "ARBRIDGE_QBO_DISCOVERY_URL": "http://127.0.0.1:9999/.well-known/openid_configuration",
        },
        dotenv=False,
    )
    assert (s.qbo_client_id, s.qbo_environment) == ("ABcid", "production")
    assert s.qbo_api_base == "http://127.0.0.1:9999"
    assert "very-secret" not in repr(s) and "verifier-token" not in repr(s)


def test_defaults_are_the_sandbox_and_no_app():
    s = Settings.from_env(BASE, dotenv=False)
    assert (s.qbo_client_id, s.qbo_environment, s.qbo_webhook_verifier) == (None, "sandbox", None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ARBRIDGE_QBO_ENVIRONMENT", "staging", "sandbox or production"),
        ("ARBRIDGE_QBO_API_BASE", "ftp://x", "http"),
        ("ARBRIDGE_QBO_DISCOVERY_URL", "not a url", "http"),
    ],
)
def test_bad_values_are_refused_with_a_sentence(name, value, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, name: value}, dotenv=False)
