"""Fuzzing the YAML an integrator edits: any file through ``yamlfile.load_yaml``, ``conveyor.yaml``
through ``Project.load`` (and the sections it builds: systems, routes, retry, limits), and mapping
files through the mapping compiler. Only ``ConfigError`` may come out, or a list of problems each
with its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from conveyor import limits
from conveyor.config import Project
from conveyor.mapping import MappingEngine
from conveyor.mapping.engine import compile_mapping
from conveyor.yamlfile import load_yaml
from tests.fuzz.harness import FUZZ, run
from tests.fuzz.strategies import mutated, raw_bytes, replace_leaves

REPO = Path(__file__).resolve().parents[2]
CONFIG = (REPO / "conveyor.yaml").read_text(encoding="utf-8")
MAPPINGS = {
    p.name: p.read_text(encoding="utf-8") for p in sorted((REPO / "mappings").glob("*.yaml"))
}
YAML_PIECES = [
    "&a [*a]",
    "!!python/object/apply:os.system ['true']",
    "? [1]\n: 2",
    "*undefined",
    "%YAML 1.1\n---\n",
    "<<: *x",
    "\t",
    "{",
    "- - - - - - - - - - -",
]
SAMPLES = {"conveyor.yaml": CONFIG, **MAPPINGS}
LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@st.composite
def yaml_texts(draw: st.DrawFn, names: list[str]) -> bytes:
    """A sample file mutated as text, with a YAML piece inserted, re-dumped with some values
    replaced (valid YAML, wrong shapes), or any bytes."""
    kind = draw(st.integers(0, 5))
    sample = SAMPLES[draw(st.sampled_from(names))]
    if kind == 0:
        return draw(raw_bytes)
    if kind == 1:
        lines = sample.splitlines()
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(YAML_PIECES)))
        return "\n".join(lines).encode()
    if kind == 2:
        data = replace_leaves(yaml.safe_load(sample), draw)
        plain = json.loads(json.dumps(data, default=str))  # YAML has no Decimal
        return yaml.safe_dump(plain, allow_unicode=True).encode("utf-8", "surrogatepass")
    return draw(mutated(sample))


@pytest.fixture(scope="module")
def shipped() -> MappingEngine:
    engine = MappingEngine.load(Project.load(REPO))
    limits.use(limits.DEFAULT)
    return engine


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(yaml_texts(sorted(SAMPLES)))
@example(LAUGHS.encode())
@example(b"a: " + b"[" * 200)
@example(b"\xff\xfe")
@example(b"a: \x07")  # escaped as a ReaderError once
def test_load_yaml(tmp_path_factory: Any, data: bytes) -> None:
    path = _write(tmp_path_factory.mktemp("yaml"), "any.yaml", data)
    run("yaml file", lambda: load_yaml(path))


def _load_project(root: Path) -> None:
    project = Project.load(root)
    _ = (project.systems, project.router, project.retry, project.limits, project.alerts_on_accept)


@FUZZ
@given(yaml_texts(["conveyor.yaml"]))
@example(b"systems: {a: {connector: fake, settings: []}}")
@example(b"retry: {max_attempts: 0}")
@example(b"limits: {max_json_depth: -1}")
def test_conveyor_yaml(tmp_path_factory: Any, data: bytes) -> None:
    root = tmp_path_factory.mktemp("project")
    _write(root, "conveyor.yaml", data)
    try:
        run("conveyor.yaml", lambda: _load_project(root))
    finally:
        limits.use(limits.DEFAULT)


@FUZZ
@given(st.sampled_from(sorted(MAPPINGS)).flatmap(lambda n: st.tuples(st.just(n), yaml_texts([n]))))
@example(
    (
        "mes.yaml",
        b"system: mes\nmessages: {material_consumption: {in: {key: [a], "
        b"fields: {quantity: {path: '[[['}}}}}",
    )
)
def test_mapping_compiler(
    shipped: MappingEngine, tmp_path_factory: Any, named: tuple[str, bytes]
) -> None:
    name, data = named
    root = tmp_path_factory.mktemp("mappings")
    path = _write(root, name, data)
    found = run(
        "mapping file",
        lambda: compile_mapping(path, root, shipped.master_data, shipped.units),
    )
    if found is not None:
        _compiled, problems = found
        for problem in problems:
            assert problem.line >= 1
            assert str(problem).strip()
