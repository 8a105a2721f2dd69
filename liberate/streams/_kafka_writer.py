"""One producer of the Kafka backend: records and source offsets in one transaction, or
idempotently when the broker (or the run file) does without transactions.

Transactional: ``begin``, produce the records and the offset records, ``commit``; any failure
aborts, so neither is visible. When the abort itself cannot be confirmed (the broker went
away), the producer is dropped: the next one, with the same transactional id, fences it and
the broker aborts or completes what it left open. Idempotent (at-least-once): the records are
flushed first and the offsets only after them, so a failure in between replays, never skips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from liberate.config.models import KafkaSettings
from liberate.errors import LiberateError, RecordTooLargeError, RetriableError
from liberate.records import StreamRecord
from liberate.streams._kafka_config import REQUEST_TIMEOUT_S, producer_config
from liberate.streams._kafka_errors import (
    UNSUPPORTED,
    error_code,
    kafka_error_of,
    wrap_kafka_error,
)

log = logging.getLogger("liberate.kafka")

# A commit that keeps failing with retriable errors (a broker restarting) is retried this long.
COMMIT_TIMEOUT_S = 60.0
_QUEUE_FULL_WAIT_S = 0.05


class TransactionsUnsupported(Exception):
    """``init_transactions`` failed because the broker cannot do transactions."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KafkaWriter:
    """Writes batches of records with their offset records through one producer.

    ``transactional_id`` None makes an idempotent (at-least-once) writer. Threading: one
    thread at a time (the backend holds a lock per writer).
    """

    def __init__(
        self, settings: KafkaSettings, transactional_id: str | None, offsets_topic: str
    ) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.offsets_topic = offsets_topic
        self._producer: Producer | None = None
        self._failed: list[KafkaError] = []

    @property
    def transactional(self) -> bool:
        return self.transactional_id is not None

    def start(self) -> None:
        """Create the producer; a transactional one fences its predecessor.

        Raises ``TransactionsUnsupported`` when the broker cannot do transactions.
        """
        if self._producer is not None:
            return
        config = producer_config(self.settings, self.transactional_id)
        config["delivery.report.only.error"] = True
        config["on_delivery"] = self._delivered
        try:
            producer = Producer(config)
        except Exception as exc:
            raise self._wrap(exc, "create a producer") from exc
        if self.transactional_id is not None:
            try:
                producer.init_transactions(REQUEST_TIMEOUT_S)
            except Exception as exc:
                _close(producer)
                err = kafka_error_of(exc)
                if err is not None and int(err.code()) in UNSUPPORTED:
                    raise TransactionsUnsupported(f"{err.str()} ({err.name()})") from exc
                raise self._wrap(exc, "start a transactional producer") from exc
        self._producer = producer

    def write(
        self, records: Sequence[StreamRecord], offsets: Sequence[tuple[bytes, bytes | None]]
    ) -> None:
        """Make ``records`` and the offset records durable (see the module docstring)."""
        self.start()
        producer = self._producer
        assert producer is not None
        if self.transactional_id is None:
            self._write_idempotent(producer, records, offsets)
            return
        try:
            producer.begin_transaction()
        except Exception as exc:
            self._drop()
            raise self._wrap(exc, "begin a transaction") from exc
        try:
            self._produce(producer, records)
            for key, value in offsets:
                self._produce_one(producer, self.offsets_topic, key, value, None, 0)
            self._commit(producer)
        except BaseException as exc:
            self._abort(producer, exc)
            if isinstance(exc, LiberateError) or not isinstance(exc, Exception):
                raise
            raise self._wrap(exc, "write records and source offsets") from exc

    def close(self) -> None:
        """Flush (idempotent mode) and release the producer; idempotent."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(REQUEST_TIMEOUT_S)
            finally:
                _close(producer)

    # -- internals -------------------------------------------------------------------------

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failed.append(error)

    def _produce(self, producer: Producer, records: Sequence[StreamRecord]) -> None:
        # The hot loop of the backend: one C call per record, the slow path only when full.
        produce = producer.produce
        for index, r in enumerate(records):
            headers = r.headers
            try:
                produce(
                    r.topic,
                    r.value,
                    r.key,
                    headers=list(headers) if headers else None,
                    timestamp=r.timestamp_ms or 0,
                )
            except BufferError:
                self._produce_one(producer, r.topic, r.key, r.value, headers, r.timestamp_ms or 0)
            except KafkaException as exc:
                if error_code(exc) == KafkaError.MSG_SIZE_TOO_LARGE:
                    raise _too_large(r, index) from exc
                raise

    def _produce_one(
        self,
        producer: Producer,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        timestamp_ms: int,
    ) -> None:
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    key,
                    headers=list(headers) if headers else None,
                    timestamp=timestamp_ms,
                )
                return
            except BufferError:
                # The local queue is full: let librdkafka send some, then try again.
                producer.poll(_QUEUE_FULL_WAIT_S)

    def _commit(self, producer: Producer) -> None:
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        while True:
            try:
                producer.commit_transaction(REQUEST_TIMEOUT_S)
                return
            except Exception as exc:
                err = kafka_error_of(exc)
                # Retriable: the outcome is still open and commit may be called again.
                if err is None or not err.retriable() or time.monotonic() >= deadline:
                    raise
                log.warning("committing a transaction: %s; retrying", err.str())

    def _abort(self, producer: Producer, cause: BaseException) -> None:
        err = kafka_error_of(cause)
        if err is not None and err.fatal():
            self._drop()
            return
        try:
            producer.abort_transaction(REQUEST_TIMEOUT_S)
        except Exception as exc:
            # Unconfirmed: the next producer with this id fences this one, and the broker
            # then aborts (or completes) what this one left open.
            log.warning("aborting a transaction failed (%s); the producer is replaced", exc)
            self._drop()

    def _write_idempotent(
        self,
        producer: Producer,
        records: Sequence[StreamRecord],
        offsets: Sequence[tuple[bytes, bytes | None]],
    ) -> None:
        try:
            self._produce(producer, records)
            self._flush(producer)
            for key, value in offsets:
                self._produce_one(producer, self.offsets_topic, key, value, None, 0)
            self._flush(producer)
        except LiberateError:
            raise
        except Exception as exc:
            raise self._wrap(exc, "write records and source offsets") from exc

    def _flush(self, producer: Producer) -> None:
        remaining = producer.flush(COMMIT_TIMEOUT_S)
        failed, self._failed = self._failed, []
        if failed:
            raise wrap_kafka_error(failed[0], "deliver records", self.settings.bootstrap_servers)
        if remaining:
            raise RetriableError(
                f"Kafka: {remaining} record(s) not delivered within {COMMIT_TIMEOUT_S:.0f}s",
                hint=f"check that the brokers at {self.settings.bootstrap_servers} are up",
            )

    def _drop(self) -> None:
        producer, self._producer = self._producer, None
        self._failed = []
        if producer is not None:
            _close(producer)

    def _wrap(self, exc: BaseException, action: str) -> LiberateError:
        return wrap_kafka_error(exc, action, self.settings.bootstrap_servers)


def _too_large(record: StreamRecord, index: int) -> RecordTooLargeError:
    size = len(record.key or b"") + len(record.value or b"")
    return RecordTooLargeError(
        f"Kafka: a record for topic {record.topic} is {size} bytes, more than the producer's "
        "message.max.bytes",
        index=index,
        hint="raise message.max.bytes under streams.kafka.properties (and max.message.bytes of "
        "the topic, message.max.bytes of the broker), or keep such rows out of the source",
    )


def _close(producer: Producer) -> None:
    # Drop what is queued: a dropped producer's records belong to an aborted transaction.
    # Not Producer.close(): it aborts an open transaction and flushes with no time limit, and
    # hangs against a broker that is gone or has fenced the producer. Releasing the last
    # reference destroys the handle without waiting.
    try:
        producer.purge()
        producer.flush(0)
    except Exception as exc:
        log.debug("closing a producer: %s", exc)
