"""``liberate topics``, ``tail`` and ``status``: what is in the streams and how far behind."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from liberate.config.base import SinkConfig, SourceConfig
from liberate.config.loader import load_run_file
from liberate.errors import ConfigError, FatalError, LiberateError
from liberate.jsonout import header_text, timestamp_text, to_json
from liberate.lag import lag_measures, sink_lag, source_status
from liberate.records import TopicPartition
from liberate.runtime import open_backend
from liberate.runtime.pipeline import build_sink
from liberate.serde import RecordDeserializer
from liberate.streams.base import end_offsets, unread

#: ``tail --no-follow`` gives up this long after its last record short of the end offsets
TAIL_WAIT_S = 60.0


def topics(path: str, *, out: TextIO = sys.stdout) -> int:
    """One line per topic: partitions, records and end offsets."""
    config = load_run_file(path)
    backend = open_backend(config.streams)
    try:
        infos = backend.topics()
    finally:
        backend.close()
    if not infos:
        print("no topics yet: run `liberate run FILE` first", file=out)
        return 0
    header = f"{'TOPIC':<40} {'PARTITIONS':>10} {'RECORDS':>10} {'END OFFSETS':>12}  COMPACTED"
    print(header, file=out)
    for info in infos:
        ends = ",".join(str(info.end_offsets[p]) for p in sorted(info.end_offsets))
        print(f"{info.name:<40} {info.partitions:>10} {info.records:>10} {ends:>12}  "
              f"{'yes' if info.compacted else 'no'}", file=out)
    return 0


def tail(
    path: str,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Print records of ``topic`` as JSON lines; follows new records unless ``follow`` is off."""
    config = load_run_file(path)
    backend = open_backend(config.streams)
    try:
        known = {info.name: info for info in backend.topics()}
        if topic not in known and not follow:
            raise_unknown_topic(topic, sorted(known))
        deserializer = RecordDeserializer(backend.registry())
        # An ephemeral group that never commits: tail never moves anybody's position.
        consumer = backend.consumer(
            f"liberate-tail-{uuid.uuid4().hex[:12]}",
            topics=(topic,),
            from_beginning=from_beginning,
        )
        # Without follow, from the beginning: up to the end offsets of now. An empty poll is
        # not the end: a Kafka consumer group takes seconds to be assigned its partitions.
        ends = end_offsets([known[topic]]) if from_beginning and not follow else {}
        printed = 0
        progress = time.monotonic()
        try:
            while limit is None or printed < limit:
                want = 500 if limit is None else min(500, limit - printed)
                batch = consumer.poll(want, 0.5)
                if not batch:
                    if follow:
                        continue
                    left = unread(ends, consumer.positions())
                    if not left:
                        break
                    if time.monotonic() - progress > TAIL_WAIT_S:
                        _raise_not_reached(topic, left, consumer.positions(), ends)
                    continue
                progress = time.monotonic()
                for record in deserializer.deserialize(batch):
                    line = {
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "key": to_json(record.key),
                        "value": to_json(record.value),
                        "headers": {k: header_text(v) for k, v in record.headers},
                        "timestamp": timestamp_text(record.timestamp_ms),
                    }
                    print(json.dumps(line, ensure_ascii=False), file=out)
                    printed += 1
                out.flush()
        except KeyboardInterrupt:
            pass
        finally:
            consumer.close()
    finally:
        backend.close()
    return 0


def _raise_not_reached(topic: str, left: Sequence[TopicPartition],
                       at: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
                       ) -> None:
    where = ", ".join(f"[{tp.partition}] at {at.get(tp, 0)} of {ends[tp]}" for tp in left[:5])
    raise FatalError(
        f"tail of {topic}: {len(left)} partition(s) not read to their end, no record for"
        f" {TAIL_WAIT_S:.0f} s: {where}",
        hint="the consumer was not assigned the partitions (is the broker reachable?), or a"
        " transaction stays open in the topic; tail without --no-follow to keep waiting",
    )


def raise_unknown_topic(topic: str, known: list[str]) -> None:
    """Refuse to tail a topic that does not exist (a typo would otherwise wait forever)."""
    listing = ", ".join(known) if known else "none yet"
    raise ConfigError(f"topic {topic!r} does not exist (topics: {listing})",
                      hint="see `liberate topics FILE`")


