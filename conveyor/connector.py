"""The connector contract: what every connector (REST, Kingdee, Yonyou, SAP SOAP, B2MML, file drops,
AMQP, …) provides. It belongs to the engine; plug-ins in ``connectors/`` (or any installed package)
import it from here and register through the ``conveyor.connectors`` entry-point group.

A connector speaks its system's format; the mapping layer turns that into canonical messages and
back, so no connector knows another. It declares ``capabilities`` — a closed set, checked when the
class is defined, so a connector that declares ``lookup`` must implement ``lookup``:

=================  ===========================  ===============================================
capability         method                       meaning
=================  ===========================  ===============================================
``poll``           ``poll(stream, cursor)``     pull records changed since a cursor (REST/SOAP)
``receive``        ``receive()``                units pushed or dropped to it (files, AMQP, HTTP)
``send``           ``send(document, …)``        post one outbound-mapped document
``send_batch``     ``send_batch(items)``        post many, one result per document
``lookup``         ``lookup(message_type, key)``  find a document by the hub's key
``idempotency_key``  (``send`` takes one)       the target itself refuses a second posting
``snapshot``       ``snapshot()``               on-hand stock as raw rows (reconciliation)
``master_data``    ``material_master(since)``   the ERP's material master rows (staging, diff)
``health``         ``check()``                  a live check (a login) for ``systems check``
=================  ===========================  ===============================================

The inbound side is a set of declared ``streams`` (one per message type the system produces);
``poll`` yields raw records each carrying the cursor *after* it, and the inbound driver
(``conveyor.runtime.inbound``) stores that cursor in the same transaction as the accepted batch.

Errors are classified where they happen (``conveyor.errors``): ``TransientError`` (retry),
``AmbiguousDeliveryError`` (may have committed: look up first), ``RejectedError`` (business
refusal) or another ``TerminalError``. Secrets are declared in ``config_schema`` with
``"secret": true`` and read only through ``secret()`` — never from settings, never logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from conveyor.errors import ConfigError, ConveyorError

CAPABILITIES: dict[str, str] = {
    "poll": "poll",
    "receive": "receive",
    "send": "send",
    "send_batch": "send_batch",
    "lookup": "lookup",
    "idempotency_key": "send",
    "snapshot": "snapshot",
    "master_data": "material_master",
    "health": "check",
}
"""Every capability a connector may declare, and the method that must implement it."""


@dataclass(frozen=True)
class RawRecord:
    """One record as an external system gave it, with where it came from (for parking)."""

    data: Any
    file: str | None = None
    line: int | None = None
    cursor: str | None = None
    """The position after this record, saved as the stream's checkpoint once it is accepted."""
    message_type: str | None = None
    """The canonical type this record maps to, when the source says (a receiving connector)."""


@dataclass(frozen=True)
class Stream:
    """One inbound stream of a connector: which message type it produces from which object.

    Declared, not coded (as Singer SDK streams are): ``name`` is what ``conveyor poll --type``
    and the checkpoint table use; ``message_type`` picks the system's inbound mapping.
    """

    name: str
    message_type: str
    source: str = ""
    """The system's object, e.g. Kingdee ``PRD_MO`` or SAP ``MARD``: for people, not for code."""
    cursor_field: str | None = None
    """What the cursor is made of (e.g. ``FModifyDate + FID``), for people."""
    description: str = ""


@dataclass
class ReceivedUnit:
    """One unit a receiving connector got (a file, an AMQP message, an HTTP body).

    The driver accepts or parks every record of ``records`` and commits, and only then calls
    ``ack()``; a unit that cannot be read at all is given to ``fail(reason)`` (the file goes to
    ``error/``, the AMQP message is rejected without requeue) after the reason is parked.

    Records that carry a ``cursor`` (distinct within the unit, in a stable order) are resumable:
    the driver saves the cursor with each batch, and a unit with the same ``content_hash`` offered
    again after a crash skips the records up to the saved one.
    """

    name: str
    records: Iterable[RawRecord]
    ack: Callable[[], None] = field(default=lambda: None)
    fail: Callable[[str], None] = field(default=lambda reason: None)
    message_type: str | None = None
    content_hash: str | None = None
    """When given, a unit whose hash the ledger has already taken in is acknowledged unread."""
    report: Callable[[Mapping[str, Any]], None] | None = None
    """When given, told what became of the unit's records (counts, parked records with their
    lines) once they are committed, before ``ack``/``fail``: a file drop writes a result file."""


