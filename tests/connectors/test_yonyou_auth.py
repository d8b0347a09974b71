"""connectors.yonyou_auth: the getAccessToken signature, checked against OpenSSL as an independent
HMAC implementation and against the documented text to sign."""

from __future__ import annotations

import base64
import shutil
import subprocess
from urllib.parse import urlencode

import pytest

from connectors.yonyou_auth import access_token_params, access_token_signature

CASES = [
    ("41832a3d2df94989b500da6a22268747", "836c2c3b1ef64b51a1cbd8ba9fd7e9f0", 1700000000000),
    ("appkey", "secret", 1),
    ("用友key", "s3cr3t+/=", 1764400000123),
]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(("app_key", "app_secret", "timestamp"), CASES)
def test_signature_equals_openssl_hmac(app_key: str, app_secret: str, timestamp: int) -> None:
    text = f"appKey{app_key}timestamp{timestamp}".encode()
    raw = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", app_secret, "-binary"],
        input=text,
        capture_output=True,
        check=True,
    ).stdout
    assert access_token_signature(app_key, app_secret, timestamp) == base64.b64encode(raw).decode()


def test_signature_changes_with_every_input() -> None:
    base = access_token_signature("k", "s", 1700000000000)
    assert base != access_token_signature("k2", "s", 1700000000000)
    assert base != access_token_signature("k", "s2", 1700000000000)
    assert base != access_token_signature("k", "s", 1700000000001)
    assert len(base64.b64decode(base)) == 32


def test_params_are_url_encoded_once_by_the_query_string() -> None:
    params = access_token_params("k", "s", 1700000000000)
    assert params["timestamp"] == "1700000000000"
    query = urlencode(params)
    # "+", "/" and "=" of the base64 text are escaped exactly once (no %25 double escape).
    assert "%25" not in query
    assert params["signature"] == access_token_signature("k", "s", "1700000000000")