def status(path: str, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Per source its position, lag and state; per sink its lag per topic; topic sizes.

    Sources measure their lag by connecting briefly (``Source.status``); a database that
    cannot be reached shows as the source's state, and the others are still reported.
    """
    config = load_run_file(path)
    backend = open_backend(config.streams)
    try:
        infos = backend.topics()
        sources = [_source_report(cfg, backend.source_offsets(cfg.name))
                   for cfg in config.sources]
        sinks = [_sink_report(cfg, sink_lag(cfg, backend, infos)) for cfg in config.sinks]
    finally:
        backend.close()
    report: dict[str, Any] = {
        "backend": config.streams.backend,
        "sources": sources,
        "sinks": sinks,
        "topics": [
            {"name": i.name, "partitions": i.partitions, "records": i.records,
             "bytes": i.bytes, "end_offsets": {str(p): e for p, e in i.end_offsets.items()}}
            for i in sorted(infos, key=lambda i: i.name)
        ],
        "checked_at": timestamp_text(int(time.time() * 1000)),
    }
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print_status(report, out)
    return 0


def _source_report(config: SourceConfig, offsets: Mapping[str, Any]) -> dict[str, Any]:
    live = source_status(config, offsets)
    return {
        "name": config.name,
        "connector": config.connector,
        "state": live.state,
        "position": to_json(dict(live.position)),
        "lag": to_json(dict(live.lag)),
        "lag_measures": [{"partition": p, "measure": m, "value": v}
                         for p, m, v in lag_measures(live.lag)],
    }


def _sink_report(config: SinkConfig, lag: dict[str, int]) -> dict[str, Any]:
    try:
        state = build_sink(config).status().state
    except LiberateError as exc:
        state = f"unavailable: {exc.message}"
    return {"name": config.name, "connector": config.connector, "state": state,
            "lag": lag, "lag_total": sum(lag.values())}


def print_status(report: Mapping[str, Any], out: TextIO) -> None:
    """The report as tables: sources, sinks (one row per topic), topics."""
    print(f"backend: {report['backend']}   checked at {report['checked_at']}", file=out)
    rows: list[tuple[str, ...]] = []
    for source in report["sources"]:
        for index, (partition, position, lag) in enumerate(_by_partition(source)):
            first = index == 0
            rows.append((source["name"] if first else "", source["connector"] if first else "",
                         source["state"] if first else "", partition, position, lag))
    _table(("SOURCE", "CONNECTOR", "STATE", "PARTITION", "POSITION", "LAG"), rows, out)
    sink_rows: list[tuple[str, ...]] = []
    for sink in report["sinks"]:
        topics = sink["lag"] or {"-": 0}
        for index, (topic, lag) in enumerate(topics.items()):
            first = index == 0
            sink_rows.append((sink["name"] if first else "", sink["state"] if first else "",
                              topic, str(lag)))
    _table(("SINK", "STATE", "TOPIC", "LAG (RECORDS)"), sink_rows, out)
    topic_rows = [(t["name"], str(t["partitions"]), str(t["records"]),
                   "-" if t["bytes"] is None else _size(t["bytes"])) for t in report["topics"]]
    _table(("TOPIC", "PARTITIONS", "RECORDS", "BYTES"), topic_rows, out)


def _table(header: tuple[str, ...], rows: Sequence[tuple[Any, ...]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print(file=out)
    for row in (header, *rows):
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


def _by_partition(source: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(partition, position, lag)`` texts, one per source partition (CDC sources: one)."""
    position: Mapping[str, Any] = source["position"]
    nested = any(isinstance(v, Mapping) for v in position.values())
    keys = list(position) if nested else [""]
    for measure in source["lag_measures"]:
        if measure["partition"] not in keys:
            keys.append(measure["partition"])
    rows = []
    for key in keys:
        here = position.get(key, {}) if nested else position
        fields = " ".join(f"{k}={_short(v)}" for k, v in here.items()) or "none yet"
        lags = [m for m in source["lag_measures"] if m["partition"] == key]
        lag = ", ".join(_measure_text(m["measure"], m["value"]) for m in lags)
        if source["lag"].get("gtids_caught_up") is False and not key:
            lag += ", GTIDs behind"
        if not lag:
            lag = str(source["lag"]["error"]) if "error" in source["lag"] else "-"
        rows.append((_partition_label(key) or "-", fields, lag))
    return rows


_BYTES_TEXT = {
    "stored_behind_bytes": "WAL {} behind",
    "slot_lag_bytes": "slot {} unconfirmed",
    "slot_retained_bytes": "slot retains {}",
    "bytes_behind": "binlog {} behind",
}


def _measure_text(measure: str, value: float) -> str:
    if measure == "behind_s":
        return f"newest row {value:g}s old"
    if measure in ("rows_behind", "rows"):
        return f"{value:g} rows behind"
    return _BYTES_TEXT.get(measure, measure + " {}").format(_size(int(value)))


def _partition_label(key: str) -> str:
    """A source partition key (JSON of the partition map) as its values, e.g. ``orders``."""
    try:
        partition = json.loads(key)
    except ValueError:
        return key
    if isinstance(partition, dict):
        return ".".join(str(v) for v in partition.values())
    return key


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"
