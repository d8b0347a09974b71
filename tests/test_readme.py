"""The README's fuller walk through, run command by command on a copy of the project, ends with
the reconciliation the README states (one story: the sample day of plant 1000)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def walk_through() -> list[list[str]]:
    """The commands of the README's "fuller walk through" block, as argument lists."""
    text = README.read_text(encoding="utf-8")
    start = text.index("A fuller walk through")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block is not None
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "conveyor", line
            commands.append(words[1:])
    return commands


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's configuration, mappings, master data and samples, as cwd."""
    root = tmp_path / "plant"
    root.mkdir()
    shutil.copy(ROOT / "conveyor.yaml", root)
    for folder in ("mappings", "master_data", "samples", "schemas"):
        shutil.copytree(ROOT / folder, root / folder)
    for name in ("CONVEYOR_DB_URL", "CONVEYOR_BROKER_URL", "CONVEYOR_PROJECT", "CONVEYOR_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(root)
    return root


def test_the_walk_through_tells_one_story(project: Path) -> None:
    commands = walk_through()
    assert [c[0] for c in commands] == [
        "db",
        "accept",
        "ingest",
        "mappings",
        "run",
        "status",
        "reconcile",
    ]
    runner = CliRunner()
    outputs = []
    for args in commands:
        result = runner.invoke(main, args, catch_exceptions=False)
        expected = 1 if args[0] == "ingest" else 0  # ingest says so when it parked a record
        assert result.exit_code == expected, f"conveyor {shlex.join(args)}\n{result.output}"
        outputs.append(result.output)
    assert "accepted 2, duplicate 0, rejected 0, parked 1" in outputs[2]
    assert "P-9999" in outputs[3]  # the one unmapped part number
    assert "60.00 %" in outputs[-1]

    out = project / commands[-1][commands[-1].index("--out") + 1]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    assert (summary["lines"], summary["matched"], summary["exact"]) == (5, 3, 3)
    assert summary["quantity_mismatch"] == 1
    assert summary["missing"] == {"hub": 1, "wms": 0}
    assert summary["accuracy_pct"] == 60.0
    assert summary["variance_value"] == "846.25"
    assert summary["unmapped"] == 0
    differing = {
        (line["material"], line["location"], line["lot"]): (
            line["status"],
            line["quantities"],
            line["variance_value"],
        )
        for line in report["lines"]
        if line["status"] != "match"
    }
    assert differing == {
        ("RM-1001", "1000/WIP-MOLD", "L2611-07"): (
            "quantity_mismatch",
            {"hub": "120", "wms": "119.5"},
            "-6.25",
        ),
        ("PK-3001", "1000/PK", None): ("missing_in:hub", {"hub": None, "wms": "400"}, "840"),
    }
    matched = {
        (line["material"], line["location"]): line["quantities"]["hub"]
        for line in report["lines"]
        if line["status"] == "match"
    }
    assert matched == {
        ("RM-1001", "1000/RM"): "750.25",
        ("RM-2001", "1000/RM"): "4600",
        ("RM-2001", "1000/WIP-ASSY"): "384",
    }
    text = README.read_text(encoding="utf-8")
    assert "accuracy 60.00 %" in text
    assert "variance value 846.25" in text


def test_the_two_commands_are_the_demo_and_the_ci_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Two commands")
    demo, tests = re.findall(r"```bash\n(.*?)\n```", text[start:], re.S)[:2]
    assert demo.startswith("python3 -m venv .venv")
    assert demo.endswith("&& pip install -e . && conveyor demo")
    assert tests.endswith('&& python -m pytest -m "not slow"')
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python -m pytest -m "not slow"' in ci
    extras = re.search(r"pip install -e '\.\[([a-z,]+)\]'", tests)
    assert extras is not None
    assert f"pip install -q -e '.[{extras.group(1)}]'" in ci  # the same extras as CI installs


def test_the_demo_output_in_the_readme_has_the_figures_the_demo_test_checks() -> None:
    from tests.conveyor.demo.test_demo import FIGURES

    text = README.read_text(encoding="utf-8")
    shown = text[text.index("## What `conveyor demo` shows") : text.index("## From the demo")]
    assert f"inventory record accuracy {FIGURES['accuracy_pct']:.2f} %" in shown
    assert (
        f"orders {FIGURES['orders']} · movements {FIGURES['movements']} · postings "
        f"{FIGURES['postings']} · parked {FIGURES['parked']} · replayed {FIGURES['replayed']} · "
        f"lost answers recovered {FIGURES['lost_answers_recovered']} · alerts {FIGURES['alerts']}"
    ) in shown
