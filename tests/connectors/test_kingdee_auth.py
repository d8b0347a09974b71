"""connectors.kingdee_auth against the official Kingdee SDK (used here only, as an oracle) and the
test vector of DIALECTS.md."""

from __future__ import annotations

import base64
import random
import types

import pytest

from connectors import kingdee_auth
from connectors.kingdee_auth import client_secret, login_sign, signed_headers

sdk_client = pytest.importorskip("k3cloud_webapi_sdk.core.webapi_client")
sdk_identity = pytest.importorskip("k3cloud_webapi_sdk.model.identity")
sdk_config = pytest.importorskip("k3cloud_webapi_sdk.model.api_config")
sdk_encode = pytest.importorskip("k3cloud_webapi_sdk.util.encode_util")

SERVER = "http://erp.example:8090/k3cloud/"
QUERY = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery"
SAVE = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave"
SIGNED = (
    "X-Api-ClientID",
    "X-Api-Auth-Version",
    "x-api-timestamp",
    "x-api-nonce",
    "x-api-signheaders",
    "X-Api-Signature",
    "X-Kd-Appkey",
    "X-Kd-Appdata",
    "X-Kd-Signature",
)


def _sdk_headers(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    app_id: str,
    app_secret: str,
    acct_id: str,
    username: str,
    lcid: int,
    org_num: int,
    timestamp: int,
) -> dict[str, str]:
    """The headers the SDK's own ``BuildHeader`` computes, with its clock pinned."""
    monkeypatch.setattr(sdk_config.ApiConfig, "Xor_Code", "")
    monkeypatch.setattr(sdk_client, "time", types.SimpleNamespace(time=lambda: float(timestamp)))
    client = sdk_client.WebApiClient()
    client.identify = sdk_identity.Identify(
        SERVER, acct_id, username, app_id, app_secret, org_num, lcid, ""
    )
    built = client.BuildHeader(SERVER + service + ".common.kdsvc")
    return {name: built[name] for name in SIGNED}


def _random_app_id(rng: random.Random) -> str:
    suffix = base64.b64encode(bytes(rng.randrange(256) for _ in range(24))).decode()
    return f"{rng.randrange(100000, 999999)}_{suffix}"


CASES = [
    # (app_secret, acct_id, username, lcid, org_num, timestamp, service)
    (
        "0123456789abcdef0123456789abcdef",
        "65a1b2c3d4e5f6",
        "integ_user",
        2052,
        0,
        1700000000,
        QUERY,
    ),
    (
        "f3a9c0de77b14d0e9a1b2c3d4e5f6a7b",
        "5f0e1d2c3b4a",
        "Administrator",
        2052,
        100,
        1764400000,
        SAVE,
    ),
    ("a" * 32, "6543210fedcba", "接口用户", 1033, 1, 1800000123, QUERY),
    ("Zz9+/==", "acct", "user,with,commas", 3076, 999, 1, SAVE),
]


@pytest.mark.parametrize(
    ("app_secret", "acct_id", "username", "lcid", "org_num", "timestamp", "service"), CASES
)
@pytest.mark.parametrize("app_seed", [1, 2, 3])
def test_signed_headers_equal_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
    app_seed: int,
    app_secret: str,
    acct_id: str,
    username: str,
    lcid: int,
    org_num: int,
    timestamp: int,
    service: str,
) -> None:
    app_id = _random_app_id(random.Random(app_seed))
    expected = _sdk_headers(
        monkeypatch, service, app_id, app_secret, acct_id, username, lcid, org_num, timestamp
    )
    ours = signed_headers(
        "/k3cloud/" + service + ".common.kdsvc",
        app_id,
        app_secret,
        acct_id,
        username,
        lcid,
        org_num,
        str(timestamp),
        str(timestamp),
    )
    assert ours == expected


@pytest.mark.parametrize("seed", range(20))
def test_client_secret_equals_the_sdk_derivation(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(sdk_config.ApiConfig, "Xor_Code", "")
    app_id = _random_app_id(random.Random(seed))
    assert client_secret(app_id) == sdk_encode.DecodeAppSecret(app_id.split("_")[1])


def test_xor_key_is_the_sdk_key_without_its_random_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_config.ApiConfig, "Xor_Code", "")
    key = sdk_encode.extend_byte_array(sdk_encode.generate_code(), encoding="utf-8", extend_type=1)
    assert bytes(key) == kingdee_auth.SDK_XOR_KEY


def test_dialects_test_vector() -> None:
    app_id = "300001_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY"
    secret = "0123456789abcdef0123456789abcdef"
    path = "/k3cloud/" + QUERY + ".common.kdsvc"
    headers = signed_headers(
        path, app_id, secret, "65a1b2c3d4e5f6", "integ_user", 2052, 0, "1700000000", "1700000000"
    )
    assert headers["X-Api-Signature"] == (
        "ZDQ4NTViM2EzY2VjYjI1OTY2MmZjZjVhNjE0OTZiNDA3MmY4M2VjYzNlZDQ1YTNkMmY1NDdlNzQxYzI4OWMzYw=="
    )
    assert headers["X-Kd-Signature"] == (
        "MDdmYjI4ZWIxOGYyZjQ2MjA5Njc0YjVjYTI1NmY0YzA3YWMwMGRmMjBiNTcxM2FkOGVhMjEwZTQyMDFkZDI3OA=="
    )
    assert base64.b64decode(headers["X-Kd-Appdata"]) == b"65a1b2c3d4e5f6,integ_user,2052,0"
    assert headers["X-Api-ClientID"] == "300001"
    assert (
        login_sign("65a1b2c3d4e5f6", "integ_user", app_id, secret, "1700000000")
        == "4faffd9f7d11217f0d6770d81c84af0c1d3fa73dde91853871e7d9a21b039ff2"
    )


def test_login_sign_does_not_depend_on_argument_order() -> None:
    a = login_sign("acct", "user", "app_x", "secret", "1700000000")
    assert a == login_sign("user", "acct", "secret", "app_x", "1700000000")
    assert a != login_sign("acct", "user", "app_x", "secret", "1700000001")
    assert len(a) == 64
    assert a == a.lower()


@pytest.mark.parametrize(
    "app_id", ["no-underscore", "1_2_3", "300001_short", "300001_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"]
)
def test_malformed_app_id_is_refused(app_id: str) -> None:
    with pytest.raises(ValueError, match=r"appId|after '_'"):
        client_secret(app_id)
