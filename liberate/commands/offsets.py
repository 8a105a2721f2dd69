"""``liberate offsets FILE`` and ``liberate offsets FILE reset NAME``: stored positions.

Sources keep their offsets in the stream backend (one offset per source partition, e.g. per
table); sinks keep the next offset of every topic partition in their own target (the SQL sink's
``liberate_sink_offsets`` table). ``reset`` replaces one connector's positions, after a
confirmation, and only while no ``liberate run`` runs that connector (its advisory lock,
``liberate.runtime.locks``).

``--to`` takes JSON in the form ``liberate offsets`` prints: for a source
``{"<partition>": {<offset>}}`` (or just ``{<offset>}`` when the source has one partition),
for a sink ``{"<topic>": {"<partition>": <next offset>}}``. The partitions named are set, the
others are kept; a source partition set to ``null`` is forgotten (read from the beginning).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO, runtime_checkable

from liberate.config.base import SinkConfig, SourceConfig
from liberate.config.loader import load_run_file
from liberate.config.models import RunConfig
from liberate.connector import Sink
from liberate.errors import ConfigError, FatalError
from liberate.records import Primitive, TopicPartition
from liberate.runtime import locks
from liberate.runtime.pipeline import build_sink, open_backend
from liberate.streams.base import end_offsets
from liberate.verify.routes import consumes

SourceOffsets = dict[str, Mapping[str, Primitive]]


@runtime_checkable
class ResettableSink(Protocol):
    """A sink whose stored offsets can be replaced (the SQL sink)."""

    def reset_offsets(self, offsets: Mapping[TopicPartition, int] | None) -> None:
        """Replace the stored next offsets, or remove them (``None``)."""
        ...


def show(path: str, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Print every connector's stored position (and each sink partition's end offset)."""
    config = load_run_file(path)
    backend = open_backend(config.streams)
    try:
        ends = end_offsets(backend.topics())
        sources = {s.name: backend.source_offsets(s.name) for s in config.sources}
        sinks = {s.name: _sink_position(s, ends) for s in config.sinks}
    finally:
        backend.close()
    if as_json:
        json.dump({"sources": sources, "sinks": sinks}, out, indent=2, default=str)
        out.write("\n")
        return 0
    for name, offsets in sources.items():
        print(f"source {name}", file=out)
        if not offsets:
            print("  (no stored offset: starts from the beginning)", file=out)
        for partition, offset in sorted(offsets.items()):
            print(f"  {partition}  {_compact(offset)}", file=out)
    for name, partitions in sinks.items():
        print(f"sink {name}", file=out)
        if not partitions:
            print("  (no stored offset: reads its topics from the beginning)", file=out)
        for where, position in partitions.items():
            print(f"  {where:<40} next {position['next']:>8} of {position['end']:>8}"
                  f"  (lag {position['lag']})", file=out)
    return 0


def reset(
    path: str,
    name: str,
    *,
    to: str | None,
    yes: bool,
    out: TextIO = sys.stdout,
    ask: Callable[[str], str] = input,
) -> int:
    """Reset connector ``name`` to the beginning (``to`` None) or to the JSON ``to``."""
    config = load_run_file(path)
    source, sink = _connector(config, name)
    target = _parse(to)
    with locks.stopped(config.streams, "source" if source is not None else "sink", name):
        if source is not None:
            backend = open_backend(config.streams)
            try:
                current = backend.source_offsets(name)
                offsets = None if target is None else _source_target(name, target, current)
                if not _confirmed(f"source {name}", current, offsets, yes, out, ask):
                    return 1
                backend.reset_source_offsets(name, offsets)
            finally:
                backend.close()
        else:
            assert sink is not None
            connector = build_sink(sink)
            if not isinstance(connector, ResettableSink):
                raise FatalError(f"sink {name} ({sink.connector}) cannot reset its offsets")
            current_sink = connector.status().position
            sink_offsets = None if target is None else {
                **_sink_target(name, current_sink), **_sink_target(name, target)
            }
            shown = None if sink_offsets is None else _by_topic(sink_offsets)
            if not _confirmed(f"sink {name}", current_sink, shown, yes, out, ask):
                return 1
            connector.reset_offsets(sink_offsets)
    print(f"reset {name}", file=out)
    return 0


