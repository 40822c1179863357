import pytest

from arbridge.errors import SignatureInvalid
from arbridge.webhooks.verify import verify_base64_hmac_sha256

# Known answer: base64(HMAC-SHA256(key="verifier-token", msg=BODY)), computed independently with
# `printf '%s' "$BODY" | openssl dgst -sha256 -hmac verifier-token -binary | base64`.
BODY = b'{"eventNotifications":[{"realmId":"9130","dataChangeEvent":{"entities":[]}}]}'
SIGNATURE = "4aQtPql2I54M8oSjgdmAPd4uoxukCOFSdzY3HLyDO1M="


def test_known_answer():
    verify_base64_hmac_sha256(BODY, SIGNATURE, "verifier-token")


@pytest.mark.parametrize(
    ("body", "signature", "secret"),
    [
        (BODY + b" ", SIGNATURE, "verifier-token"),
        (BODY, SIGNATURE, "other-token"),
        (BODY, "not base64!", "verifier-token"),
        (BODY, None, "verifier-token"),
        (BODY, SIGNATURE, None),
        (BODY, SIGNATURE, ""),
    ],
)
def test_everything_else_is_refused(body, signature, secret):
    with pytest.raises(SignatureInvalid):
        verify_base64_hmac_sha256(body, signature, secret)
