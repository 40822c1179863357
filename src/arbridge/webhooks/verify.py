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
