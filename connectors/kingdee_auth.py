"""Kingdee K/3 Cloud WebAPI signing: the ``LoginBySign`` sign and the "API auth 2.0" headers.

Follows the official Python SDK (``kingdee-cdp-webapi-sdk`` 8.x, ``WebApiClient.BuildHeader``)
byte for byte; ``tests/connectors/test_kingdee_auth.py`` checks it against the SDK's own code.
Pure functions over the standard library, so the connectors and the simulator verify with the same
code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import quote

# The fixed XOR key of the SDK (``encode_util.generate_code``): four published 8-character pieces,
# ROT13-encoded there ("0054s397", "p6234378", "o09pn7q3", "r5qropr7"); this is the decoded form.
SDK_XOR_KEY = b"0054f397c6234378b09ca7d3e5debce7"

AUTH_VERSION = "2.0"
SIGN_HEADERS = "x-api-timestamp,x-api-nonce"


def login_sign(acct_id: str, username: str, app_id: str, app_secret: str, timestamp: str) -> str:
    """The ``sign`` of ``AuthService.LoginBySign``: lowercase hex SHA-256 of the five values
    sorted (ordinal string order) and concatenated."""
    parts = sorted([acct_id, username, app_id, app_secret, str(timestamp)])
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def split_app_id(app_id: str) -> tuple[str, str]:
    """``(client_id, encoded_secret)``: the appId's parts before and after its one ``_``."""
    parts = app_id.split("_")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"appId {app_id!r} is not of the form <clientId>_<32 characters>")
    return parts[0], parts[1]


def client_secret(app_id: str) -> str:
    """The HMAC key of ``X-Api-Signature``: the part of appId after ``_`` (32 base64 characters)
    decoded, XOR-ed with :data:`SDK_XOR_KEY` and base64-encoded again."""
    _, encoded = split_app_id(app_id)
    if len(encoded) != 32:
        # The SDK silently signs with an empty key here; refusing is kinder to an integrator.
        raise ValueError(f"the part of appId after '_' must be 32 characters, got {len(encoded)}")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the part of appId after '_' is not base64: {exc}") from exc
    mixed = bytes(b ^ SDK_XOR_KEY[i] for i, b in enumerate(raw))
    return base64.b64encode(mixed).decode("ascii")


def hmac_hex_base64(key: str, content: str) -> str:
    """Base64 of the *hex text* of HMAC-SHA256 (the SDK's ``HmacSHA256``; not of the raw digest)."""
    digest = hmac.new(key.encode("utf-8"), content.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("utf-8")).decode("ascii")


def app_data(acct_id: str, username: str, lcid: int | str, org_num: int | str) -> str:
    """The plain text behind ``X-Kd-Appdata``: ``acctId,username,lcid,orgNum``."""
    return f"{acct_id},{username},{lcid},{org_num}"


def api_signature(path: str, client_sec: str, timestamp: str, nonce: str) -> str:
    """``X-Api-Signature`` for a POST to ``path`` (the URL path, without scheme and host)."""
    # quote() keeps "/" by default; the SDK then replaces it with %2F, i.e. nothing is safe.
    quoted = quote(path, safe="", encoding="utf-8")
    text = f"POST\n{quoted}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n"
    return hmac_hex_base64(client_sec, text)


def signed_headers(
    path: str,
    app_id: str,
    app_secret: str,
    acct_id: str,
    username: str,
    lcid: int | str,
    org_num: int | str,
    timestamp: str,
    nonce: str,
) -> dict[str, str]:
    """The nine headers of a signed ("API auth 2.0") request to ``path``."""
    client_id, _ = split_app_id(app_id)
    data = app_data(acct_id, username, lcid, org_num)
    return {
        "X-Api-ClientID": client_id,
        "X-Api-Auth-Version": AUTH_VERSION,
        "x-api-timestamp": str(timestamp),
        "x-api-nonce": str(nonce),
        "x-api-signheaders": SIGN_HEADERS,
        "X-Api-Signature": api_signature(path, client_secret(app_id), str(timestamp), str(nonce)),
        "X-Kd-Appkey": app_id,
        "X-Kd-Appdata": base64.b64encode(data.encode("utf-8")).decode("ascii"),
        "X-Kd-Signature": hmac_hex_base64(app_secret, app_id + data),
    }
