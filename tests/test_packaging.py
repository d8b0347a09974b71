"""The built wheel is complete: installed into a fresh virtual environment outside the source tree,
it finds its schemas, migrations and report template, and `db upgrade`, `accept` and `reconcile`
work from there. Also: every required dependency is imported by something."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the source tree) with the built wheel installed, no source on path."""
    work = tmp_path_factory.mktemp("wheel")
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "wheel", "-q", "--no-deps", REPO, "-w", work / "dist", cwd=work)
    (wheel,) = (work / "dist").glob("conveyor_hub-*.whl")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    python = venv / "bin" / "python"
    _run(
        *pip, "--python", python, "install", "-q", "--no-deps", wheel,
        cwd=work,
    )  # fmt: skip
    # The dependencies come from this environment's site-packages, added as a plain path: its
    # .pth files (the editable install of the source tree) are not processed from there.
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return venv


def test_wheel_ships_schemas_migrations_templates(installed: Path) -> None:
    out = _run(
        installed / "bin" / "python",
        "-c",
        "import conveyor, conveyor.paths as p, conveyor.messages as m;"
        "print(conveyor.__file__); print(p.schemas_dir());"
        "print(sorted(m.schema('production_output')))",
        cwd=installed.parent,
    )
    module, schemas, keys = out.strip().splitlines()
    assert module.startswith(str(installed)), module
    assert schemas.startswith(str(installed))
    assert schemas.endswith("_schemas")
    assert "properties" in keys
    package = Path(module).parent
    assert list((package / "ledger" / "migrations" / "versions").glob("0001_*.py"))
    assert (package / "reconcile" / "templates" / "report.html.j2").is_file()


def test_installed_cli_upgrade_accept_reconcile(installed: Path, tmp_path: Path) -> None:
    project = tmp_path / "plant"
    project.mkdir()
    for name in ("mappings", "master_data"):
        shutil.copytree(REPO / name, project / name)
    shutil.copy(REPO / "conveyor.yaml", project / "conveyor.yaml")
    shutil.copy(REPO / "samples" / "messages.jsonl", project / "messages.jsonl")
    shutil.copy(REPO / "tests" / "data" / "reconcile" / "wms_snapshot.json", project / "wms.json")
    conveyor = installed / "bin" / "conveyor"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    _run(conveyor, "--project", project, "db", "upgrade", cwd=project, env=env)
    assert (project / ".conveyor" / "ledger.db").is_file()
    cli = (conveyor, "--project", project)
    accepted = json.loads(_run(*cli, "--json", "accept", "messages.jsonl", cwd=project, env=env))
    assert accepted["accepted"] > 0
    assert accepted["rejected"] == 0
    _run(
        conveyor, "--project", project, "reconcile", "--systems", "hub,wms",
        "--snapshot", "wms=wms.json", "--out", project / "out", cwd=project, env=env,
    )  # fmt: skip
    written = {p.suffix for p in (project / "out").rglob("*") if p.is_file()}
    assert {".html", ".xlsx", ".csv", ".json"} <= written


def test_installed_demo_runs_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = _run(installed / "bin" / "conveyor", "demo", "--json", cwd=work, env=env)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["postings"] == 11
    assert summary["checks"]["same_documents"] is True
    assert summary["accuracy_pct"] == 80.0
    report = Path(summary["report_dir"])
    assert report.is_relative_to(work / "conveyor-demo")
    assert {p.name for p in report.iterdir()} >= {"report.html", "report.xlsx", "report.json"}
    assert [p.name for p in work.iterdir()] == ["conveyor-demo"]  # nothing written elsewhere


def test_required_dependencies_are_imported() -> None:
    """Nothing is required that nothing imports (distribution name → import name)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    import_names = {
        "sqlalchemy": "sqlalchemy",
        "psycopg[binary]": "psycopg",
        "uvicorn[standard]": "uvicorn",  # the extra brings httptools and uvloop, used by uvicorn
        "pyyaml": "yaml",
        "charset-normalizer": "charset_normalizer",
        "tzdata": None,  # zoneinfo's data on machines without a system tz database
    }
    sources = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in ("conveyor", "connectors", "simulators")
        if (REPO / folder).is_dir()
        for p in (REPO / folder).rglob("*.py")
    )
    unused = []
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        module = import_names.get(name, name.replace("-", "_"))
        if module is None:
            continue
        if not re.search(rf"^\s*(?:from|import)\s+{re.escape(module)}\b", sources, re.M):
            unused.append(name)
    assert unused == []
