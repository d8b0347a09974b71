"""CPU seconds per process role while one benchmark runs: ``python bench/_cpu_tree.py NAME
[ARGS…]`` runs ``python -m bench NAME ARGS…`` and samples ``/proc`` every 0.2 s.

Roles: the bench process itself (its clients and its anchor), every process it starts, labelled by
its command line (``conveyor serve`` and its uvicorn workers: ``api``; ``conveyor run``:
``worker``; simulators), and the PostgreSQL backends serving the bench's throwaway databases
(``conveyor_bench_*``, started after the bench). RabbitMQ's server is shared and not counted.
Linux only; a process's last 0.2 s may be missed. Used for docs/scaling.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent
ROLES = [
    ("serve", "api (conveyor serve)"),
    ("run", "worker (conveyor run)"),
    ("watch", "conveyor watch"),
    ("simulate", "simulator"),
]


def _role(cmd: str) -> str | None:
    """The role of a process started by the bench, by its command line (None: its parent's)."""
    words = cmd.split()
    if "conveyor" in words:
        return next((role for word, role in ROLES if word in words), "conveyor (other)")
    return "simulator" if "simulators" in cmd else None


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime + stime in ticks, start time in ticks) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _boot_ticks() -> float:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return (time.time() - uptime) * TICK


def main() -> int:
    """Run the bench, print CPU seconds per role, exit with the bench's code."""
    boot = _boot_ticks()
    started_ticks = time.time() * TICK - boot
    child = subprocess.Popen([sys.executable, "-m", "bench", *sys.argv[1:]], cwd=REPO)
    seen: dict[int, tuple[str, int]] = {}  # pid -> (role, latest cpu ticks)
    role_of: dict[int, str] = {child.pid: "bench process (clients, anchor)"}
    while child.poll() is None:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                found = _stat(int(entry))
                if found:
                    stats[int(entry)] = found
        for pid, (ppid, ticks, start) in sorted(stats.items(), key=lambda kv: kv[1][2]):
            if pid not in role_of and ppid in role_of:
                cmd = _cmdline(pid)
                role_of[pid] = _role(cmd) or role_of[ppid]
            elif pid not in role_of and start >= started_ticks:
                cmd = _cmdline(pid)
                if cmd.startswith("postgres: ") and "conveyor_bench_" in cmd:
                    role_of[pid] = "postgresql backends"
            if pid in role_of:
                seen[pid] = (role_of[pid], ticks)
        time.sleep(0.2)
    totals: dict[str, float] = {}
    for role, ticks in seen.values():
        totals[role] = totals.get(role, 0.0) + ticks / TICK
    print("\nCPU seconds by role (sampled from /proc every 0.2 s):")
    for role, seconds in sorted(totals.items()):
        print(f"  {role:<36} {seconds:8.2f}")
    print("by process (in order of start; a role's processes of one phase start together):")
    for pid, (role, ticks) in seen.items():
        if ticks >= TICK // 10:
            print(f"  {pid:>8}  {role:<36} {ticks / TICK:8.2f}")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
