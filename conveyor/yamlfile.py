"""YAML files that people edit: load with line numbers, validate against a JSON Schema, and report
``file:line: message`` instead of a traceback. Used for ``conveyor.yaml`` and
``mappings/*.yaml``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import ConfigError
from conveyor.paths import schemas_dir


@dataclass(frozen=True)
class FileProblem:
    """One problem in an edited file, with the line a person should look at."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class LoadedYaml:
    """A parsed YAML document with the node tree kept, to find the line of any JSON path."""

    path: Path
    data: Any
    node: yaml.Node | None
    text: str

    def line_of(self, json_path: list[Any] | tuple[Any, ...]) -> int:
        """1-based line of the value at ``json_path`` (the nearest existing parent if it is
        absent)."""
        node = self.node
        line = node.start_mark.line + 1 if node is not None else 1
        for part in json_path:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == part:
                        line = key_node.start_mark.line + 1
                        node = value_node
                        break
                else:
                    return line
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and part < len(node.value)
            ):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def load_yaml(path: Path) -> LoadedYaml:
    """Parse ``path`` safely; a syntax error becomes ``ConfigError`` with file and line."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"YAML syntax: {exc.problem or exc}", file=str(path), line=line) from None
    return LoadedYaml(path=path, data=data, node=node, text=text)


def schema_problems(loaded: LoadedYaml, schema_name: str) -> list[FileProblem]:
    """Every place where ``loaded`` breaks ``schemas/<schema_name>``, with its line."""
    from jsonschema import Draft202012Validator

    schema = json.loads((schemas_dir() / schema_name).read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    problems = []
    errors = validator.iter_errors(loaded.data)
    for err in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(err.absolute_path)
        where = ".".join(str(p) for p in path) or "(top)"
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            # point at the unexpected key itself (usually a typo), not at its parent
            allowed = set(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                path.append(extra[0])
        problems.append(
            FileProblem(str(loaded.path), loaded.line_of(path), f"{where}: {err.message}")
        )
    return problems


def load_validated(path: Path, schema_name: str) -> LoadedYaml:
    """Load and validate; raise ``ConfigError`` naming the first problem's file and line."""
    loaded = load_yaml(path)
    problems = schema_problems(loaded, schema_name)
    if problems:
        first = problems[0]
        others = "".join(f"\n{p}" for p in problems[1:])
        raise ConfigError(first.message + others, file=first.file, line=first.line)
    return loaded
