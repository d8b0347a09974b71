"""Dependencies point one way (read from the source with ``ast``, nothing imported): the engine
never imports a plug-in, a simulator or Airflow at module level; a transport knows no delivery
worker; the ledger knows no transport."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "conveyor"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, *, is_package: bool, top_level_only: bool) -> Iterator[str]:
    """Absolute names of the modules ``source`` imports (relative imports resolved). With
    ``top_level_only``, imports inside functions are left out (they run only when called);
    imports under ``if``/``try`` at module level count, ``if TYPE_CHECKING`` included."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]

    def walk(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in nodes:
            yield node
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and top_level_only:
                continue
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from walk([child])

    for node in walk(tree.body):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def engine_modules(folder: Path = ENGINE) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def violations(folder: Path, forbidden: tuple[str, ...], *, top_level_only: bool) -> list[str]:
    found = []
    for path in engine_modules(folder):
        module = module_name(path)
        for name in imports(
            path.read_text(encoding="utf-8"),
            module,
            is_package=path.name == "__init__.py",
            top_level_only=top_level_only,
        ):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return sorted(set(found))


def test_the_walk_sees_every_kind_of_import() -> None:
    source = (
        "import airflow.sdk\n"
        "from connectors import fake\n"
        "from ..delivery import worker\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import simulators.sap\n"
        "try:\n    import pika\nexcept ImportError:\n    pass\n"
        "def lazy():\n    import zeep\n"
    )
    top = set(imports(source, "conveyor.transport.x", is_package=False, top_level_only=True))
    assert {"airflow.sdk", "connectors.fake", "conveyor.delivery.worker", "simulators.sap"} <= top
    assert "pika" in top
    assert "zeep" not in top
    everywhere = set(
        imports(source, "conveyor.transport.x", is_package=False, top_level_only=False)
    )
    assert "zeep" in everywhere


def test_the_engine_imports_no_plugin_simulator_or_airflow_at_module_level() -> None:
    assert len(engine_modules()) > 50
    found = violations(ENGINE, ("connectors", "simulators", "airflow"), top_level_only=True)
    # the provider's modules (conveyor/airflow/*) are Airflow's side; its package __init__
    # (get_provider_info, read by Airflow and by the hub alike) is not
    provider = "conveyor/airflow/"
    assert [v for v in found if not v.startswith(provider)] == []
    assert not [v for v in found if v.startswith(provider + "__init__.py ")]
    assert not [v for v in found if " imports connectors" in v or " imports simulators" in v]


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("transport", ("conveyor.delivery",)),
        ("ledger", ("conveyor.transport",)),
    ],
)
def test_lower_layers_know_nothing_of_higher_ones(folder: str, forbidden: tuple[str, ...]) -> None:
    assert engine_modules(ENGINE / folder)
    assert violations(ENGINE / folder, forbidden, top_level_only=False) == []
