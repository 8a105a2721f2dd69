"""Dead letters: what the sink hands the runtime for the dead-letter topic, and key texts.

The runtime attaches a ``SinkContext`` to the sink (``SqlSink.attach_context``, after Kafka
Connect's ``SinkTaskContext``): it knows the bytes each record was consumed as and appends
them, with the headers built here, to the dead-letter topic; it also tells whether a record's
value schema is the latest registered one (schema evolution judges narrowings and dropped
columns only for the latest schema: an older producer's records are no schema change).

The headers follow Kafka Connect's ``errors.deadletterqueue.context`` names, so tools that
read Connect's dead-letter topics read ours, plus liberate's own:

- ``__connect.errors.topic`` / ``.partition`` / ``.offset``: where the record came from;
- ``__connect.errors.connector.name``: the sink;
- ``__connect.errors.exception.class.name`` / ``.exception.message``: the error (a parked
  record has none of its own: ``liberate.errors.Parked`` and the reason);
- ``__liberate.errors.timestamp``: when it was dead-lettered (ms since the epoch);
- ``__liberate.errors.parked.behind``: for a parked record, the record it waits behind
  (``topic[partition]@offset``).

A record the runtime could not decode arrives flagged: its ``extra`` holds the ``RecordError``
under ``RECORD_ERROR`` (a contract with ``liberate.runtime``), and its key when the key
decoded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Hashable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from liberate.records import Headers, SinkRecord

#: ``SinkRecord.extra`` key of the error of a record the runtime could not decode
RECORD_ERROR = "liberate.error"

TOPIC = "__connect.errors.topic"
PARTITION = "__connect.errors.partition"
OFFSET = "__connect.errors.offset"
CONNECTOR = "__connect.errors.connector.name"
ERROR_CLASS = "__connect.errors.exception.class.name"
ERROR_MESSAGE = "__connect.errors.exception.message"
TIMESTAMP = "__liberate.errors.timestamp"
PARKED_BEHIND = "__liberate.errors.parked.behind"
PARKED_CLASS = "liberate.errors.Parked"


class SinkContext(Protocol):
    """What the sink needs from the runtime: the consumed bytes, the dead-letter topic, and
    the age of a schema."""

    def raw(self, record: SinkRecord) -> tuple[bytes | None, bytes | None] | None:
        """The key and value bytes ``record`` was consumed as; None when unknown."""
        ...

    def send(self, topic: str, letters: Sequence[tuple[SinkRecord, Headers]]) -> None:
        """Append each record's consumed bytes, its headers plus the given ones, to ``topic``.

        Durable on return; raises ``RetriableError`` or ``FatalError`` otherwise.
        """
        ...

    def is_latest_schema(self, record: SinkRecord) -> bool | None:
        """Whether ``record``'s value schema is the latest version of its registry subject;
        None when it cannot tell."""
        ...


def letter_headers(
    record: SinkRecord,
    *,
    sink: str,
    error_class: str,
    message: str,
    behind: str | None,
    now_ms: int,
) -> Headers:
    """The dead-letter headers of ``record`` (see the module doc)."""
    headers = [
        (TOPIC, record.topic.encode()),
        (PARTITION, str(record.partition).encode()),
        (OFFSET, str(record.offset).encode()),
        (CONNECTOR, sink.encode()),
        (ERROR_CLASS, error_class.encode()),
        (ERROR_MESSAGE, message.encode()),
        (TIMESTAMP, str(now_ms).encode()),
    ]
    if behind is not None:
        headers.append((PARKED_BEHIND, behind.encode()))
    return tuple(headers)


def key_text(identity: tuple[Hashable, ...]) -> str:
    """A stable text of a key (its values in key order), equal across processes."""
    return json.dumps([_plain(v) for v in identity], ensure_ascii=False, separators=(",", ":"))


def key_hash(text: str) -> str:
    """The fixed-length form of a key text that the parked table indexes."""
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return repr(value)
