"""RabbitMQ transport (pika): a topic exchange, one quorum queue per target, delay queues, parking.

URL: ``amqp://user:password@host:5672/vhost`` or ``amqps://…`` (TLS), from ``CONVEYOR_BROKER_URL``.
pika's own query options pass through (``heartbeat``, ``blocked_connection_timeout``,
``socket_timeout``, ``ssl_options``, …); Conveyor's are ``prefix`` (names, default ``conveyor``),
``prefetch`` (broker messages, default 200), ``pack`` (deliveries per broker message, default 20),
``delivery_limit`` (default 50) and ``confirm_timeout`` (seconds, default 30). Defaults when the
URL does not say: heartbeat 30 s, blocked-connection timeout 60 s, socket timeout 10 s.

Topology (declared idempotently at start and after every reconnect; ``P`` is the prefix):

- ``P`` — topic exchange; routing key ``<target>.<message type>.<source>``;
- ``P.<target>`` — durable **quorum** queue bound with ``<target>.#``; ``x-delivery-limit`` guards
  against poison messages; messages over the limit are dead-lettered (at-least-once) to
- ``P.parked`` → ``P.<target>.parked`` — the parking queue per target: the broker's dead-letter
  intake; workers drain it into the ledger, the parking lot of record (``conveyor parked``);
- ``P.delay`` (headers exchange) → ``P.delay.<ms>ms`` — one quorum queue per retry delay with
  ``x-message-ttl``, dead-lettering back to ``P`` with the original routing key, at-least-once
  (``x-dead-letter-strategy``, RabbitMQ 3.10+; with ``x-overflow: reject-publish``). The ladder of
  delays is ``conveyor.retry.delay_tiers(policy)``.

Features:
- deliveries are packed: the relay's batch is published as broker messages carrying up to ``pack``
  delivery ids of one routing key (``{"delivery_ids": […], "target": …}``), since the broker's and
  pika's cost is per message, not per id (measured on two cores: broker and client work were
  about a third of a delivery's CPU with one id per message). A consumer hands out one job per id
  and acks the broker message once every job in it is settled; a job that must come back alone
  (``retry_later``, ``release``) is republished as a message of its own first. When the broker
  dead-letters a packed message (its delivery limit), the jobs still open in it are parked
  together and ``conveyor replay`` re-queues them;
- publisher confirms in batches on a ``SelectConnection`` driven by its own I/O thread: a batch of
  messages is published at once and the caller waits for all their confirms (``mandatory``
  publishes, so an unroutable message fails the batch instead of vanishing);
- consumers with manual acks and a prefetch window; messages are handed to worker threads and
  acked through ``add_callback_threadsafe``, so a slow delivery never blocks pika's I/O loop or
  its heartbeats; acks are batched (``multiple``) up to the first delivery still being worked,
  and given one by one when many wait behind it, so a slow delivery never holds the window;
- reconnect with exponential backoff after the broker restarts or the connection drops; jobs
  received on a lost channel are dropped locally and come back from the broker (the ledger makes a
  second arrival harmless);
- a broker resource alarm (connection blocked) fails publishes fast with ``TransientError``, and
  ``blocked_connection_timeout`` closes a connection that stays blocked;
- attempts are counted in the ledger, not from the broker's redelivery count (RabbitMQ 4 does not
  count a requeueing ``nack``); the broker's ``x-delivery-limit`` is only a poison guard.
- nothing needs a feature newer than RabbitMQ 3.10; a queue that already exists with other
  arguments is used as it is (with a warning) instead of failing the start.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
import pika.exceptions
from pika.adapters.select_connection import SelectConnection
from pika.channel import Channel

from conveyor.config import RetryPolicy
from conveyor.errors import ConfigError, TransientError
from conveyor.retry import backoff_delay, delay_tiers, pick_tier
from conveyor.transport.base import Depth, Envelope, Job, pack_body

log = logging.getLogger(__name__)

OWN_OPTIONS = ("prefix", "prefetch", "pack", "delivery_limit", "confirm_timeout")
PIKA_DEFAULTS = {
    "heartbeat": "30",
    "blocked_connection_timeout": "60",
    "socket_timeout": "10",
    "stack_timeout": "30",
    "connection_attempts": "1",
}
RECONNECT = RetryPolicy(max_attempts=1_000_000, base_delay_s=0.5, max_delay_s=15.0)
DELAY_HEADER = "conveyor-delay"  # not "x-…": the headers exchange ignores x- headers


def _properties(first_id: int, **extra: Any) -> pika.BasicProperties:
    """Persistent JSON; ``message_id`` is the (first) delivery id, which a return names."""
    return pika.BasicProperties(
        delivery_mode=2, content_type="application/json", message_id=str(first_id), **extra
    )


def parse_url(url: str) -> tuple[pika.URLParameters, dict[str, str]]:
    """pika parameters (with Conveyor's defaults) and Conveyor's own options from a broker URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigError(f"not an AMQP URL: {parts.scheme}://…")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    own = {k: query.pop(k) for k in OWN_OPTIONS if k in query}
    for key, value in PIKA_DEFAULTS.items():
        query.setdefault(key, value)
    cleaned = urlunsplit(parts._replace(query=urlencode(query)))
    return pika.URLParameters(cleaned), own


def safe_url(url: str) -> str:
    """The URL without its password, for logs and status."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts._replace(query=""))


@dataclass(frozen=True)
class _Token:
    generation: int
    tag: int
    routing_key: str
    body: bytes
    """The job's own body (one delivery id), for the copy ``retry_later``/``release`` publish."""
    size: int = 1
    """How many jobs the broker message carries."""


class _Batch:
    """Publishes waiting for their confirms."""

    def __init__(self, size: int, delivery_ids: set[int]) -> None:
        self.remaining = size
        self.delivery_ids = delivery_ids
        self.error: TransientError | None = None
        self.done = threading.Event()
        if size == 0:
            self.done.set()

    def settle(self, ok: bool) -> None:
        if not ok and self.error is None:
            self.error = TransientError("the broker refused a message (publisher nack)")
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()

    def fail(self, error: TransientError) -> None:
        if self.error is None:
            self.error = error
        self.done.set()


class _Link:
    """One AMQP connection with one channel, run by its own I/O thread; reconnects with backoff.

    ``on_channel`` runs on the I/O thread when a channel is open and must call ``mark_ready``;
    ``on_down`` runs on the I/O thread's side when the connection is gone."""

    def __init__(
        self,
        name: str,
        params: pika.URLParameters,
        prepare: Callable[[], None],
        on_channel: Callable[[Channel], None],
        on_down: Callable[[], None],
    ) -> None:
        self.name = name
        self.params = params
        self._prepare = prepare
        self._on_channel = on_channel
        self._on_down = on_down
        self.connection: SelectConnection | None = None
        self.channel: Channel | None = None
        self.generation = 0
        self.ready = threading.Event()
        self.blocked = False
        self._stopping = threading.Event()
        self._opened = False
        self._thread = threading.Thread(target=self._run, name=f"amqp-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        connection = self.connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._close_now)
            except Exception:  # the loop is already gone
                log.debug("%s: loop gone at stop", self.name)
        self._thread.join(timeout=15)

    def _close_now(self) -> None:
        connection = self.connection
        if connection is None:
            return
        if connection.is_open:
            connection.close()
        elif not connection.is_closing:
            connection.ioloop.stop()

    def call(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` on the I/O thread; False when there is no connection to run it on."""
        connection = self.connection
        if connection is None or not self.ready.is_set():
            return False
        try:
            connection.ioloop.add_callback_threadsafe(fn)
        except Exception:
            return False
        return True

    def mark_ready(self) -> None:
        self.ready.set()

    # ---- the I/O thread
    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self._opened = False
            try:
                self._prepare()
                self.connection = SelectConnection(
                    self.params,
                    on_open_callback=self._on_open,
                    on_open_error_callback=self._on_open_error,
                    on_close_callback=self._on_closed,
                )
                self.connection.ioloop.start()
            except Exception as exc:
                log.warning("%s: broker unavailable: %s", self.name, exc)
            self.ready.clear()
            self.channel = None
            if self._stopping.is_set():
                break
            attempt = 1 if self._opened else attempt + 1
            delay = backoff_delay(attempt, RECONNECT)
            log.info("%s: reconnecting in %.1f s", self.name, delay)
            self._stopping.wait(delay)
        self.connection = None

    def _on_open(self, connection: SelectConnection) -> None:
        self._opened = True
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: SelectConnection, error: BaseException | str) -> None:
        log.warning("%s: cannot connect: %s", self.name, error)
        connection.ioloop.stop()

    def _on_closed(self, connection: SelectConnection, reason: BaseException) -> None:
        self.ready.clear()
        self.channel = None
        if not self._stopping.is_set():
            log.warning("%s: connection lost: %s", self.name, reason)
        try:
            self._on_down()
        finally:
            connection.ioloop.stop()

    def _on_channel_open(self, channel: Channel) -> None:
        self.generation += 1
        self.channel = channel
        self.blocked = False
        channel.add_on_close_callback(self._on_channel_closed)
        self._on_channel(channel)

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        self.ready.clear()
        self.channel = None
        connection = self.connection
        if connection is not None and connection.is_open and not self._stopping.is_set():
            log.warning("%s: channel closed (%s); reconnecting", self.name, reason)
            self._on_down()
            connection.close()

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self.blocked = True
        log.warning("%s: the broker blocks publishing: %s", self.name, frame.method.reason)

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = False
        log.info("%s: the broker accepts publishing again", self.name)


class RabbitMQTransport:
    """RabbitMQ quorum queues with delay queues and parking (see the module docstring)."""

    name = "rabbitmq"
    needs_relay = True

    def __init__(
        self,
        url: str,
        *,
        engine: Any = None,
        consumer_id: str | None = None,
        policy: RetryPolicy | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.params, own = parse_url(url)
        options = {**own, **dict(options or {})}
        self.prefix = str(options.get("prefix", "conveyor"))
        self.prefetch = int(options.get("prefetch", 200))
        self.pack = max(1, int(options.get("pack", 20)))
        self.delivery_limit = int(options.get("delivery_limit", 50))
        self.confirm_timeout = float(options.get("confirm_timeout", 30.0))
        self.connect_wait = float(options.get("connect_wait", 5.0))
        self.policy = policy or RetryPolicy()
        self.tiers = delay_tiers(self.policy)
        self.consumer_id = consumer_id
        self._targets: tuple[str, ...] = ()
        self._declared: set[str] = set()
        self._declare_lock = threading.Lock()
        self._inbox: queue.Queue[Job] = queue.Queue()
        self._unacked: dict[int, int] = {}
        """Consumer I/O thread only: delivery tag → jobs of it not yet settled (0: settled), in
        the order the broker sent them."""
        self.ack_backlog = max(1, self.prefetch // 8)
        self._publisher: _Link | None = None
        self._consumer: _Link | None = None
        # publisher state: touched only on the publisher's I/O thread, except _live (locked)
        self._seq = 0
        self._pending: OrderedDict[int, _Batch] = OrderedDict()
        self._live: set[_Batch] = set()
        self._live_lock = threading.Lock()

    # ------------------------------------------------------------------ names
    @property
    def exchange(self) -> str:
        """The topic exchange every delivery is published to."""
        return self.prefix

    def queue_name(self, target: str) -> str:
        """The quorum queue of one target."""
        return f"{self.prefix}.{target}"

    def parking_queue(self, target: str) -> str:
        """The parking (dead-letter) queue of one target."""
        return f"{self.prefix}.{target}.parked"

    def delay_queue(self, tier_s: float) -> str:
        """The delay queue of one tier."""
        return f"{self.prefix}.delay.{self._tier_ms(tier_s)}ms"

    @staticmethod
    def _tier_ms(tier_s: float) -> int:
        return max(1, round(tier_s * 1000))

    # ------------------------------------------------------------------ topology
    def declare(self, targets: Sequence[str]) -> None:
        """Declare exchanges, delay queues and the queues of ``targets`` (idempotent)."""
        params = parse_url(self.url)[0]
        connection = pika.BlockingConnection(params)
        try:
            self._declare_on(connection, targets)
        finally:
            if connection.is_open:
                connection.close()

    def _declare_on(self, connection: pika.BlockingConnection, targets: Sequence[str]) -> None:
        holder = {"channel": connection.channel()}
        p = self.prefix

        def queue_declare(name: str, arguments: dict[str, Any]) -> None:
            try:
                holder["channel"].queue_declare(name, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 406:  # 406: exists with other arguments → use it as it is
                    raise
                log.warning("queue %s exists with other arguments; using it as it is", name)
                holder["channel"] = connection.channel()
                holder["channel"].queue_declare(name, passive=True)

        ch = holder["channel"]
        ch.exchange_declare(p, "topic", durable=True)
        ch.exchange_declare(f"{p}.parked", "topic", durable=True)
        ch.exchange_declare(f"{p}.delay", "headers", durable=True)
        for tier in self.tiers:
            name = self.delay_queue(tier)
            queue_declare(
                name,
                {
                    "x-queue-type": "quorum",
                    "x-message-ttl": self._tier_ms(tier),
                    "x-dead-letter-exchange": p,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            holder["channel"].queue_bind(
                name,
                f"{p}.delay",
                arguments={"x-match": "all", DELAY_HEADER: f"{self._tier_ms(tier)}ms"},
            )
        for target in targets:
            queue_declare(
                self.queue_name(target),
                {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": self.delivery_limit,
                    "x-dead-letter-exchange": f"{p}.parked",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            holder["channel"].queue_bind(self.queue_name(target), p, f"{target}.#")
            queue_declare(self.parking_queue(target), {"x-queue-type": "quorum"})
            holder["channel"].queue_bind(self.parking_queue(target), f"{p}.parked", f"{target}.#")
        with self._declare_lock:
            self._declared.update(targets)

    def delete(self, targets: Sequence[str]) -> None:
        """Delete everything ``declare`` made for ``targets`` (tests and tear-downs)."""
        connection = pika.BlockingConnection(parse_url(self.url)[0])
        try:
            ch = connection.channel()
            for target in targets:
                ch.queue_delete(self.queue_name(target))
                ch.queue_delete(self.parking_queue(target))
            for tier in self.tiers:
                ch.queue_delete(self.delay_queue(tier))
            for name in (self.prefix, f"{self.prefix}.parked", f"{self.prefix}.delay"):
                ch.exchange_delete(name)
        finally:
            if connection.is_open:
                connection.close()

    # ------------------------------------------------------------------ lifecycle
    def start(self, targets: Sequence[str], *, consume: bool = True) -> None:
        """Declare the topology, connect the publisher and (when asked) the consumer."""
        self._targets = tuple(targets)
        self._publisher = _Link(
            "publisher",
            self.params,
            lambda: self.declare(self._targets),
            self._publisher_channel,
            self._publisher_down,
        )
        self._publisher.start()
        if consume:
            self._consumer = _Link(
                "consumer",
                self.params,
                lambda: self.declare(self._targets),
                self._consumer_channel,
                self._consumer_down,
            )
            self._consumer.start()
        deadline = time.monotonic() + self.connect_wait
        for link in (self._publisher, self._consumer):
            if link is not None:
                link.ready.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop consuming (unacked messages return to their queues) and disconnect."""
        consumer = self._consumer
        if consumer is not None:  # acks still held back for a batched ack go out first
            consumer.call(partial(self._flush_acks, everything=True))
        for link in (self._consumer, self._publisher):
            if link is not None:
                link.stop()
        self._consumer = self._publisher = None
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break

    # ------------------------------------------------------------------ publishing
    def _publisher_channel(self, channel: Channel) -> None:
        self._seq = 0
        self._pending.clear()
        channel.add_on_return_callback(self._on_return)
        link = self._publisher
        assert link is not None
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: link.mark_ready())

    def _publisher_down(self) -> None:
        error = TransientError("the connection to the broker was lost before the confirm")
        self._pending.clear()
        with self._live_lock:
            live = list(self._live)
        for batch in live:
            batch.fail(error)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        tag = method.delivery_tag
        if method.multiple:
            while self._pending:
                first = next(iter(self._pending))
                if first > tag:
                    break
                self._pending.pop(first).settle(ok)
        else:
            batch = self._pending.pop(tag, None)
            if batch is not None:
                batch.settle(ok)

    def _on_return(self, _channel: Channel, method: Any, properties: Any, _body: bytes) -> None:
        try:
            delivery_id = int(properties.message_id)
        except (TypeError, ValueError):
            delivery_id = -1
        error = TransientError(
            f"unroutable: no queue for routing key {method.routing_key!r} ({method.reply_text})"
        )
        with self._live_lock:
            live = list(self._live)
        for batch in live:
            if delivery_id in batch.delivery_ids:
                batch.fail(error)

    def _publish(self, items: Sequence[tuple[str, str, bytes, pika.BasicProperties, int]]) -> None:
        """Publish ``(exchange, routing key, body, properties, delivery id)`` and wait for every
        confirm; ``TransientError`` when the broker is away, blocks us or refuses."""
        link = self._publisher
        if link is None:
            raise TransientError("the transport is not started")
        if not items:
            return
        if not link.ready.wait(self.connect_wait):
            raise TransientError(f"not connected to the broker at {safe_url(self.url)}")
        if link.blocked:
            raise TransientError("the broker blocks publishing (resource alarm)")
        batch = _Batch(len(items), {item[4] for item in items})
        with self._live_lock:
            self._live.add(batch)

        def publish_all() -> None:
            channel = link.channel
            if channel is None or not channel.is_open:
                batch.fail(TransientError("the channel to the broker is closed"))
                return
            for exchange, routing_key, body, properties, _ in items:
                self._seq += 1
                self._pending[self._seq] = batch
                channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)

        try:
            if not link.call(publish_all):
                raise TransientError(f"not connected to the broker at {safe_url(self.url)}")
            if not batch.done.wait(self.confirm_timeout):
                raise TransientError(f"no publisher confirm within {self.confirm_timeout:g} s")
            if batch.error is not None:
                raise batch.error
        finally:
            with self._live_lock:
                self._live.discard(batch)

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish to the topic exchange, up to ``pack`` deliveries of one routing key per
        broker message, and wait for the broker's confirms."""
        missing = {e.target for e in envelopes} - self._declared
        if missing:
            try:
                self.declare(sorted(missing))
            except Exception as exc:
                raise TransientError(f"cannot declare queues for {sorted(missing)}: {exc}") from exc
        now = int(time.time())
        groups: dict[str, list[Envelope]] = {}
        for e in envelopes:
            groups.setdefault(e.routing_key, []).append(e)
        items = []
        for routing_key, group in groups.items():
            for start in range(0, len(group), self.pack):
                chunk = group[start : start + self.pack]
                first = chunk[0]
                items.append(
                    (
                        self.exchange,
                        routing_key,
                        first.body() if len(chunk) == 1 else pack_body(chunk),
                        _properties(first.delivery_id, timestamp=now),
                        first.delivery_id,
                    )
                )
        self._publish(items)

    # ------------------------------------------------------------------ consuming
    def _consumer_channel(self, channel: Channel) -> None:
        link = self._consumer
        assert link is not None
        generation = link.generation

        def start_consuming(_frame: Any) -> None:
            for target in self._targets:
                channel.basic_consume(
                    self.queue_name(target),
                    partial(self._on_message, generation, False),
                    auto_ack=False,
                )
                channel.basic_consume(
                    self.parking_queue(target),
                    partial(self._on_message, generation, True),
                    auto_ack=False,
                )
            link.mark_ready()

        self._unacked = {}
        channel.basic_qos(prefetch_count=self.prefetch, callback=start_consuming)

    def _consumer_down(self) -> None:
        """Jobs of the lost channel will be redelivered: drop them here."""
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break

    def _on_message(
        self,
        generation: int,
        parked: bool,
        channel: Channel,
        method: Any,
        properties: Any,
        body: bytes,
    ) -> None:
        try:
            data = json.loads(body)
            target = str(data["target"])
            if "delivery_ids" in data:
                ids = [int(i) for i in data["delivery_ids"]]
                bodies = [Envelope(i, target, data["type"], data["source"]).body() for i in ids]
            else:
                ids, bodies = [int(data["delivery_id"])], [body]
            if not ids:
                raise ValueError("no delivery ids")
        except (ValueError, KeyError, TypeError):
            log.error("dropping a message that is not a delivery: %r", body[:200])
            channel.basic_nack(method.delivery_tag, requeue=False)
            return
        self._unacked[method.delivery_tag] = len(ids)
        reason = None
        if parked:
            deaths = (properties.headers or {}).get("x-death") or [{}]
            death = deaths[0]
            reason = (
                f"the broker dead-lettered it from {death.get('queue', '?')} "
                f"({death.get('reason', '?')}, delivery limit {self.delivery_limit})"
            )
        for delivery_id, own_body in zip(ids, bodies, strict=True):
            self._inbox.put(
                Job(
                    delivery_id,
                    target,
                    token=_Token(
                        generation, method.delivery_tag, method.routing_key, own_body, len(ids)
                    ),
                    dead_lettered=reason,
                )
            )

    def fetch(self, max_jobs: int, timeout: float) -> list[Job]:
        """Jobs received by the consumer (prefetched), waiting up to ``timeout`` for the first."""
        deadline = time.monotonic() + max(0.0, timeout)
        jobs: list[Job] = []
        while not jobs:
            remaining = deadline - time.monotonic()
            try:
                first = self._inbox.get(timeout=max(0.0, remaining)) if remaining > 0 else None
            except queue.Empty:
                first = None
            if first is None:
                return []
            batch = [first]
            while len(batch) < max_jobs:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            current = self._consumer.generation if self._consumer is not None else -1
            jobs = [j for j in batch if j.token.generation == current]
        return jobs

    def _settle(self, jobs: Sequence[Job], requeue: bool | None) -> None:
        """Settle jobs on the consumer's I/O thread: ``requeue`` None counts them done (a
        broker message is acked once all its jobs are, see ``_flush_acks``); otherwise nack
        their whole broker messages, once each. Jobs of a lost channel are skipped (the broker
        redelivers them)."""
        link = self._consumer
        if link is None or not jobs:
            return

        def settle() -> None:
            channel = link.channel
            if channel is None or not channel.is_open:
                return
            unacked = self._unacked
            for job in jobs:
                if job.token.generation != link.generation:
                    continue
                tag = job.token.tag
                if tag not in unacked:
                    continue  # settled already (its message was nacked as a whole)
                if requeue is not None:
                    del unacked[tag]
                    channel.basic_nack(tag, requeue=requeue)
                elif unacked[tag] > 0:
                    unacked[tag] -= 1
            if requeue is None:
                self._flush_acks(channel)

        link.call(settle)

    def _flush_acks(self, channel: Channel | None = None, *, everything: bool = False) -> None:
        """Ack what is settled (consumer I/O thread): the settled run at the head of the
        channel's unacked deliveries with one ``multiple`` ack; settled ones behind a delivery
        still being worked one by one, once they are many (they hold the prefetch window) or
        when the consumer closes (``everything``)."""
        if channel is None:
            link = self._consumer
            channel = link.channel if link is not None else None
            if channel is None or not channel.is_open:
                return
        unacked = self._unacked
        last = None
        for tag, open_jobs in unacked.items():
            if open_jobs:
                break
            last = tag
        if last is not None:
            channel.basic_ack(last, multiple=True)
            for tag in [t for t in unacked if t <= last]:
                del unacked[tag]
        waiting = [tag for tag, open_jobs in unacked.items() if not open_jobs]
        if waiting and (everything or len(waiting) >= self.ack_backlog):
            for tag in waiting:
                del unacked[tag]
                channel.basic_ack(tag)

    def ack(self, jobs: Sequence[Job]) -> None:
        """Ack the messages."""
        self._settle(jobs, None)

    def release(self, jobs: Sequence[Job]) -> None:
        """Give the jobs back at once: a message carrying one job is nacked with requeue; a job
        of a packed message is republished alone (confirmed) and counted done, or, when that
        fails, its whole message is requeued (jobs of it already settled come back as harmless
        second copies)."""
        alone = [job for job in jobs if job.token.size == 1]
        packed = [job for job in jobs if job.token.size > 1]
        self._settle(alone, True)
        if not packed:
            return
        try:
            self._publish([self._copy(job, self.exchange, None) for job in packed])
        except TransientError:
            self._settle(packed, True)
            raise
        self._settle(packed, None)

    def _copy(
        self, job: Job, exchange: str, headers: dict[str, Any] | None
    ) -> tuple[str, str, bytes, pika.BasicProperties, int]:
        """A publish item carrying ``job`` alone."""
        return (
            exchange,
            job.token.routing_key,
            job.token.body,
            _properties(job.delivery_id, headers=headers),
            job.delivery_id,
        )

    def retry_later(self, jobs: Sequence[tuple[Job, float]]) -> None:
        """Publish a copy of each job alone to the delay queue of its tier (confirmed), then
        count the original done. When the copies cannot be published the originals' messages
        are requeued instead."""
        if not jobs:
            return
        items = [
            self._copy(
                job,
                f"{self.prefix}.delay",
                {DELAY_HEADER: f"{self._tier_ms(pick_tier(delay, self.tiers))}ms"},
            )
            for job, delay in jobs
        ]
        originals = [job for job, _ in jobs]
        try:
            self._publish(items)
        except TransientError:
            self._settle(originals, True)
            raise
        self.ack(originals)

    # ------------------------------------------------------------------ status
    def depths(self, targets: Sequence[str]) -> dict[str, Depth]:
        """Ready messages per target queue and parking queue; delay queues under ``*``."""
        out: dict[str, Depth] = {}
        connection = pika.BlockingConnection(parse_url(self.url)[0])
        try:
            channel = connection.channel()

            def count(name: str) -> int:
                nonlocal channel
                try:
                    return int(channel.queue_declare(name, passive=True).method.message_count)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()
                    return 0

            for target in targets:
                out[target] = Depth(
                    target,
                    ready=count(self.queue_name(target)),
                    parked=count(self.parking_queue(target)),
                )
            out["*"] = Depth("*", delayed=sum(count(self.delay_queue(t)) for t in self.tiers))
        finally:
            if connection.is_open:
                connection.close()
        return out
