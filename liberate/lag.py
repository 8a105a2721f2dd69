"""How far behind each connector is: what ``liberate status`` prints and the metrics export.

A source measures its own lag (``Source.status``: it connects briefly and compares the stored
position with the database now); a sink's lag is read from the stream backend: the end offset
of each partition it reads minus the offset its group committed, summed per topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from liberate.config.base import SinkConfig, SourceConfig
from liberate.connector import ConnectorStatus
from liberate.errors import LiberateError
from liberate.records import TopicPartition
from liberate.streams.base import StreamBackend, TopicInfo
from liberate.verify.routes import consumes

#: the numeric lag fields sources report, and what each counts (the metrics' ``measure`` label)
LAG_MEASURES: Mapping[str, str] = {
    "stored_behind_bytes": "WAL bytes between the stored position and pg_current_wal_lsn()",
    "slot_lag_bytes": "WAL bytes the replication slot has not confirmed",
    "slot_retained_bytes": "WAL bytes the replication slot keeps on the server's disk",
    "bytes_behind": "binlog bytes between the stored position and the server's current one",
    "behind_s": "seconds between the newest polled timestamp and the database clock",
    "rows_behind": "rows the next polling cycle has still to read",
    "rows": "rows waiting in the outbox table",
}


def source_status(config: SourceConfig, offsets: Mapping[str, Any]) -> ConnectorStatus:
    """What the source reports (position, lag, state), connecting briefly; never raises a
    ``LiberateError``: an error becomes the state."""
    from liberate.runtime.pipeline import build_source

    try:
        return build_source(config).status(offsets)
    except LiberateError as exc:
        return ConnectorStatus(position={k: dict(v) for k, v in offsets.items()},
                               state=f"unavailable: {exc.message}")


def lag_measures(lag: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """The numeric lag fields of a status as ``(partition, measure, value)``.

    Sources report either one flat map (``{"bytes_behind": 12}``: partition ``""``) or one map
    per source partition (``{"{\\"table\\":\\"orders\\"}": {"rows_behind": 3}}``).
    """
    found: list[tuple[str, str, float]] = []
    for key, value in lag.items():
        if isinstance(value, Mapping):
            found.extend((key, measure, number) for _, measure, number in lag_measures(value))
        elif key in LAG_MEASURES and _is_number(value):
            found.append(("", key, float(value)))
    return found


def sink_lag(config: SinkConfig, backend: StreamBackend, infos: Iterable[TopicInfo]
             ) -> dict[str, int]:
    """Records the sink has still to write, per topic: end offset minus the group's committed
    offset, summed over the topic's partitions."""
    committed = backend.group_offsets(config.name)
    lag: dict[str, int] = {}
    for info in sorted(infos, key=lambda i: i.name):
        if not consumes(config, info.name):
            continue
        lag[info.name] = sum(
            max(0, end - committed.get(TopicPartition(info.name, partition), 0))
            for partition, end in info.end_offsets.items()
        )
    return lag


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
