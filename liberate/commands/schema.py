"""``liberate schema list|show|diff|check FILE``: the registry's subjects, and the pre-flight
that says whether an ALTER TABLE will break consumers before it is deployed.

Every verb opens the registry of the run file's streams (embedded, or the Confluent-compatible
one of ``streams.schema_registry``) and applies the run file's compatibility levels as a run
does, so the level shown and checked is the one a run would enforce. ``check`` builds each
table's schemas from the database as it is now, exactly as its source would, and checks them
against each subject's registered versions: exit 0 when every change is compatible, 1 when
one would be refused (the run would stop at that table's next record).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO, runtime_checkable

from liberate.config.loader import load_run_file
from liberate.config.models import RunConfig
from liberate.errors import ConfigError
from liberate.runtime.pipeline import build_source
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import check_compatibility, describe_type
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.schema.registry import (
    CompatibilityLevel,
    RegisteredSchema,
    SchemaRegistry,
)
from liberate.schema.tables import TopicSchemas
from liberate.serde import subject_name

if TYPE_CHECKING:
    from liberate.schema.confluent import ConfluentRegistry


@runtime_checkable
class SchemaPreviewSource(Protocol):
    """A source that can build its tables' schemas without opening (query, postgres, mysql)."""

    def current_schemas(self) -> list[TopicSchemas]:
        """The key and value schemas of each table as the database has it now."""
        ...


@contextmanager
def _registry(
    config: RunConfig,
) -> Iterator[tuple[SchemaRegistry, Callable[[str], CompatibilityLevel]]]:
    """The run file's registry with its levels applied, and the effective level of a subject.

    Only the registry is opened: the schema verbs need no broker.
    """
    registry: EmbeddedRegistry | ConfluentRegistry
    settings = config.streams.schema_registry
    if config.streams.backend == "kafka" and settings is not None:
        from liberate.schema.confluent import ConfluentRegistry

        registry = ConfluentRegistry(settings)
    else:
        registry = EmbeddedRegistry(config.streams.path)
    try:
        levels = config.streams.subject_levels()
        registry.configure_levels(levels)

        def level_of(subject: str) -> CompatibilityLevel:
            return levels.level_for(subject) or registry.compatibility(subject)

        yield registry, level_of
    finally:
        registry.close()


def _emit(out: TextIO, payload: Mapping[str, Any]) -> None:
    print(json.dumps(payload, sort_keys=False), file=out)


# -- list ---------------------------------------------------------------------------------------


