"""The sink's way into Kafka: the events topic read with aiokafka from a plain thread.

The sink is synchronous code, and aiokafka (the fastest Python Kafka client here, twice
kafka-python's rate on the embedded broker) is asyncio. A :class:`TopicReader` owns a
private event loop and runs it only inside its own calls, so aiokafka's fetcher works only
while the sink asks for records or offsets. That keeps an idle sink quiet on a broker that
answers a fetch at once when there is nothing to read (the embedded one): between two polls
nothing fetches.

No consumer group and no commits to Kafka: the reader is given every partition and the
offsets to start from (the warehouse's own, ``ops.offsets``); a partition with no stored
offset starts at its beginning.

Every call returns within its timeout, and within about :data:`_SLICE_S` once ``stop`` is
set (:class:`ReaderStopped`), also while Kafka is away.

:func:`aiokafka_options` maps the kafka-python keyword arguments the rest of commpulse uses
(``commpulse.kafka``, settings) to aiokafka's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, Final, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from ingest.errors import CommpulseError, ConfigurationError

__all__ = ["ReaderStopped", "SinkError", "TopicReader", "aiokafka_options"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: how long the loop runs at a time inside a call before it looks at ``stop``
_SLICE_S: Final = 0.1
#: Fetch limits, as the kafka-python consumer had them; records arrive in large batches.
_FETCH: Final = {"max_partition_fetch_bytes": 8 * 1024 * 1024, "fetch_max_bytes": 64 * 1024 * 1024}
#: kafka-python names aiokafka takes as they are
_SAME: Final = frozenset(
    {
        "client_id",
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
        "request_timeout_ms",
        "retry_backoff_ms",
        "metadata_max_age_ms",
        "connections_max_idle_ms",
        "fetch_max_wait_ms",
        "fetch_min_bytes",
        "fetch_max_bytes",
        "max_partition_fetch_bytes",
        "check_crcs",
        "isolation_level",
        "auto_offset_reset",
        "client_rack",
    }
)
_SSL_FILES: Final = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password")
#: kafka-python options with no aiokafka counterpart that change nothing for a reader:
#: aiokafka reads a response of any size the broker announces (kafka-python refuses any over
#: ``receive_message_max_bytes``, see ``infra.FETCH_RESPONSE_MAX_BYTES``).
_IGNORED: Final = frozenset({"receive_message_max_bytes"})


class SinkError(CommpulseError):
    """The sink cannot read the events topic."""


class ReaderStopped(Exception):
    """``stop`` was set while the reader waited for Kafka."""


def aiokafka_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """aiokafka keyword arguments for kafka-python ones (client id, SASL, TLS, timeouts).

    TLS files become an ``ssl_context`` (aiokafka takes no file names), with
    ``ssl_check_hostname``. An option this does not know is an error, not dropped.
    """
    unknown = set(options) - _SAME - _IGNORED - {*_SSL_FILES, "ssl_check_hostname", "ssl_context"}
    if unknown:
        raise ConfigurationError(
            f"Kafka client option(s) the sink's consumer (aiokafka) cannot take: "
            f"{', '.join(sorted(unknown))}"
        )
    mapped = {name: value for name, value in options.items() if name in _SAME}
    context: ssl.SSLContext | None = options.get("ssl_context")
    files = {name: options.get(name) for name in _SSL_FILES}
    if context is None and (
        any(files.values()) or str(options.get("security_protocol", "")).endswith("SSL")
    ):
        context = create_ssl_context(
            cafile=files["ssl_cafile"],
            certfile=files["ssl_certfile"],
            keyfile=files["ssl_keyfile"],
            password=files["ssl_password"],
        )
    if context is not None:
        if "ssl_check_hostname" in options:
            context.check_hostname = bool(options["ssl_check_hostname"])
        mapped["ssl_context"] = context
    return mapped


class TopicReader:
    """Every partition of one topic, from given offsets; a synchronous face on aiokafka.

    Use from one thread at a time. Nothing connects before :meth:`open`; :meth:`close`
    always releases the client and the loop (call it in ``finally``).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        options: Mapping[str, Any] | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._options = {**_FETCH, **aiokafka_options(options or {})}
        self._stop = stop or threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    @property
    def partitions(self) -> list[int]:
        return [tp.partition for tp in self._partitions]

    def open(self, start: Mapping[int, int], *, timeout_s: float = 60.0) -> None:
        """Connect, take every partition of the topic, and go to ``start`` (partition →
        next offset; a partition not in it starts at its beginning)."""
        self._loop = asyncio.new_event_loop()
        try:
            self._call(self._open(start), timeout_s)
        except TimeoutError:
            raise SinkError(
                f"Kafka at {self.bootstrap_servers} did not answer within {timeout_s:g} s"
            ) from None

    async def _open(self, start: Mapping[int, int]) -> None:
        delay = 0.5
        while True:  # a sink may start while the broker restarts: try again until the timeout
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                **self._options,
            )
            try:
                await self._consumer.start()
                break
            except KafkaConnectionError as exc:
                log.warning("sink: cannot reach Kafka at %s yet (%s)", self.bootstrap_servers, exc)
                consumer, self._consumer = self._consumer, None
                await consumer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        found = self._consumer.partitions_for_topic(self.topic)
        if not found:
            raise SinkError(f"topic {self.topic} does not exist: run `commpulse topics` first")
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(found)]
        self._consumer.assign(self._partitions)
        fresh = [tp for tp in self._partitions if tp.partition not in start]
        for tp in self._partitions:
            if tp.partition in start:
                self._consumer.seek(tp, start[tp.partition])
        if fresh:
            await self._consumer.seek_to_beginning(*fresh)

    def pause(self) -> None:
        """Fetch nothing until :meth:`resume` (an idle reader asks only for the end offsets)."""
        self._call(self._paused(True), _SLICE_S * 10)

    def resume(self) -> None:
        self._call(self._paused(False), _SLICE_S * 10)

    async def _paused(self, paused: bool) -> None:  # aiokafka wants its loop running for these
        consumer = self._open_consumer()
        (consumer.pause if paused else consumer.resume)(*self._partitions)

    def poll(self, max_records: int, timeout_s: float) -> list[tuple[int, list[ConsumerRecord]]]:
        """Up to ``max_records`` records, per partition; waits up to ``timeout_s`` for the
        first (0: only what was fetched already)."""
        consumer = self._open_consumer()
        fetched = self._call(
            consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records),
            timeout_s + 30.0,
        )
        return [(tp.partition, records) for tp, records in fetched.items() if records]

    def lag(self, timeout_s: float) -> int | None:
        """Records after the current positions, summed; None when Kafka did not answer in
        ``timeout_s`` (a broker restart)."""
        try:
            return self._call(self._lag(), timeout_s)
        except (TimeoutError, KafkaError) as exc:
            log.warning("sink: end offsets not known yet (%s); asking again", exc or "timeout")
            return None

    async def _lag(self) -> int:
        consumer = self._open_consumer()
        ends = await consumer.end_offsets(self._partitions)
        behind = 0
        for tp in self._partitions:
            behind += max(0, ends[tp] - await consumer.position(tp))
        return behind

    def close(self) -> None:
        """Stop the client and close the loop; safe to call more than once."""
        loop, consumer = self._loop, self._consumer
        self._loop, self._consumer = None, None
        if loop is None:
            return
        try:
            if consumer is not None:
                loop.run_until_complete(asyncio.wait_for(consumer.stop(), 30.0))
        except (TimeoutError, KafkaError) as exc:
            log.warning("sink: the Kafka consumer did not close cleanly: %s", exc)
        finally:
            _cancel_all(loop)
            loop.close()

    def _open_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the reader is not open")
        return self._consumer

    def _call(self, work: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
        """Run ``work`` on the private loop; TimeoutError after ``timeout_s``, ReaderStopped
        soon after ``stop`` is set (the work is cancelled either way)."""
        if self._loop is None:
            work.close()
            raise RuntimeError("the reader is not open")
        loop = self._loop
        task = loop.create_task(work)
        deadline = time.monotonic() + timeout_s
        try:
            while not task.done():
                if self._stop.is_set():
                    raise ReaderStopped
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer from Kafka in {timeout_s:g} s")
                loop.run_until_complete(asyncio.wait([task], timeout=min(_SLICE_S, left)))
            return task.result()
        finally:
            if not task.done():
                task.cancel()
                loop.run_until_complete(asyncio.gather(task, return_exceptions=True))


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on ``loop`` (tasks of a client that did not stop) and let them end."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
