"""``liberate dlq list FILE`` and ``liberate dlq replay FILE``: the records sinks set aside.

A sink with ``errors.tolerance: all`` dead-letters a record it cannot write and parks the
later records of the same key behind it (so one key's changes are never applied out of
order). ``list`` shows them per sink, oldest first; ``replay`` applies them to the target in
order, once the cause is fixed, and releases their keys; ``discard`` drops the named ones
without applying them (a record that should never be written), the others of their key stay
to be replayed. All work on the sink's own record of them in its target (the dead-letter topic
holds copies for other tools).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO, runtime_checkable

from liberate.commands.sink import select_sinks
from liberate.config.loader import load_run_file
from liberate.errors import FatalError
from liberate.jsonout import timestamp_text
from liberate.records import ConsumedRecord, SinkRecord
from liberate.runtime.pipeline import build_sink, open_backend
from liberate.serde import RecordDeserializer


@runtime_checkable
class ParkingSink(Protocol):
    """A sink that keeps dead-lettered and parked records (the SQL sink)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def parked(self) -> list[dict[str, Any]]:
        """The parked records, oldest first: ``origin``, ``table``, ``key``, ``behind``,
        ``error``, ``error_class``, ``parked_at_ms``."""
        ...

    def replay(self, decode: Callable[[list[ConsumedRecord]], list[SinkRecord]]) -> int:
        """Apply every parked record in order and release their keys; how many."""
        ...

    def discard(self, origins: Sequence[str]) -> list[str]:
        """Drop the parked records of ``origins`` without applying them; the ones found."""
        ...


def list_parked(
    path: str, *, sink_name: str | None = None, as_json: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Print the parked records of each sink (one JSON object a line with ``as_json``)."""
    config = load_run_file(path)
    for sink_config in select_sinks(config.sinks, sink_name):
        sink = build_sink(sink_config)
        if not isinstance(sink, ParkingSink):
            continue
        sink.open()
        try:
            parked = sink.parked()
        finally:
            sink.close()
        if as_json:
            for entry in parked:
                print(json.dumps({"sink": sink_config.name, **_shown(entry)}), file=out)
            continue
        print(f"sink {sink_config.name}: {len(parked)} record(s) set aside", file=out)
        for entry in parked:
            shown = _shown(entry)
            state = (f"parked behind {shown['behind']}" if shown["behind"]
                     else f"dead-lettered: {shown['error']}")
            print(f"  {shown['origin']}  table {shown['table']}  key {shown['key']}  "
                  f"{state}  ({shown['parked_at']})", file=out)
    return 0


def replay(path: str, *, sink_name: str | None = None, out: TextIO = sys.stdout) -> int:
    """Replay the parked records of each sink; stop at the first sink whose replay fails."""
    config = load_run_file(path)
    backend = open_backend(config.streams)
    try:
        deserializer = RecordDeserializer(backend.registry())
        for sink_config in select_sinks(config.sinks, sink_name):
            sink = build_sink(sink_config)
            if not isinstance(sink, ParkingSink):
                continue
            sink.open()
            try:
                count = sink.replay(deserializer.deserialize)
            finally:
                sink.close()
            print(f"sink {sink_config.name}: replayed {count} record(s)", file=out)
    finally:
        backend.close()
    return 0


def discard(
    path: str, origins: Sequence[str], *, sink_name: str | None = None, out: TextIO = sys.stdout
) -> int:
    """Drop the named records from each sink's set-aside records; exit 1 if one is unknown."""
    config = load_run_file(path)
    found: set[str] = set()
    for sink_config in select_sinks(config.sinks, sink_name):
        sink = build_sink(sink_config)
        if not isinstance(sink, ParkingSink):
            continue
        sink.open()
        try:
            dropped = sink.discard(origins)
        finally:
            sink.close()
        found.update(dropped)
        for origin in dropped:
            print(f"sink {sink_config.name}: discarded {origin}", file=out)
    missing = [o for o in origins if o not in found]
    if missing:
        raise FatalError(
            f"no sink has set aside {', '.join(missing)}",
            hint="name records as `liberate dlq list FILE` shows them: topic[partition]@offset",
        )
    return 0


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in entry.items() if k != "parked_at_ms"}
    shown["parked_at"] = timestamp_text(entry.get("parked_at_ms"))
    return shown