def list_subjects(path: str, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """One line per subject: its versions, the latest version's id and its level."""
    config = load_run_file(path)
    with _registry(config) as (registry, level_of):
        subjects = registry.subjects()
        if not subjects and not as_json:
            print("no subjects yet: run `liberate run FILE` first", file=out)
            return 0
        if not as_json:
            print(f"{'SUBJECT':<48} {'VERSIONS':<12} {'LATEST ID':>9}  COMPATIBILITY", file=out)
        for subject in subjects:
            versions = registry.versions(subject)
            numbers = [v.version for v in versions]
            latest = versions[-1].schema_id if versions else None
            level = level_of(subject)
            if as_json:
                _emit(out, {"subject": subject, "versions": numbers, "latest_id": latest,
                            "compatibility": level})
            else:
                shown = ",".join(str(n) for n in numbers)
                print(f"{subject:<48} {shown:<12} {latest!s:>9}  {level}", file=out)
    return 0


# -- show ---------------------------------------------------------------------------------------


def show(path: str, subject: str, *, version: str = "latest", as_json: bool = False,
         out: TextIO = sys.stdout) -> int:
    """Print one version of ``subject`` (the latest by default) with its id and level."""
    config = load_run_file(path)
    with _registry(config) as (registry, level_of):
        found = _version(registry, subject, version)
        level = level_of(subject)
    if as_json:
        _emit(out, {"subject": subject, "version": found.version, "id": found.schema_id,
                    "compatibility": level, "schema": found.schema.schema})
        return 0
    print(f"subject {subject} version {found.version} (id {found.schema_id}, {level})", file=out)
    print(json.dumps(found.schema.schema, indent=2), file=out)
    return 0


def _version(registry: SchemaRegistry, subject: str, wanted: str) -> RegisteredSchema:
    versions = registry.versions(subject)
    if not versions:
        known = registry.subjects()
        raise ConfigError(
            f"the registry has no subject {subject!r}",
            hint="use one of: " + (", ".join(known) if known else "(none yet: run the sources)"),
        )
    if wanted == "latest":
        return versions[-1]
    try:
        number = int(wanted)
    except ValueError:
        number = 0
    for candidate in versions:
        if candidate.version == number:
            return candidate
    raise ConfigError(
        f"subject {subject!r} has no version {wanted!r}",
        hint="use latest or one of: " + ", ".join(str(v.version) for v in versions),
    )


# -- diff ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One difference between the row fields of two versions."""

    kind: str  # "added", "removed" or "changed"
    field: str
    before: str | None
    after: str | None

    def line(self) -> str:
        mark = {"added": "+", "removed": "-", "changed": "~"}[self.kind]
        if self.kind == "added":
            return f"  {mark} {self.field}: {self.after}"
        if self.kind == "removed":
            return f"  {mark} {self.field}: {self.before}"
        return f"  {mark} {self.field}: {self.before} -> {self.after}"


def row_fields(schema: AvroSchema) -> dict[str, dict[str, Any]]:
    """The fields of the table row a schema carries: the row record inside a Debezium
    envelope (``before``/``after``), else the record's own fields."""
    root = schema.schema
    if not isinstance(root, dict) or root.get("type") != "record":
        return {}
    fields = {f["name"]: f for f in root.get("fields", [])}
    for name in ("before", "after"):
        kind = fields.get(name, {}).get("type")
        branches = kind if isinstance(kind, list) else [kind]
        for branch in branches:
            if isinstance(branch, dict) and branch.get("type") == "record":
                return {f["name"]: f for f in branch.get("fields", [])}
    return fields


def field_changes(old: AvroSchema, new: AvroSchema) -> list[FieldChange]:
    """Fields added, removed, or changed (type, default or aliases) from ``old`` to ``new``."""
    before, after = row_fields(old), row_fields(new)
    changes = [FieldChange("removed", n, _describe(f), None)
               for n, f in before.items() if n not in after]
    for name, spec in after.items():
        previous = before.get(name)
        if previous is None:
            changes.append(FieldChange("added", name, None, _describe(spec)))
        elif _describe(previous) != _describe(spec):
            changes.append(FieldChange("changed", name, _describe(previous), _describe(spec)))
    return changes


def _describe(spec: Mapping[str, Any]) -> str:
    text = describe_type(spec["type"])
    if "default" in spec:
        text += f", default {json.dumps(spec['default'])}"
    if spec.get("aliases"):
        text += f", aliases {', '.join(spec['aliases'])}"
    return text


def diff(path: str, subject: str, first: str, second: str, *, as_json: bool = False,
         out: TextIO = sys.stdout) -> int:
    """Print what changed from version ``first`` to ``second`` of ``subject``, and whether
    ``second`` is compatible with ``first`` under the subject's level."""
    config = load_run_file(path)
    with _registry(config) as (registry, level_of):
        old = _version(registry, subject, first)
        new = _version(registry, subject, second)
        level = level_of(subject)
    changes = field_changes(old.schema, new.schema)
    problems = check_compatibility(new.schema, [old.schema], level)
    if as_json:
        _emit(out, {
            "subject": subject, "from": old.version, "to": new.version, "compatibility": level,
            "added": [c.field for c in changes if c.kind == "added"],
            "removed": [c.field for c in changes if c.kind == "removed"],
            "changed": [{"field": c.field, "from": c.before, "to": c.after}
                        for c in changes if c.kind == "changed"],
            "compatible": not problems, "problems": problems,
        })
        return 0
    print(f"subject {subject}: version {old.version} -> {new.version}", file=out)
    for change in changes:
        print(change.line(), file=out)
    if not changes:
        print("  no field changed", file=out)
    if problems:
        print(f"version {new.version} is NOT compatible with version {old.version} under "
              f"{level}:", file=out)
        for problem in problems:
            print(f"  - {problem}", file=out)
    else:
        print(f"version {new.version} is compatible with version {old.version} under {level}",
              file=out)
    return 0


# -- check --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubjectCheck:
    """The verdict on one subject of one table."""

    source: str
    table: str
    subject: str
    level: str
    latest: int | None
    problems: tuple[str, ...]
    state: str  # "new", "unchanged", "compatible" or "incompatible"

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "table": self.table, "subject": self.subject,
                "compatibility": self.level, "latest_version": self.latest,
                "state": self.state, "problems": list(self.problems)}

    def lines(self) -> list[str]:
        head = f"{self.subject} ({self.source}: {self.table})"
        if self.state == "new":
            return [f"{head}: new subject, no consumer to break"]
        if self.state == "unchanged":
            return [f"{head}: unchanged (version {self.latest})"]
        if self.state == "compatible":
            return [f"{head}: ok, compatible with version {self.latest} under {self.level}"]
        return [f"{head}: ALTER would break consumers ({self.level}, latest version "
                f"{self.latest}):"] + [f"  - {p}" for p in self.problems]


