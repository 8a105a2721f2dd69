"""``liberate topics``, ``tail`` and ``status``: what is in the streams and how far behind."""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any, TextIO

from liberate.config.base import SourceConfig
from liberate.config.loader import load_run_file
from liberate.errors import ConfigError, LiberateError
from liberate.jsonout import header_text, timestamp_text, to_json
from liberate.records import TopicPartition
from liberate.runtime import open_backend
from liberate.runtime.pipeline import build_source
from liberate.serde import RecordDeserializer


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
        printed = 0
        try:
            while limit is None or printed < limit:
                want = 500 if limit is None else min(500, limit - printed)
                batch = consumer.poll(want, 0.5)
                if not batch:
                    if not follow:
                        break
                    continue
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


def raise_unknown_topic(topic: str, known: list[str]) -> None:
    """Refuse to tail a topic that does not exist (a typo would otherwise wait forever)."""
    listing = ", ".join(known) if known else "none yet"
    raise ConfigError(f"topic {topic!r} does not exist (topics: {listing})",
                      hint="see `liberate topics FILE`")


def status(path: str, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Position of every source, lag of every sink, size of every topic."""
    config = load_run_file(path)
    backend = open_backend(config.streams)
    try:
        infos = backend.topics()
        ends = {TopicPartition(i.name, p): end for i in infos for p, end in i.end_offsets.items()}
        sources: list[dict[str, Any]] = []
        for source in config.sources:
            offsets = backend.source_offsets(source.name)
            positions = {k: dict(v) for k, v in offsets.items()}
            sources.append({"name": source.name, "positions": positions,
                            **_live_status(source, offsets)})
        sinks: list[dict[str, Any]] = []
        for sink in config.sinks:
            committed = backend.group_offsets(sink.name)
            lag = {
                f"{tp.topic}[{tp.partition}]": max(0, end - committed.get(tp, 0))
                for tp, end in sorted(ends.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
                if _sink_reads(sink.topics, sink.topics_regex, tp.topic)
            }
            sinks.append({"name": sink.name, "lag": lag})
    finally:
        backend.close()
    report: dict[str, Any] = {
        "backend": config.streams.backend,
        "sources": sources,
        "sinks": sinks,
        "topics": {i.name: i.records for i in infos},
        "checked_at": timestamp_text(int(time.time() * 1000)),
    }
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        _print_status(report, out)
    return 0


def _live_status(config: SourceConfig, offsets: Mapping[str, Any]) -> dict[str, Any]:
    """What the source itself reports (lag, state), connecting briefly; an error is shown."""
    try:
        live = build_source(config).status(offsets)
    except LiberateError as exc:
        return {"state": "unavailable", "error": exc.message}
    return {"state": live.state, "lag": to_json(dict(live.lag))}


def _sink_reads(topics: list[str], regex: str | None, topic: str) -> bool:
    if topic in topics:
        return True
    return regex is not None and re.fullmatch(regex, topic) is not None


def _print_status(report: dict[str, Any], out: TextIO) -> None:
    print(f"backend: {report['backend']}", file=out)
    for source in report["sources"]:
        print(f"source {source['name']}:", file=out)
        print(f"  state: {source['state']}", file=out)
        if source.get("error"):
            print(f"  error: {source['error']}", file=out)
        for name, value in (source.get("lag") or {}).items():
            print(f"  lag {name}: {json.dumps(value)}", file=out)
        if not source["positions"]:
            print("  no stored position yet", file=out)
        for partition, offset in source["positions"].items():
            print(f"  {partition}: {json.dumps(offset)}", file=out)
    for sink in report["sinks"]:
        total = sum(sink["lag"].values())
        print(f"sink {sink['name']}: lag {total} record(s)", file=out)
        for tp, lag in sink["lag"].items():
            print(f"  {tp}: {lag}", file=out)
    for topic, count in report["topics"].items():
        print(f"topic {topic}: {count} record(s)", file=out)
