"""``report.html``: one self-contained page, everything escaped; rendered in headless Chromium
(screenshot in ``artifacts/``) with the summary inside the first screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.reconcile.reports import Report
from conveyor.reconcile.reports.html_report import format_money, format_number, write
from conveyor.reconcile.service import RunOptions, run_reconciliation

REPO = Path(__file__).resolve().parents[4]
ARTIFACTS = REPO / "artifacts"
VIEWPORT = (1366, 768)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium_args(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
    ]


@pytest.fixture
def scenario_html(plant: Project, hub: Ledger, tmp_path: Path) -> Path:
    """The seeded scenario's report.html."""
    files = plant.root / "files"
    options = RunOptions(
        systems=["sap", "wms", "hub"],
        out=tmp_path / "out",
        snapshots={"sap": files / "sap_mard.csv", "wms": files / "wms_snapshot.json"},
        runner="alice",
        alerts=False,
    )
    run_reconciliation(plant, hub, options)
    return tmp_path / "out" / "report.html"


def test_page_is_self_contained_and_escaped(scenario_html: Path) -> None:
    html = scenario_html.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "@import" not in html
    assert "default-src 'none'" in html
    assert "<script>alert(" not in html  # a description from outside
    assert "&lt;script&gt;alert(&#39;carton&#39;)&lt;/script&gt;" in html
    assert "=HYPERLINK(&#34;http://evil.example/x&#34;,&#34;click me&#34;)" in html
    assert html.index('id="summary"') < html.index('id="locations"') < html.index('id="lines"')
    assert "41.67 %" in html
    assert "7,999.70" in html
    assert "<svg" in html


def test_long_runs_list_the_largest_lines_and_say_where_the_rest_are(tmp_path: Path) -> None:
    from conveyor.reconcile.compare import Comparison
    from conveyor.reconcile.reports import report_from_result
    from conveyor.reconcile.sources import Chunk

    comparison = Comparison(["erp", "wms"])
    comparison.add("erp", Chunk([(f"M{i}", "L1", "", str(i), "KG", "") for i in range(50)]))
    comparison.add("wms", Chunk([(f"M{i}", "L1", "", str(i % 7), "KG", "") for i in range(50)]))
    report: Report = report_from_result(
        comparison.result(),
        run_id="r",
        as_of=datetime.now(UTC),
        inputs=[],
        generated_at=datetime.now(UTC),
    )
    write(report, tmp_path / "report.html", max_lines=10)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count('data-status="') == 10
    assert "Showing the 10 lines with the largest variance of 50" in html
    assert 'data-status="quantity_mismatch"' in html


def test_number_formats() -> None:
    from decimal import Decimal

    assert format_number(Decimal("1234567.125")) == "1,234,567.125"
    assert format_number(Decimal("-1000")) == "-1,000"
    assert format_number(3) == "3"
    assert format_number(None) == ""
    assert format_money("7999.7") == "7,999.70"
    assert format_money(None) == "–"


@pytest.mark.browser
def test_report_renders_in_headless_chromium_with_the_summary_on_the_first_screen(
    scenario_html: Path, tmp_path: Path
) -> None:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "reconcile_report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [
            chromium,
            *_chromium_args(tmp_path / "profile"),
            f"--screenshot={shot}",
            scenario_html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # measure where the summary ends in the same window, from the rendered layout
    probe = scenario_html.with_name("probe.html")
    probe.write_text(
        scenario_html.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>var r = document.getElementById('summary').getBoundingClientRect();"
            "document.body.setAttribute('data-summary-bottom', Math.ceil(r.bottom));</script>"
            "</body>",
        ),
        encoding="utf-8",
    )
    dom = subprocess.run(
        [chromium, *_chromium_args(tmp_path / "profile2"), "--dump-dom", probe.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    match = re.search(r'data-summary-bottom="(\d+)"', dom)
    assert match, dom[:500]
    assert 0 < int(match.group(1)) <= VIEWPORT[1]
    # the filters work: the script ran and counted the lines it shows
    assert re.search(r"\d+ of 12 lines shown", dom)
