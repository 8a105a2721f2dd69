"""What the runtime reports to the Prometheus metrics, and how lag measures are read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from liberate.envelope import envelope_schema
from liberate.errors import FatalError, RetriableError
from liberate.lag import lag_measures
from liberate.metrics import METRICS
from liberate.records import SourceRecord
from liberate.runtime._retry import Backoff, supervise
from liberate.runtime._stats import ConnectorStats
from liberate.schema.avro import AvroSchema

ROW = AvroSchema({"type": "record", "name": "Value", "namespace": "shop.orders",
                  "fields": [{"name": "id", "type": "long"}]})
ENVELOPE = envelope_schema(ROW, {"type": "record", "name": "Source", "fields": []})


@pytest.fixture
def enabled() -> Iterator[None]:
    METRICS.enabled = True
    try:
        yield
    finally:
        METRICS.enabled = False


def _sample(name: str, **labels: str) -> float:
    return METRICS.registry.get_sample_value(name, labels) or 0.0


def _record(value: dict[str, Any] | None, schema: AvroSchema) -> SourceRecord:
    return SourceRecord("t", {"id": 1}, value, None, schema, {"table": "t"}, {"pos": 1})


def test_events_are_counted_by_the_envelopes_op_and_tombstones_apart(enabled: None) -> None:
    before = {op: _sample("liberate_source_events_total", source="m1", op=op)
              for op in ("c", "u", "d", "tombstone")}
    records = [_record({"op": "c"}, ENVELOPE), _record({"op": "c"}, ENVELOPE),
               _record({"op": "u"}, ENVELOPE), _record({"op": "d"}, ENVELOPE),
               _record(None, ENVELOPE)]
    METRICS.source_batch("m1", "postgres", records, 0.2)
    counted = {op: _sample("liberate_source_events_total", source="m1", op=op) - before[op]
               for op in before}
    assert counted == {"c": 2, "u": 1, "d": 1, "tombstone": 1}
    assert _sample("liberate_source_batch_seconds_count", source="m1") >= 1


def test_query_entity_events_count_as_reads_even_with_an_op_column(enabled: None) -> None:
    METRICS.source_batch("m2", "query", [_record({"id": 1, "op": "x"}, ROW)] * 3, 0.01)
    assert _sample("liberate_source_events_total", source="m2", op="r") == 3
    assert _sample("liberate_source_events_total", source="m2", op="x") == 0


def test_nothing_is_counted_while_metrics_are_off() -> None:
    METRICS.source_batch("m3", "query", [_record({"id": 1}, ROW)], 0.01)
    assert _sample("liberate_source_events_total", source="m3", op="r") == 0


def test_retriable_and_fatal_failures_are_counted_per_connector(enabled: None) -> None:
    failures = iter([RetriableError("lost connection"), FatalError("bad table")])

    def attempt(_backoff: Backoff) -> None:
        raise next(failures)

    stats = ConnectorStats("m4")
    stop = threading.Event()
    supervise("source m4", attempt, stop=stop, max_retries=5, stats=stats)
    assert stats.error is not None and "bad table" in stats.error
    assert _sample("liberate_connector_errors_total", connector="m4", kind="retriable") == 1
    assert _sample("liberate_connector_errors_total", connector="m4", kind="fatal") == 1


def test_lag_measures_read_flat_and_per_partition_lags_and_skip_non_lags() -> None:
    flat = {"server_file": "bin.000002", "server_pos": 99, "bytes_behind": 1200,
            "binlog_available": True}
    assert lag_measures(flat) == [("", "bytes_behind", 1200.0)]
    nested = {'{"table":"orders"}': {"behind_s": 2.5, "rows_behind": 3},
              '{"table":"items"}': {"cycle": 4, "cycle_complete": True}}
    assert lag_measures(nested) == [('{"table":"orders"}', "behind_s", 2.5),
                                    ('{"table":"orders"}', "rows_behind", 3.0)]
