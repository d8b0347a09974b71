"""``conveyor simulate yonyou-u8`` / ``conveyor simulate yonbip``: the adapters made from
``simulators.Options`` (own options through ``extra``) and the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from connectors.yonyou_auth import access_token_params
from simulators import Options, load
from simulators.yonyou import U8Server, YonBIPServer, simulator_options


def test_the_entry_points_name_the_adapters() -> None:
    assert load("yonbip") is YonBIPServer
    assert load("yonyou-u8") is U8Server


def test_extra_options_are_typed_and_reach_the_simulator() -> None:
    options = Options(
        latency_ms=5,
        fail_rate=0.25,
        seed=7,
        extra={"seed-orders": "12", "refuse_negative": "true", "token_ttl_s": "60", "org": "2000"},
    )
    server = YonBIPServer.from_options(options)
    try:
        sim = server.simulator
        assert (sim.token_ttl_s, sim.refuse_negative, sim.org) == (60, True, "2000")
        assert len(sim.orders_view()) == 12
        assert (sim.faults.latency_ms, sim.faults.fail_rate, sim.faults.seed) == (5, 0.25, 7)
    finally:
        server.stop()


def test_an_unknown_or_badly_typed_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"known: .*app_key"):
        simulator_options("u8", {"no_such": "1"})
    with pytest.raises(ValueError, match="true or false"):
        simulator_options("yonbip", {"refuse_negative": "maybe"})
    assert simulator_options("yonbip", {"save_paths": '{"productin": "/x"}'}) == {
        "save_paths": {"productin": "/x"}
    }


def test_u8_adapter_serves_forever_until_stopped() -> None:
    server = U8Server(Options(extra={"from_account": "plant", "app_secret": "s"}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answer = requests.get(
            f"{server.url}/system/token",
            params={"from_account": "plant", "app_key": "opa-conveyor", "app_secret": "s"},
            timeout=5,
        ).json()
        assert answer["errcode"] == "0"
    finally:
        server.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_stop_without_serving_does_not_hang() -> None:
    started = time.monotonic()
    U8Server(Options()).stop()
    assert time.monotonic() - started < 2


def test_conveyor_simulate_yonbip_serves_the_open_api() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "simulate", "yonbip", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        params = access_token_params(
            "conveyor-app-key", "conveyor-app-secret", int(time.time() * 1000)
        )
        answer = requests.get(
            f"{url}/iuap-api-auth/open-auth/selfAppAuth/getAccessToken", params=params, timeout=5
        ).json()
        assert answer["code"] == "00000"
    finally:
        process.terminate()
        process.wait(10)
