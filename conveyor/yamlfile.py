"""YAML files that people edit: load with line numbers, validate against a JSON Schema, and report
``file:line: message`` instead of a traceback. The one YAML loader: ``conveyor.yaml`` and
``mappings/*.yaml`` both come through ``load_yaml``.

A file is refused before it can cost memory: over ``max_yaml_bytes`` it is not read; while it is
composed, nesting deeper than ``max_yaml_depth``, more than ``max_yaml_aliases`` alias uses, or
aliases that expand the document past ``max_yaml_nodes`` values (the "billion laughs") stop it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import ConfigError
from conveyor.limits import Limits, current
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


class _TooBig(Exception):
    """A limit was crossed while composing (carries the line of the node that crossed it)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting nesting and aliases as it composes the node tree."""

    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self.limits = limits
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_yaml_aliases:
                raise _TooBig(
                    f"more than {self.limits.max_yaml_aliases} aliases (limits.max_yaml_aliases)",
                    line,
                )
        self.depth += 1
        if self.depth > self.limits.max_yaml_depth:
            raise _TooBig(
                f"nested deeper than {self.limits.max_yaml_depth} levels (limits.max_yaml_depth)",
                line,
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values the document holds with every alias expanded (stops counting past
    ``limit``). Shared nodes are sized once, so this costs as much as the node tree itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def load_yaml(path: Path, limits: Limits | None = None) -> LoadedYaml:
    """Parse ``path`` safely within ``limits`` (the process's by default); a syntax error or a
    crossed limit becomes ``ConfigError`` with file and line."""
    limits = limits or current()
    size = path.stat().st_size
    if size > limits.max_yaml_bytes:
        raise ConfigError(
            f"file of {size:,} bytes is over the {limits.max_yaml_bytes:,}-byte limit for YAML "
            "files (limits.max_yaml_bytes in conveyor.yaml); is this the right file?",
            file=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
            "save the file as UTF-8",
            file=str(path),
        ) from None
    loader: _LimitedLoader | None = None
    try:
        loader = _LimitedLoader(text, limits)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is not None:
            expanded = _expanded_size(node, limits.max_yaml_nodes)
            if expanded > limits.max_yaml_nodes:
                raise _TooBig(
                    f"aliases expand the file to more than {limits.max_yaml_nodes:,} values "
                    "(limits.max_yaml_nodes)",
                    1,
                )
        data = loader.construct_document(node) if node is not None else None
    except _TooBig as exc:
        raise ConfigError(f"refused: {exc}", file=str(path), line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"YAML syntax: {exc.problem or exc}", file=str(path), line=line) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"character #x{exc.character:04x} is not allowed in YAML", file=str(path), line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML: {exc}", file=str(path), line=1) from None
    finally:
        if loader is not None:
            loader.dispose()
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


def load_validated(path: Path, schema_name: str, limits: Limits | None = None) -> LoadedYaml:
    """Load and validate; raise ``ConfigError`` naming the first problem's file and line."""
    loaded = load_yaml(path, limits)
    problems = schema_problems(loaded, schema_name)
    if problems:
        first = problems[0]
        others = "".join(f"\n{p}" for p in problems[1:])
        raise ConfigError(first.message + others, file=first.file, line=first.line)
    return loaded
