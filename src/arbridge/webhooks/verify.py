"""Signature checks over the raw request body. Constant-time, and never skipped for lack of a secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from arbridge.errors import SignatureInvalid


def verify_base64_hmac_sha256(body: bytes, signature: str | None, secret: str | None) -> None:
    """QuickBooks (`intuit-signature`) and Xero (`x-xero-signature`): base64(HMAC-SHA256(body))."""
    if not secret:
        raise SignatureInvalid("no webhook secret is configured, so no delivery can be trusted")
    if not signature:
        raise SignatureInvalid("the delivery carries no signature")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureInvalid("the signature is not base64") from e
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise SignatureInvalid("the signature does not match the body")


STRIPE_TOLERANCE_SECONDS = 300


def parse_stripe_header(header: str | None) -> tuple[int, list[str]]:
    """Stripe-Signature `t=<unix>,v1=<hex>[,v1=...]` -> (timestamp, v1 signatures)."""
    if not header:
        raise SignatureInvalid("the delivery carries no Stripe-Signature header")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not signatures:
        raise SignatureInvalid("the Stripe-Signature header is malformed")
    try:
        timestamp = int(stamps[0])
    except ValueError as e:
        raise SignatureInvalid("the Stripe-Signature timestamp is not a number") from e
    return timestamp, signatures


def stripe_signature_matches(
    body: bytes, timestamp: int, signatures: list[str], secret: str
) -> bool:
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def check_stripe_timestamp(timestamp: int, now: float) -> None:
    if abs(now - timestamp) > STRIPE_TOLERANCE_SECONDS:
        raise SignatureInvalid("the Stripe signature is too old (or from the future)")


def verify_stripe_signature(
    body: bytes, header: str | None, secret: str | None, now: float
) -> None:
    """Stripe-Signature `t=<unix>,v1=<hex>[,v1=...]`: HMAC-SHA256 of "t.body", within 300 s of now.

    The same scheme as stripe's `Webhook.construct_event`, with the clock passed in."""
    if not secret:
        raise SignatureInvalid(
            "no Stripe webhook secret is configured, so no delivery can be trusted"
        )
    timestamp, signatures = parse_stripe_header(header)
    if not stripe_signature_matches(body, timestamp, signatures, secret):
        raise SignatureInvalid("the Stripe signature does not match the body")
    check_stripe_timestamp(timestamp, now)