@dataclass(frozen=True)
class SendResult:
    """What a target answered to a posting: its document number, and whether it already had it."""

    external_ref: str | None
    already_present: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchItem:
    """One document of a ``send_batch`` call."""

    document: Mapping[str, Any]
    message_type: str
    key: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one document of a batch: ``result`` when posted, else ``error``.

    ``error`` is classified as everywhere: a ``RejectedError`` parks that document alone, a
    ``TransientError`` retries it, an ``AmbiguousDeliveryError`` has it looked up first.
    """

    key: str
    result: SendResult | None = None
    error: ConveyorError | None = None

    @property
    def ok(self) -> bool:
        """True when the document was posted (or the target already had it)."""
        return self.result is not None and self.error is None


def secret_fields(schema: Mapping[str, Any]) -> list[str]:
    """Names of the properties of a config schema marked ``"secret": true``."""
    return sorted(
        name
        for name, spec in (schema.get("properties") or {}).items()
        if isinstance(spec, Mapping) and spec.get("secret")
    )


class Connector:
    """Base class of every connector. Override what the capabilities say you support.

    ``name`` is the system name from ``conveyor.yaml``; ``settings`` are its non-secret settings,
    validated against ``config_schema`` (properties marked ``"secret": true`` are not settings:
    they name the secrets the connector reads through ``secret()``).
    """

    kind: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    streams: ClassVar[tuple[Stream, ...]] = ()
    stand_in: ClassVar[bool] = False
    """True for connectors that stand in for a real system (``fake``): said wherever used."""
    material_columns: ClassVar[Mapping[str, str]] = {}
    """``master_data``: which column of ``master_data/materials.csv`` each field of a
    ``material_master`` row maps to (e.g. Kingdee ``FNumber`` → ``kingdee_number``); fields not
    named here are kept in the staging file only."""
    material_key: ClassVar[str] = ""
    """``master_data``: the field of a ``material_master`` row holding the ERP's own material
    number (its column in ``material_columns`` is what the diff joins on)."""
    thread_safe: ClassVar[bool] = False
    """True when one instance may serve many threads at once: the delivery worker then shares it
    (and its connection pool) between its threads instead of making one per thread."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(
                f"{cls.__name__}: unknown capabilities {sorted(unknown)}; "
                f"known: {', '.join(sorted(CAPABILITIES))}"
            )
        missing = sorted(
            capability
            for capability in cls.capabilities
            if getattr(cls, CAPABILITIES[capability])
            is getattr(Connector, CAPABILITIES[capability])
        )
        if missing:
            raise TypeError(f"{cls.__name__} declares {missing} but does not implement them")
        if "poll" in cls.capabilities and not cls.streams:
            raise TypeError(f"{cls.__name__} declares poll but no streams")
        if "master_data" in cls.capabilities and cls.material_key not in cls.material_columns:
            raise TypeError(
                f"{cls.__name__} declares master_data but its material_key "
                f"{cls.material_key!r} is not one of its material_columns"
            )
        if "supports" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides supports(): narrow the declared capabilities with "
                f"narrow_capabilities() in __init__ instead"
            )

    def __init__(
        self, name: str, settings: Mapping[str, Any] | None = None, *, connection: str | None = None
    ) -> None:
        self.name = name
        self.settings = dict(settings or {})
        self.connection = connection
        self._validate_settings()

    def _validate_settings(self) -> None:
        from jsonschema import Draft202012Validator

        secrets = [name for name in secret_fields(self.config_schema) if name in self.settings]
        if secrets:
            raise ConfigError(
                f"system {self.name!r} ({self.kind}): {', '.join(secrets)} are secrets: set them "
                f"as environment variables or in an Airflow Connection, never in conveyor.yaml"
            )
        errors = sorted(
            Draft202012Validator(self.config_schema).iter_errors(self.settings), key=str
        )
        if errors:
            where = ".".join(str(p) for p in errors[0].absolute_path) or "settings"
            raise ConfigError(f"system {self.name!r} ({self.kind}): {where}: {errors[0].message}")

    def supports(self, capability: str) -> bool:
        """True when the connector declares ``capability`` (never answers otherwise)."""
        return capability in self.capabilities

    def narrow_capabilities(self, *drop: str) -> None:
        """Drop capabilities this instance lacks by its settings (a REST target without a lookup
        URL cannot look up): an instance never claims more than its class declares."""
        self.capabilities = frozenset(self.capabilities - set(drop))  # type: ignore[misc]

    @classmethod
    def secret_fields(cls) -> list[str]:
        """The secrets this connector reads (``"secret": true`` in its config schema)."""
        return secret_fields(cls.config_schema)

    @classmethod
    def required_secrets(cls, settings: Mapping[str, Any]) -> list[str]:
        """The secrets these ``settings`` need (all declared ones unless a connector says less:
        a Kingdee connection signing its calls needs no password)."""
        return cls.secret_fields()

    def secret(self, field_name: str) -> str | None:
        """A secret of this system, through the one door (``conveyor.runtime.secrets``)."""
        from conveyor.runtime.secrets import secret

        return secret(self.connection or self.name, field_name)

    def required_secret(self, field_name: str) -> str:
        """A secret this call cannot do without; ``ConfigError`` naming it (never a value) when it
        is set nowhere."""
        value = self.secret(field_name)
        if not value:
            raise ConfigError(
                f"system {self.name!r} ({self.kind}): the secret {field_name.upper()} is not set"
            )
        return value

    def stream(self, name: str) -> Stream:
        """The declared stream called ``name`` (or producing that message type)."""
        for stream in self.streams:
            if name in (stream.name, stream.message_type):
                return stream
        known = ", ".join(s.name for s in self.streams) or "none"
        raise ConfigError(f"system {self.name!r} has no stream {name!r} (streams: {known})")

    # ---- inbound
    def poll(self, stream: str, cursor: str | None) -> Iterator[RawRecord]:
        """Raw records of ``stream`` changed since ``cursor`` (None: from the configured start),
        each with the cursor after it."""
        raise NotImplementedError(f"{self.kind} does not poll")

    def receive(self) -> Iterator[ReceivedUnit]:
        """Units waiting at this connector (files dropped, messages queued, bodies pushed)."""
        raise NotImplementedError(f"{self.kind} does not receive")

    # ---- outbound
    def send(
        self,
        document: Mapping[str, Any],
        *,
        message_type: str,
        key: str,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Post one outbound-mapped document; ``key`` is the hub's business key."""
        raise NotImplementedError(f"{self.kind} does not send")

    def send_batch(self, items: Sequence[BatchItem]) -> list[ItemResult]:
        """Post many documents; one ``ItemResult`` per item, in order.

        Raise (``TransientError``, ``AmbiguousDeliveryError``) only when the batch as a whole
        failed; an ambiguous batch is looked up document by document before anything is re-posted.
        """
        raise NotImplementedError(f"{self.kind} does not send batches")

    def lookup(self, *, message_type: str, key: str) -> SendResult | None:
        """The target's document for the hub's ``key``, or None when it has none."""
        raise NotImplementedError(f"{self.kind} cannot look documents up")

    # ---- reconciliation
    def snapshot(self) -> Iterator[RawRecord]:
        """The system's on-hand stock as raw rows (mapped by its ``stock_snapshot`` mapping)."""
        raise NotImplementedError(f"{self.kind} gives no stock snapshot")

    # ---- master data
    def material_master(self, since: datetime | None) -> Iterator[dict[str, str]]:
        """The ERP's material master rows changed after ``since`` (None: every row), keyed by
        the ERP's own fields (``material_columns`` says which ``materials.csv`` column each one
        maps to); the ERP's own clock, as its modification stamps are."""
        raise NotImplementedError(f"{self.kind} gives no material master")

    # ---- operations
    def check(self) -> str:
        """A live check (a login, a ping) within the connector's timeout; returns what it saw."""
        raise NotImplementedError(f"{self.kind} has no live check")

    def close(self) -> None:
        """Release sessions and sockets."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
