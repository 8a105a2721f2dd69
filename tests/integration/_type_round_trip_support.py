"""Running a source into a sink once, for the type round-trip tests of each database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liberate.config.loader import load_run_file
from liberate.runtime import Pipeline, open_backend


@dataclass(frozen=True)
class Case:
    """A column type, values that reach its edges, and the Avro type it maps to."""

    name: str
    ddl: str
    values: tuple[Any, ...]
    avro: Any
    read: str = "v"  # how the source column is selected to read it exactly

    @property
    def table(self) -> str:
        return f"t_{self.name}"


@dataclass
class Outcome:
    """What one run reported, and the value schemas its topics registered."""

    errors: list[str]
    #: subject -> the fields of each registered version's value record, oldest first
    versions: dict[str, list[list[dict[str, Any]]]]

    def column_type(self, table: str, column: str) -> Any:
        """The Avro type of ``column`` of the one version of the subject of ``table``."""
        (subject,) = [s for s in self.versions if s.endswith(f".{table}-value")]
        (fields,) = self.versions[subject]
        return next(f["type"] for f in fields if f["name"] == column)


def run_once(run_file: Path, *, name: str, source: str, sink: str, connector: str,
             tables: list[str], options: dict[str, str]) -> Outcome:
    """Run source ``name`` (``tables`` of ``source``) -> stream -> SQL sink ``sink`` once."""
    settings = "".join(f"    {key}: {value}\n" for key, value in options.items())
    run_file.write_text(f"""\
streams:
  path: {run_file.with_suffix(".db")}
sources:
  - name: {name}
    connector: {connector}
    database: "{source}"
    tables: [{", ".join(tables)}]
{settings}sinks:
  - name: copy
    connector: sql
    database: "{sink}"
    topics_regex: "{name}[.].*"
""")
    config = load_run_file(run_file)
    backend = open_backend(config.streams)
    try:
        report = Pipeline(config, backend, once=True).run()
        registry = backend.registry()
        versions = {
            subject: [_row_fields(v.schema.fields) for v in registry.versions(subject)]
            for subject in registry.subjects()
            if subject.endswith("-value")
        }
        return Outcome(list(report.errors), versions)
    finally:
        backend.close()


def _row_fields(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The row record's fields: the value's, or a change envelope's (``before`` defines it)."""
    before = next((f for f in fields if f["name"] == "before"), None)
    if before is None:
        return fields
    record: dict[str, Any] = next(t for t in before["type"] if t != "null")
    return list(record["fields"])
