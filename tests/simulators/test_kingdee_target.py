"""``conveyor simulate kingdee``: the adapter from the shared simulator ``Options`` (Kingdee's own
settings in ``Options.extra``) and the command with its Kingdee flags and ``--set``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from simulators import Options, load
from simulators.kingdee import KingdeeTarget

REPO = Path(__file__).resolve().parents[2]


def test_options_and_extra_reach_the_kingdee_simulator() -> None:
    target = load("kingdee").from_options(
        Options(
            latency_ms=5,
            fail_rate=0.1,
            drop_answer_rate=0.2,
            seed=4,
            extra={"seed_orders": "3", "refuse_negative": "true", "session_ttl_s": "60"},
        )
    )
    assert isinstance(target, KingdeeTarget)
    target.start()
    try:
        sim = target.simulator
        assert (sim.session_ttl_s, sim.refuse_negative) == (60.0, True)
        faults = sim.faults
        assert (faults.latency_ms, faults.fail_rate, faults.drop_answer_rate) == (5, 0.1, 0.2)
        orders = requests.get(f"{target.url}/_sim/orders", timeout=5).json()
        assert [o["FBillNo"] for o in orders] == ["MO000001", "MO000002", "MO000003"]
    finally:
        target.stop()


def test_a_target_never_served_stops_at_once() -> None:
    target = KingdeeTarget.from_options(Options())
    target.stop()
    assert target.server.simulator.store is not None


def test_conveyor_simulate_kingdee_with_its_flags(tmp_path: Path) -> None:
    state = tmp_path / "kd.db"
    command = [sys.executable, "-m", "conveyor", "simulate", "kingdee", "--port", "0"]
    flags = ["--seed-orders", "4", "--session-ttl-s", "30", "--refuse-negative"]
    process = subprocess.Popen(
        [*command, *flags, "--state", str(state), "--set", "released_status=4"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        orders = requests.get(f"{url}/_sim/orders", timeout=5).json()
        assert len(orders) == 4
        assert {o["FTreeEntity"][0]["FStatus"] for o in orders} == {"4"}
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert state.exists()
