"""The mapping engine: load and check every mapping file and master-data table of a project once,
then map external records to canonical messages (inbound), canonical messages to external documents
(outbound) and raw stock rows to canonical snapshot rows, fast.

Every canonical message carries ``mapping_version``: a content hash of the system's mapping file
and of the tables its rules use. ``reload_if_changed`` compares file sizes and modification times
and swaps in a freshly compiled state, so a running worker picks up a fixed mapping; a broken edit
keeps the last good state (and says so) instead of stopping the worker.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import messages as canonical
from conveyor.errors import ConfigError, MappingError, Problem, ValidationError
from conveyor.mapping.compiler import (
    MISSING,
    SPEC_MARKERS,
    Builder,
    Compiler,
    Fail,
    Failure,
    Getter,
    problems_of,
)
from conveyor.mapping.masterdata import MasterData
from conveyor.mapping.parsers import timezone
from conveyor.mapping.readers import CsvOptions
from conveyor.mapping.units import Units
from conveyor.quantity import QuantityError, format_quantity, parse_quantity
from conveyor.yamlfile import FileProblem, LoadedYaml, load_yaml

if TYPE_CHECKING:
    from conveyor.config import Project

log = logging.getLogger(__name__)

MAPPING_SCHEMA = "mapping.schema.json"
DIRECTIONS = ("in", "out")
SNAPSHOT = "stock_snapshot"


@dataclass(frozen=True, slots=True)
class MappedRow:
    """One raw stock row of a system in canonical terms (quantity in the base unit)."""

    material: str
    location: str
    lot: str
    quantity: Decimal
    uom: str


# ---------------------------------------------------------------------- canonical field names
@cache
def payload_fields(message_type: str) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """``(properties, required)`` of a message type's payload; None when it has no schema."""
    try:
        schema = canonical.schema(message_type)
    except (KeyError, FileNotFoundError):
        return None
    payload = schema.get("properties", {}).get("payload", {})
    return payload.get("properties", {}), tuple(payload.get("required", ()))