def _connector(config: RunConfig, name: str) -> tuple[SourceConfig | None, SinkConfig | None]:
    for source in config.sources:
        if source.name == name:
            return source, None
    for sink in config.sinks:
        if sink.name == name:
            return None, sink
    known = [c.name for c in config.sources] + [c.name for c in config.sinks]
    raise ConfigError(f"no source or sink named {name} in {config.path}",
                      hint=f"choose among: {', '.join(known)}")


def _parse(to: str | None) -> dict[str, Any] | None:
    if to is None:
        return None
    try:
        value = json.loads(to)
    except ValueError as exc:
        raise ConfigError(f"--to is not JSON: {exc}",
                          hint="quote it for the shell: --to '{\"id\": 10}'") from exc
    if not isinstance(value, dict):
        raise ConfigError("--to must be a JSON object", hint="see `liberate offsets FILE`")
    return value


def _source_target(name: str, to: dict[str, Any], current: SourceOffsets) -> SourceOffsets:
    """The offsets after ``--to``: the mapping form sets the partitions it names (``null``
    forgets one) and keeps the others; a bare offset sets the source's only partition."""
    if to and all(key.startswith("{") and (v is None or isinstance(v, dict))
                  for key, v in to.items()):
        merged = dict(current)
        for key, value in to.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged
    if len(current) != 1:
        partitions = ", ".join(sorted(current)) or "none stored yet"
        raise ConfigError(
            f"source {name} has {len(current)} stored partition(s) ({partitions}): "
            "--to must name the partition",
            hint='give --to \'{"<partition>": {...offset...}}\' with partitions as listed by '
            "`liberate offsets FILE`",
        )
    return {next(iter(current)): to}


def _sink_target(name: str, to: Mapping[str, Any]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    try:
        for topic, partitions in to.items():
            for partition, offset in dict(partitions).items():
                offsets[TopicPartition(topic, int(partition))] = int(offset)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"--to for sink {name} must map topics to {{partition: next offset}}",
            hint='e.g. --to \'{"shop.orders": {"0": 120}}\'',
        ) from exc
    return offsets


def _confirmed(
    what: str,
    current: Mapping[str, Any],
    new: Mapping[str, Any] | None,
    yes: bool,
    out: TextIO,
    ask: Callable[[str], str],
) -> bool:
    after = "nothing stored: it starts from the beginning" if new is None else _compact(new)
    print(f"{what}\n  now:   {_compact(current) if current else 'nothing stored'}\n"
          f"  after: {after}", file=out)
    if yes:
        return True
    out.flush()
    try:
        answer = ask("reset? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("not reset", file=out)
    return False


def _sink_position(
    config: SinkConfig, ends: Mapping[TopicPartition, int]
) -> dict[str, dict[str, int]]:
    sink: Sink = build_sink(config)
    stored = sink.status().position
    rows: dict[str, dict[str, int]] = {}
    for tp in sorted(ends, key=lambda tp: (tp.topic, tp.partition)):
        if not consumes(config, tp.topic):
            continue
        next_offset = int(stored.get(tp.topic, {}).get(str(tp.partition), 0))
        end = ends[tp]
        rows[f"{tp.topic}[{tp.partition}]"] = {
            "next": next_offset, "end": end, "lag": max(0, end - next_offset)
        }
    return rows


def _by_topic(offsets: Mapping[TopicPartition, int]) -> dict[str, dict[str, int]]:
    shown: dict[str, dict[str, int]] = {}
    for tp, offset in sorted(offsets.items()):
        shown.setdefault(tp.topic, {})[str(tp.partition)] = offset
    return shown


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