def check(path: str, *, source_name: str | None = None, as_json: bool = False,
          out: TextIO = sys.stdout) -> int:
    """Check every table of every source (or of ``source_name``) as it is now against its
    subjects; exit 1 when a change would be refused."""
    config = load_run_file(path)
    sources = [s for s in config.sources if source_name is None or s.name == source_name]
    if not sources:
        raise ConfigError(
            f"the run file has no source named {source_name!r}",
            hint=f"use one of: {', '.join(s.name for s in config.sources) or '(no sources)'}",
        )
    strategy = config.streams.subject_name_strategy
    verdicts: list[SubjectCheck] = []
    with _registry(config) as (registry, level_of):
        for source_config in sources:
            source = build_source(source_config)
            if not isinstance(source, SchemaPreviewSource):
                note = (f"source {source.name} ({source_config.connector}): its schemas come "
                        "from the events it relays; nothing to check")
                if not as_json:
                    print(note, file=out)
                continue
            for tables in source.current_schemas():
                for schema, is_key in ((tables.key_schema, True), (tables.value_schema, False)):
                    if schema is None:
                        continue
                    subject = subject_name(strategy, tables.topic, schema, is_key=is_key)
                    verdict = _check_subject(registry, level_of(subject), source.name,
                                             tables.table, subject, schema)
                    verdicts.append(verdict)
                    if as_json:
                        _emit(out, verdict.as_json())
                    else:
                        for line in verdict.lines():
                            print(line, file=out)
    broken = [v for v in verdicts if v.state == "incompatible"]
    if broken and not as_json:
        print(f"{len(broken)} subject(s) would refuse the change: keep the change compatible "
              "(see each problem), or move consumers to a new stream (docs/schemas.md)",
              file=out)
    return 1 if broken else 0


def _check_subject(registry: SchemaRegistry, level: str, source: str, table: str,
                   subject: str, schema: AvroSchema) -> SubjectCheck:
    versions: Sequence[RegisteredSchema] = registry.versions(subject)
    if not versions:
        return SubjectCheck(source, table, subject, level, None, (), "new")
    for version in versions:
        if version.schema.fingerprint == schema.fingerprint:
            return SubjectCheck(source, table, subject, level, version.version, (), "unchanged")
    latest = versions[-1].version
    problems = tuple(registry.check(subject, schema))
    state = "incompatible" if problems else "compatible"
    return SubjectCheck(source, table, subject, level, latest, problems, state)
