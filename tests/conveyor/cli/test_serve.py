"""``conveyor tokens``: a token is printed once, stored as a hash, listed without it, revoked."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from conveyor.api.tokens import TokenStore
from conveyor.cli import main


def test_tokens_add_list_remove(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yaml").write_text("systems: {}\n", encoding="utf-8")
    runner = CliRunner()
    added = runner.invoke(
        main, ["--project", str(tmp_path), "tokens", "add", "mes", "--scope", "ingest"]
    )
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[0]
    assert token.startswith("cvy_")
    store = TokenStore.of_project(tmp_path)
    found = store.check(token)
    assert found is not None
    assert found.scope == "ingest"
    assert token not in (tmp_path / ".conveyor" / "tokens.json").read_text()
    listed = runner.invoke(main, ["--project", str(tmp_path), "--json", "tokens", "list"])
    assert '"mes"' in listed.output
    assert token not in listed.output
    again = runner.invoke(
        main, ["--project", str(tmp_path), "tokens", "add", "mes", "--scope", "read"]
    )
    assert again.exit_code == 1
    assert "exists" in again.output
    removed = runner.invoke(main, ["--project", str(tmp_path), "tokens", "remove", "mes"])
    assert removed.exit_code == 0
    assert store.check(token) is None