def _item_fields(props: Mapping[str, Any], name: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    items = props.get(name, {}).get("items", {})
    return items.get("properties", {}), tuple(items.get("required", ()))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format_quantity(value)
    return str(value)


# ---------------------------------------------------------------------- compiled directions
@dataclass
class Inbound:
    """A compiled inbound mapping of one message type."""

    message_type: str
    source: str
    base: dict[str, Any]
    key: list[tuple[Getter, int]]
    occurred_at: tuple[Getter, int] | None
    as_of: tuple[Getter, int] | None
    when: tuple[Callable[[Any], bool], str, int] | None
    payload: Builder
    version: str
    _iso: dict[datetime, str] = field(default_factory=dict, repr=False)

    def _check_when(self, record: Any, file: str | None, line: int | None) -> None:
        if self.when is not None and not self.when[0](record):
            raise problems_of(
                [
                    Failure(
                        "$",
                        self.when[2],
                        Fail("when", f"record does not satisfy the mapping's when: {self.when[1]}"),
                    )
                ],
                self.base,
                file=file,
                line=line,
            )

    def build(
        self, record: Any, file: str | None, line: int | None
    ) -> tuple[dict[str, Any], list[Failure]]:
        """The payload (or snapshot row) and the failures met on the way."""
        if self.when is not None:
            self._check_when(record, file, line)
        failures: list[Failure] = []
        return self.payload(record, failures, ""), failures

    def key_of(self, record: Any, failures: list[Failure]) -> str | None:
        """The business key: the key parts joined with ``/``."""
        parts = []
        for getter, spec_line in self.key:
            try:
                value = getter(record)
            except Fail as fail:
                failures.append(Failure("key", spec_line, fail))
                return None
            if value is MISSING or value is None or value == "":
                failures.append(
                    Failure("key", spec_line, Fail("key", "a part of the business key is empty"))
                )
                return None
            parts.append(_text(value))
        return "/".join(parts)

    def moment(
        self, spec: tuple[Getter, int] | None, record: Any, failures: list[Failure], name: str
    ) -> str:
        """A timestamp field (``occurred_at``/``as_of``), or now when the mapping has none."""
        if spec is None:
            return datetime.now(UTC).isoformat()
        getter, spec_line = spec
        try:
            value = getter(record)
        except Fail as fail:
            failures.append(Failure(name, spec_line, fail))
            return ""
        if value is MISSING or value is None:
            failures.append(Failure(name, spec_line, Fail("required", f"no {name}")))
            return ""
        if isinstance(value, datetime):
            # An export repeats the same posting time on many rows: format each one once.
            text = self._iso.get(value)
            if text is None:
                if len(self._iso) > 4096:
                    self._iso.clear()
                text = self._iso[value] = value.isoformat()
            return text
        return str(value)

    def map(
        self, record: Any, file: str | None, line: int | None, validate: bool = True
    ) -> dict[str, Any]:
        """The canonical message for ``record`` (validated unless ``validate`` is false);
        ``MappingError`` otherwise."""
        payload, failures = self.build(record, file, line)
        key = self.key_of(record, failures)
        occurred = self.moment(self.occurred_at, record, failures, "occurred_at")
        if failures:
            raise problems_of(failures, self.base, file=file, line=line)
        message = canonical.new_message(
            self.message_type,
            self.source,
            key or "",
            payload,
            occurred_at=occurred,
            mapping_version=self.version,
        )
        return validated(message, self.base, file, line) if validate else message

    def row(self, record: Any, file: str | None, line: int | None) -> MappedRow:
        """One stock row (``stock_snapshot`` mappings)."""
        data, failures = self.build(record, file, line)
        for name in ("material", "location", "quantity", "uom"):
            if name not in data and not any(f.field == name for f in failures):
                failures.append(
                    Failure(name, self.base.get("mapping_line", 0), Fail("required", f"no {name}"))
                )
        if failures:
            raise problems_of(failures, self.base, file=file, line=line)
        quantity = data["quantity"]
        if not isinstance(quantity, Decimal):
            try:
                quantity = parse_quantity(quantity)
            except QuantityError as exc:
                raise problems_of(
                    [Failure("quantity", 0, Fail("parse.decimal", str(exc), quantity))],
                    self.base,
                    file=file,
                    line=line,
                ) from None
        lot = data.get("lot")
        return MappedRow(
            material=str(data["material"]),
            location=str(data["location"]),
            lot="" if lot is None else _text(lot),
            quantity=quantity,
            uom=str(data["uom"]),
        )


@dataclass
class Outbound:
    """A compiled outbound mapping of one message type."""

    message_type: str
    base: dict[str, Any]
    cases: list[tuple[Callable[[Any], bool], Builder]]
    document: Builder | None
    line: int

    def map(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The external document for a validated canonical message."""
        failures: list[Failure] = []
        builder = next((b for condition, b in self.cases if condition(message)), self.document)
        if builder is None:
            raise problems_of(
                [Failure("$", self.line, Fail("cases", "no case of the outbound mapping matches"))],
                self.base,
                file=None,
                line=None,
            )
        document = builder(message, failures, "")
        if failures:
            raise problems_of(failures, self.base, file=None, line=None)
        return document  # type: ignore[no-any-return]


def validated(
    message: dict[str, Any], base: Mapping[str, Any], file: str | None, line: int | None
) -> dict[str, Any]:
    """``canonical.validate``; schema problems become ``MappingError``s naming the mapping."""
    try:
        return canonical.validate(message)
    except ValidationError as exc:
        raise MappingError(
            [
                Problem(
                    field=p.field,
                    value=p.value,
                    rule=f"schema.{p.rule}",
                    message=(
                        f"{p.message} (the mapped message breaks the canonical schema) "
                        f"[system {base.get('system')}, mapping {base.get('mapping_file')}]"
                    ),
                    file=file,
                    line=line,
                    extra=dict(base),
                )
                for p in exc.problems
            ]
        ) from None


@dataclass
class CompiledMapping:
    """One mapping file, compiled: its inbound and outbound mappings and its version."""

    path: Path
    display: str
    system_id: str
    version: str
    zone: tzinfo
    csv: CsvOptions
    inbound: dict[str, Inbound] = field(default_factory=dict)
    outbound: dict[str, Outbound] = field(default_factory=dict)


# ---------------------------------------------------------------------- compiling a file
def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def compile_mapping(
    path: Path, root: Path, master: MasterData, units: Units, source: str | None = None
) -> tuple[CompiledMapping | None, list[FileProblem]]:
    """Compile one mapping file; every problem comes back with its line."""
    display = _relative(path, root)
    try:
        loaded = load_yaml(path)
    except ConfigError as exc:
        return None, [FileProblem(display, exc.line or 1, _strip_where(str(exc), exc))]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [FileProblem(display, 1, f"cannot read: {exc}")]
    if not isinstance(loaded.data, dict):
        return None, [FileProblem(display, 1, "a mapping file must be a YAML object (messages: …)")]
    problems = _schema_problems(loaded, display)
    if problems:
        return None, problems
    data = loaded.data
    system_id = str(data.get("system") or path.stem)
    try:
        zone = timezone(data.get("timezone"))
    except ValueError as exc:
        problems.append(FileProblem(display, loaded.line_of(["timezone"]), str(exc)))
        zone = UTC
    compiler = Compiler(loaded, display, system_id, master, units, zone)
    name = source or path.stem
    inbound_specs: dict[str, Any] = {}
    outbound_specs: dict[str, Any] = {}
    for message_type, spec in (data.get("messages") or {}).items():
        if "in" in spec:
            inbound_specs[message_type] = spec["in"]
        if "out" in spec:
            outbound_specs[message_type] = spec["out"]
    # Compile first (it records the tables used), then hash, then bind the version.
    inbound_parts = {
        t: _compile_inbound(compiler, loaded, t, s, name) for t, s in inbound_specs.items()
    }
    outbound_parts = {t: _compile_outbound(compiler, t, s, name) for t, s in outbound_specs.items()}
    problems.extend(compiler.problems)
    digest = hashlib.sha256(loaded.text.encode("utf-8"))
    digest.update(master.digest(compiler.tables_used).encode())
    version = digest.hexdigest()[:16]
    compiled = CompiledMapping(
        path=path,
        display=display,
        system_id=system_id,
        version=version,
        zone=zone,
        csv=CsvOptions.from_mapping(data.get("csv")),
    )
    for message_type, inbound in inbound_parts.items():
        if inbound is not None:
            inbound.version = version
            inbound.base["mapping_version"] = version
            compiled.inbound[message_type] = inbound
    for message_type, outbound in outbound_parts.items():
        outbound.base["mapping_version"] = version
        compiled.outbound[message_type] = outbound
    return compiled, problems


@cache
def _mapping_validator() -> Any:
    import json

    from jsonschema import Draft202012Validator

    from conveyor.paths import schemas_dir

    return Draft202012Validator(
        json.loads((schemas_dir() / MAPPING_SCHEMA).read_text(encoding="utf-8"))
    )


def _schema_problems(loaded: LoadedYaml, display: str) -> list[FileProblem]:
    """Schema problems with the line of the offending key (also for unknown property names)."""
    problems = []
    errors = sorted(_mapping_validator().iter_errors(loaded.data), key=lambda e: list(e.path))
    for err in errors:
        path = list(err.absolute_path)
        message = err.message
        if "propertyNames" in err.schema_path and isinstance(err.instance, str):
            path.append(err.instance)
            choices = err.schema.get("enum", []) if isinstance(err.schema, dict) else []
            message = f"unknown name {err.instance!r}{_did_you_mean(err.instance, choices)}"
        where = ".".join(str(p) for p in path) or "(top)"
        problems.append(FileProblem(display, loaded.line_of(path), f"{where}: {message}"))
    return problems


def _strip_where(text: str, exc: ConfigError) -> str:
    prefix = (
        f"{exc.file}:{exc.line}: "
        if exc.file and exc.line
        else (f"{exc.file}: " if exc.file else "")
    )
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def _base(compiler: Compiler, name: str, message_type: str, direction: str) -> dict[str, Any]:
    return {
        "system": name,
        "mapping_file": compiler.display,
        "message_type": message_type,
        "direction": direction,
    }


def _check_fields(
    compiler: Compiler,
    fields: Mapping[str, Any],
    at: list[Any],
    props: Mapping[str, Any],
    required: Sequence[str],
    label: str,
) -> None:
    """Inbound output field names must be canonical; required ones must be mapped."""
    for name, node in fields.items():
        where = [*at, name]
        if name not in props:
            compiler.problem(
                where, f"unknown field {name!r} for {label}" + _did_you_mean(name, props)
            )
            continue
        kind = "object" if name == "attributes" else props[name].get("type")
        is_each = isinstance(node, Mapping) and "each" in node
        is_spec = isinstance(node, str) or (
            isinstance(node, Mapping) and any(k in node for k in SPEC_MARKERS)
        )
        if kind == "array":
            if not is_each:
                compiler.problem(where, f"{name} is a list: map it with `each:` and `fields:`")
                continue
            item_props, item_required = _item_fields(props, name)
            sub = node.get("fields")
            if isinstance(sub, Mapping):
                _check_fields(
                    compiler, sub, [*where, "fields"], item_props, item_required, f"{label}.{name}"
                )
        elif kind == "object":
            continue
        elif is_each:
            compiler.problem(where, f"{name} is a single value, not a list")
        elif isinstance(node, Mapping) and not is_spec:
            keys = ", ".join(str(k) for k in node)
            hint = "".join(
                _did_you_mean(str(k), ("path", "column", "const", "lookup", "default"))
                for k in node
            )
            compiler.problem(
                where,
                f"{name} needs a value spec (path, column, const, lookup, …), "
                f"not keys {keys}{hint}",
            )
    missing = [r for r in required if r not in fields]
    if missing:
        compiler.problem(at, f"required field(s) of {label} not mapped: {', '.join(missing)}")


def _compile_inbound(
    compiler: Compiler, loaded: LoadedYaml, message_type: str, spec: Mapping[str, Any], name: str
) -> Inbound | None:
    at: list[Any] = ["messages", message_type, "in"]
    described = payload_fields(message_type)
    fields = spec.get("fields") or {}
    if described is None:
        compiler.problem(at, f"{message_type} has no canonical schema: it cannot be mapped inbound")
        return None
    props, required = described
    if message_type == SNAPSHOT:
        row_props, row_required = _item_fields(props, "rows")
        _check_fields(
            compiler, fields, [*at, "fields"], row_props, row_required, "a stock_snapshot row"
        )
    else:
        _check_fields(compiler, fields, [*at, "fields"], props, required, message_type)
    convert = spec.get("convert_to_base")
    if isinstance(convert, Mapping):
        for role, field_name in convert.items():
            if field_name not in fields:
                compiler.problem(
                    [*at, "convert_to_base", role],
                    f"convert_to_base names field {field_name!r}, which is not mapped",
                )
    keys = spec.get("key")
    key_specs = keys if isinstance(keys, list) else ([] if keys is None else [keys])
    if not key_specs and message_type != SNAPSHOT:
        compiler.problem(at, "key is required: the business key (document + line) of the record")
    key = [
        (
            compiler.value(k, [*at, "key", i] if isinstance(keys, list) else [*at, "key"]),
            compiler.line([*at, "key"]),
        )
        for i, k in enumerate(key_specs)
    ]
    when = None
    if "when" in spec:
        when = (
            compiler.condition(spec["when"], [*at, "when"]),
            str(spec["when"]),
            compiler.line([*at, "when"]),
        )
    occurred = (
        (
            compiler.value(spec["occurred_at"], [*at, "occurred_at"]),
            compiler.line([*at, "occurred_at"]),
        )
        if "occurred_at" in spec
        else None
    )
    as_of = (
        (compiler.value(spec["as_of"], [*at, "as_of"]), compiler.line([*at, "as_of"]))
        if "as_of" in spec
        else None
    )
    payload = compiler.fields(
        fields,
        [*at, "fields"],
        outbound=False,
        convert=convert,
        convert_at=[*at, "convert_to_base"],
    )
    base = _base(compiler, name, message_type, "in")
    base["mapping_line"] = compiler.line(at)
    return Inbound(
        message_type=message_type,
        source=name,
        base=base,
        key=key,
        occurred_at=occurred,
        as_of=as_of,
        when=when,
        payload=payload,
        version="",
    )


def _compile_outbound(
    compiler: Compiler, message_type: str, spec: Mapping[str, Any], name: str
) -> Outbound:
    at: list[Any] = ["messages", message_type, "out"]
    cases = []
    for index, case in enumerate(spec.get("cases") or []):
        where = [*at, "cases", index]
        cases.append(
            (
                compiler.condition(case["when"], [*where, "when"]),
                compiler.node(case["document"], [*where, "document"], outbound=True),
            )
        )
    document = (
        compiler.node(spec["document"], [*at, "document"], outbound=True)
        if "document" in spec
        else None
    )
    return Outbound(
        message_type=message_type,
        base=_base(compiler, name, message_type, "out"),
        cases=cases,
        document=document,
        line=compiler.line(at),
    )


# ---------------------------------------------------------------------- the project state
@dataclass
class _State:
    master: MasterData
    units: Units
    files: dict[str, CompiledMapping]
    """By system name (file stem, and names of conveyor.yaml that point at the file)."""
    signature: tuple[tuple[str, int, int], ...]
    problems: list[FileProblem]


def _watched(project: Project) -> list[Path]:
    paths: list[Path] = []
    if project.mappings_dir.is_dir():
        paths += sorted(project.mappings_dir.glob("*.yaml")) + sorted(
            project.mappings_dir.glob("*.yml")
        )
    if project.master_data_dir.is_dir():
        paths += sorted(project.master_data_dir.glob("*.csv"))
    return paths


def _signature(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def build_state(project: Project) -> _State:
    """Read, check and compile everything; problems are collected, not raised."""
    watched = _watched(project)
    signature = _signature(watched)
    master = MasterData.load(project.master_data_dir, root=project.root)
    units = Units(master)
    problems = list(master.problems) + units.problems(master)
    files: dict[str, CompiledMapping] = {}
    mapping_files = [p for p in watched if p.suffix in (".yaml", ".yml")]
    declared: dict[str, Path] = {}
    for name, system in project.systems.items():
        if system.mapping:
            from conveyor.paths import confined

            try:
                declared[name] = confined(project.root, system.mapping)
            except ValueError as exc:
                problems.append(FileProblem("conveyor.yaml", 1, f"systems.{name}.mapping: {exc}"))
    compiled_by_path: dict[Path, CompiledMapping | None] = {}
    for path in [*mapping_files, *(p for p in declared.values() if p not in mapping_files)]:
        resolved = path.resolve()
        if resolved in compiled_by_path:
            continue
        if not path.exists():
            continue
        compiled, found = compile_mapping(path, project.root, master, units)
        problems.extend(found)
        compiled_by_path[resolved] = compiled
        if compiled is not None and path in mapping_files:
            files[path.stem] = compiled
    for name, path in declared.items():
        compiled = compiled_by_path.get(path.resolve())
        if compiled is None and not path.exists():
            problems.append(
                FileProblem("conveyor.yaml", 1, f"systems.{name}.mapping: no file {path}")
            )
        if compiled is not None:
            files[name] = compiled
    return _State(master, units, files, signature, _dedupe(problems))


def _dedupe(problems: list[FileProblem]) -> list[FileProblem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.file, p.line, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return sorted(out, key=lambda p: (p.file, p.line))


# ---------------------------------------------------------------------- the engine
class MappingEngine:
    """Maps records of every system of a project; see the module docstring."""

    def __init__(self, project: Project, state: _State) -> None:
        self.project = project
        self._state = state
        self._lock = threading.Lock()
        self.last_reload_error: str | None = None

    @classmethod
    def load(cls, project: Project) -> MappingEngine:
        """Load ``mappings/`` and ``master_data/`` once; ``ConfigError`` (first problem's file
        and line) when anything is wrong — ``conveyor mappings check`` lists every problem."""
        state = build_state(project)
        _raise_problems(state.problems)
        return cls(project, state)

    # ------------------------------------------------------------------ state
    @property
    def master_data(self) -> MasterData:
        """The master-data tables of the current state."""
        return self._state.master

    @property
    def units(self) -> Units:
        """Unit codes and conversions of the current state."""
        return self._state.units

    @property
    def systems(self) -> list[str]:
        """System names that have a mapping file."""
        return sorted(self._state.files)

    def reload_if_changed(self) -> bool:
        """Reload when a mapping file or table was added, removed or changed; True when it did.

        A reload that finds problems keeps the current state (``last_reload_error`` says why)."""
        current = _signature(_watched(self.project))
        if current == self._state.signature:
            return False
        with self._lock:
            if current == self._state.signature:
                return False
            state = build_state(self.project)
            if state.problems:
                first = state.problems[0]
                self.last_reload_error = f"{first} ({len(state.problems)} problem(s))"
                log.error(
                    "mapping reload refused, keeping the previous version: %s",
                    self.last_reload_error,
                )
                # Remember the broken signature so the same broken files are not recompiled on
                # every call; a further edit changes the signature again.
                self._state = _State(
                    self._state.master,
                    self._state.units,
                    self._state.files,
                    current,
                    self._state.problems,
                )
                return False
            self._state = state
            self.last_reload_error = None
            return True

    def mapping(self, system: str) -> CompiledMapping:
        """The compiled mapping file of ``system`` (``ConfigError`` when it has none)."""
        found = self._state.files.get(system)
        if found is None:
            known = ", ".join(sorted(self._state.files)) or "none"
            raise ConfigError(
                f"no mapping for system {system!r} (mapping files: {known})",
                file=str(self.project.mappings_dir / f"{system}.yaml"),
            )
        return found

    def version(self, system: str) -> str:
        """Content hash of the system's mapping file and the tables it uses."""
        return self.mapping(system).version

    def has_direction(self, system: str, message_type: str, direction: str) -> bool:
        """True when the system's mapping maps ``message_type`` in ``direction`` (in/out)."""
        found = self._state.files.get(system)
        if found is None:
            return False
        return message_type in (found.inbound if direction == "in" else found.outbound)

    def _inbound(self, system: str, message_type: str) -> Inbound:
        compiled = self.mapping(system)
        inbound = compiled.inbound.get(message_type)
        if inbound is None:
            raise ConfigError(
                f"{compiled.display} has no inbound mapping for {message_type}",
                file=compiled.display,
            )
        if inbound.source != system:
            inbound = _renamed(inbound, system)
            compiled.inbound[message_type] = inbound
        return inbound

    # ------------------------------------------------------------------ mapping
    def map_inbound(
        self,
        system: str,
        message_type: str,
        record: Mapping[str, Any],
        *,
        file: str | None = None,
        line: int | None = None,
        validate: bool = True,
    ) -> dict[str, Any]:
        """The canonical message for one external record (quantities ``Decimal`` in the base unit,
        ``mapping_version`` set). ``MappingError`` names system, mapping file and rule, table and
        code. A ``stock_snapshot`` record becomes a one-row snapshot message.

        The message is checked against its canonical schema (schema problems become
        ``MappingError``s naming the mapping) unless ``validate`` is false — for callers that hand
        it straight to ``Ledger.accept_batch``, which validates it anyway."""
        inbound = self._inbound(system, message_type)
        if message_type == SNAPSHOT:
            row = inbound.row(record, file, line)
            failures: list[Failure] = []
            as_of = inbound.moment(inbound.as_of, record, failures, "as_of")
            key = inbound.key_of(record, failures) if inbound.key else None
            if failures:
                raise problems_of(failures, inbound.base, file=file, line=line)
            return self.snapshot_message(
                system,
                [row],
                as_of=as_of,
                key=key or f"{as_of}/{Path(file).name if file else 'record'}/{line or 0}",
            )
        return inbound.map(record, file, line, validate)

    def map_snapshot_row(
        self,
        system: str,
        row: Mapping[str, Any],
        *,
        file: str | None = None,
        line: int | None = None,
    ) -> MappedRow:
        """One raw stock row of ``system`` in canonical terms (base unit)."""
        return self._inbound(system, SNAPSHOT).row(row, file, line)

    def snapshot_as_of(self, system: str, row: Mapping[str, Any]) -> str | None:
        """The ``as_of`` of a raw stock row, or None when the mapping declares none."""
        inbound = self._inbound(system, SNAPSHOT)
        if inbound.as_of is None:
            return None
        failures: list[Failure] = []
        moment = inbound.moment(inbound.as_of, row, failures, "as_of")
        if failures:
            raise problems_of(failures, inbound.base, file=None, line=None)
        return moment

    def snapshot_message(
        self, system: str, rows: Sequence[MappedRow], *, as_of: str, key: str
    ) -> dict[str, Any]:
        """A canonical ``stock_snapshot`` message of mapped rows (validated)."""
        inbound = self._inbound(system, SNAPSHOT)
        payload = {
            "as_of": as_of,
            "rows": [
                {
                    "material": r.material,
                    "location": r.location,
                    **({"lot": r.lot} if r.lot else {}),
                    "quantity": r.quantity,
                    "uom": r.uom,
                }
                for r in rows
            ],
        }
        message = canonical.new_message(
            SNAPSHOT, system, key, payload, occurred_at=as_of, mapping_version=inbound.version
        )
        return validated(message, inbound.base, None, None)

    def map_outbound(self, system: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """The external document of ``system`` for a canonical message."""
        compiled = self.mapping(system)
        message_type = message.get("type") if isinstance(message, Mapping) else None
        outbound = compiled.outbound.get(str(message_type))
        if outbound is None:
            raise ConfigError(
                f"{compiled.display} has no outbound mapping for {message_type}",
                file=compiled.display,
            )
        base = {**outbound.base, "system": system}
        checked = validated(dict(message), base, None, None)
        try:
            return outbound.map(checked)
        except MappingError as exc:
            for problem in exc.problems:
                problem.extra["system"] = system
            raise


def _renamed(inbound: Inbound, system: str) -> Inbound:
    """The same compiled inbound mapping emitting messages with another source name."""
    base = {**inbound.base, "system": system}
    return Inbound(
        message_type=inbound.message_type,
        source=system,
        base=base,
        key=inbound.key,
        occurred_at=inbound.occurred_at,
        as_of=inbound.as_of,
        when=inbound.when,
        payload=inbound.payload,
        version=inbound.version,
    )


def _raise_problems(problems: list[FileProblem]) -> None:
    if not problems:
        return
    first = problems[0]
    more = (
        f" (and {len(problems) - 1} more; run `conveyor mappings check`)"
        if len(problems) > 1
        else ""
    )
    raise ConfigError(first.message + more, file=first.file, line=first.line)
