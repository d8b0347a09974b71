"""YonBIP / YonSuite open API signing: the ``signature`` of ``selfAppAuth/getAccessToken``.

Base64 of HMAC-SHA256(appSecret, ``"appKey" + appKey + "timestamp" + timestamp``), as the YonBIP
open-platform documentation gives it. The value goes into the query string URL-encoded once (an
HTTP client's own parameter encoding does exactly that). Pure standard library, shared by the
connector and the simulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def access_token_signature(app_key: str, app_secret: str, timestamp_ms: int | str) -> str:
    """The (not yet URL-encoded) ``signature`` parameter for ``getAccessToken``."""
    text = f"appKey{app_key}timestamp{timestamp_ms}"
    digest = hmac.new(app_secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def access_token_params(app_key: str, app_secret: str, timestamp_ms: int | str) -> dict[str, str]:
    """The query parameters of ``getAccessToken`` (``appKey``, ``timestamp``, ``signature``)."""
    return {
        "appKey": app_key,
        "timestamp": str(timestamp_ms),
        "signature": access_token_signature(app_key, app_secret, timestamp_ms),
    }
