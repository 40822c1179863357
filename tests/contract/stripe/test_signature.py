"""Known-answer tests: our Stripe-Signature check agrees with Stripe's own signer."""

from __future__ import annotations

import time

import pytest
from stripe import WebhookSignature

from arbridge.errors import SignatureInvalid
from arbridge.webhooks.verify import verify_stripe_signature

SECRET = "whsec_test_secret"
BODY = b'{"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "type": "charge.refunded"}'
T = 1764000000
# Computed independently: printf '%s' "1764000000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
KNOWN = "6ba07633639aa2538d32aad712c699bf92c90a9a6ceeea05364136b6592f20c0"


def header(t: int = T, secret: str = SECRET, body: bytes = BODY) -> str:
    sig = WebhookSignature._compute_signature(f"{t}.{body.decode()}", secret)
    return f"t={t},v1={sig}"


def test_known_answer_matches_stripes_signer():
    assert header() == f"t={T},v1={KNOWN}"
    verify_stripe_signature(BODY, header(), SECRET, now=T + 299)


def test_any_of_several_v1_signatures_may_match():
    verify_stripe_signature(BODY, f"t={T},v1=deadbeef,v1={KNOWN},v0=old", SECRET, now=T)


@pytest.mark.parametrize(
    ("body", "head", "secret", "now"),
    [
        (BODY + b" ", None, SECRET, T),  # body changed
        (BODY, None, "whsec_other", T),  # wrong secret
        (BODY, None, SECRET, T + 301),  # stale
        (BODY, None, SECRET, T - 301),  # from the future
        (BODY, "", SECRET, T),  # no header
        (BODY, "v1=abc", SECRET, T),  # no timestamp
        (BODY, f"t=soon,v1={KNOWN}", SECRET, T),
        (BODY, None, "", T),  # no secret configured: never skip the check
    ],
)
def test_everything_else_is_refused(body, head, secret, now):
    if head is None:
        head = header()
    with pytest.raises(SignatureInvalid):
        verify_stripe_signature(body, head, secret, now)


def test_a_fresh_signature_from_stripes_library_verifies_now():
    now = int(time.time())
    verify_stripe_signature(BODY, header(now), SECRET, now)
