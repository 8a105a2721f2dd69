"""Schema compatibility as Confluent Schema Registry decides it, on Avro's resolution rules.

A *writer* schema's data can be read with a *reader* schema when the Avro specification's
"Schema Resolution" rules allow it. The levels (Confluent's semantics):

- ``BACKWARD``: the new schema (reader) reads data written with the latest version (writer);
- ``FORWARD``: the latest version (reader) reads data written with the new schema (writer);
- ``FULL``: both; the ``*_TRANSITIVE`` forms check against every version, not only the latest;
- ``NONE``: anything goes.

The rules follow Avro's ``SchemaCompatibility`` (what Confluent runs): records match fields by
name or by the reader field's aliases; a reader field the writer lacks needs a default; a
writer field the reader lacks is skipped; int -> long -> float -> double and string <-> bytes
promote; enums need every writer symbol unless the reader enum has a default; named types
match by unqualified name or the reader's aliases; every branch of a writer union must be
readable. Logical types follow their underlying type, except decimals, whose precision and
scale must match (the specification's rule, and Confluent's).

Everything here is a pure function of the schemas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from fnmatch import fnmatchcase
from typing import Any, Literal

import fastavro

from liberate.schema.avro import AvroSchema
from liberate.schema.registry import DEFAULT_COMPATIBILITY, CompatibilityLevel

Rule = Literal[
    "READER_FIELD_MISSING_DEFAULT_VALUE",
    "TYPE_MISMATCH",
    "NOT_NULLABLE",
    "NAME_MISMATCH",
    "FIXED_SIZE_MISMATCH",
    "MISSING_ENUM_SYMBOLS",
    "MISSING_UNION_BRANCH",
    "DECIMAL_MISMATCH",
]

_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
# reader type -> writer types it also reads (Avro's promotions)
_PROMOTIONS: Mapping[str, frozenset[str]] = {
    "long": frozenset(("int",)),
    "float": frozenset(("int", "long")),
    "double": frozenset(("int", "long", "float")),
    "string": frozenset(("bytes",)),
    "bytes": frozenset(("string",)),
}


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """Why data of a writer schema cannot be read with a reader schema, at one place.

    ``path`` is the dotted field path from the root (``""`` for the root itself) and
    ``record`` the full name of the record holding the field.
    """

    path: str
    record: str | None
    rule: Rule
    detail: str

    @property
    def where(self) -> str:
        if not self.path:
            return f"schema {self.record}" if self.record else "schema root"
        return f"field '{self.path}' ({self.record})" if self.record else f"field '{self.path}'"


@dataclass(frozen=True, slots=True)
class SubjectLevels:
    """The compatibility levels a run file sets: ``default`` for new subjects, and
    ``per_subject`` for the subjects a name or a glob (``*``, ``?``, ``[...]``) matches.

    An exact name wins over globs; among globs the first in the file that matches wins.
    """

    default: CompatibilityLevel = DEFAULT_COMPATIBILITY
    per_subject: Mapping[str, CompatibilityLevel] = dataclass_field(default_factory=dict)

    def level_for(self, subject: str) -> CompatibilityLevel | None:
        """The level the run file sets for ``subject``; None when it sets none for it."""
        exact = self.per_subject.get(subject)
        if exact is not None:
            return exact
        for pattern, level in self.per_subject.items():
            if fnmatchcase(subject, pattern):
                return level
        return None


def resolution_problems(reader: AvroSchema, writer: AvroSchema) -> list[Incompatibility]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can)."""
    reader_named: dict[str, Any] = {}
    writer_named: dict[str, Any] = {}
    reader_root = _parse(reader, reader_named)
    writer_root = _parse(writer, writer_named)
    walk = _Resolution(reader_named, writer_named)
    walk.check(reader_root, writer_root, "", reader.name)
    return walk.problems


def check_compatibility(
    new: AvroSchema, existing: Sequence[AvroSchema], level: CompatibilityLevel
) -> list[str]:
    """Human problems of registering ``new`` after ``existing`` (oldest first) under ``level``.

    Empty when compatible. Versions are numbered from 1 in the order given. Each problem names
    the field path, the level, the rule broken and what to do, for example ``field 'amount'
    (shop.orders.Value): BACKWARD: reader field has no default and is missing from the writer
    schema; add a default to the new column or make it nullable``.
    """
    if level == "NONE" or not existing:
        return []
    transitive = level.endswith("_TRANSITIVE")
    base = level.removesuffix("_TRANSITIVE")
    numbered = list(enumerate(existing, start=1))
    targets = numbered if transitive else numbered[-1:]
    messages: list[str] = []
    for version, old in targets:
        for backward in (True, False):
            if base == ("FORWARD" if backward else "BACKWARD"):
                continue
            reader, writer = (new, old) if backward else (old, new)
            label = _label(level, backward=backward, version=version if transitive else None)
            for problem in resolution_problems(reader, writer):
                remedy = _remedy(problem.rule, reader_is_new=backward)
                messages.append(f"{problem.where}: {label}: {problem.detail}; {remedy}")
    return messages


def incompatibility_message(subject: str, level: str, problems: Sequence[str]) -> str:
    """The message of a ``SchemaCompatibilityError``: the subject, the level, every problem."""
    lines = [f"the new schema of subject '{subject}' breaks {level} compatibility:"]
    lines.extend(f"  - {problem}" for problem in problems)
    return "\n".join(lines)


def incompatibility_hint(level: str) -> str:
    """What a user can do when a schema change is refused under ``level``."""
    return (
        "change the table so the new schema keeps compatibility (see each problem), or write "
        "to a new topic (docs/schemas.md: a v2 stream); as a last resort set the subject's "
        f"level (now {level}) to NONE in streams.compatibility_per_subject, knowing that "
        "consumers may then fail on old or new records"
    )


def _label(level: str, *, backward: bool, version: int | None) -> str:
    parts: list[str] = []
    if level.startswith("FULL"):
        parts.append("backward" if backward else "forward")
    if version is not None:
        parts.append(f"version {version}")
    return f"{level} ({', '.join(parts)})" if parts else level


def _remedy(rule: Rule, *, reader_is_new: bool) -> str:
    if reader_is_new:
        return _BACKWARD_REMEDIES[rule]
    return _FORWARD_REMEDIES[rule]


_NEW_TOPIC = "or write to a new topic"
_BACKWARD_REMEDIES: Mapping[Rule, str] = {
    "READER_FIELD_MISSING_DEFAULT_VALUE": ("add a default to the new column or make it nullable"),
    "TYPE_MISMATCH": (
        "keep the old type or widen it (int -> long -> float -> double, string <-> bytes), "
        + _NEW_TOPIC
    ),
    "NOT_NULLABLE": "keep the column nullable (old records hold nulls), " + _NEW_TOPIC,
    "NAME_MISMATCH": "keep the old name or list it in the new type's aliases",
    "FIXED_SIZE_MISMATCH": "keep the fixed size, " + _NEW_TOPIC,
    "MISSING_ENUM_SYMBOLS": (
        "keep the removed symbols (old records hold them) or give the new enum a default symbol"
    ),
    "MISSING_UNION_BRANCH": "keep the removed union branch (old records use it), " + _NEW_TOPIC,
    "DECIMAL_MISMATCH": (
        "keep the decimal precision and scale (a changed scale reads old bytes as other "
        "numbers), " + _NEW_TOPIC
    ),
}
_FORWARD_REMEDIES: Mapping[Rule, str] = {
    "READER_FIELD_MISSING_DEFAULT_VALUE": (
        "keep the column: existing consumers need it because it has no default in the old "
        "schema, " + _NEW_TOPIC
    ),
    "TYPE_MISMATCH": (
        "keep the old type: existing consumers read it with the old schema, " + _NEW_TOPIC
    ),
    "NOT_NULLABLE": (
        "keep the column NOT NULL: existing consumers cannot read nulls, " + _NEW_TOPIC
    ),
    "NAME_MISMATCH": "keep the old name: existing consumers look the type up by it",
    "FIXED_SIZE_MISMATCH": "keep the fixed size, " + _NEW_TOPIC,
    "MISSING_ENUM_SYMBOLS": (
        "do not add symbols while existing consumers' enum has no default symbol, " + _NEW_TOPIC
    ),
    "MISSING_UNION_BRANCH": (
        "do not add union branches existing consumers cannot read, " + _NEW_TOPIC
    ),
    "DECIMAL_MISMATCH": (
        "keep the decimal precision and scale (a changed scale reads new bytes as other "
        "numbers), " + _NEW_TOPIC
    ),
}


def _parse(schema: AvroSchema, named: dict[str, Any]) -> Any:
    _ = schema.parsed  # an invalid schema raises FatalError here
    # fastavro resolves namespaces: named types come out under their full names.
    return fastavro.parse_schema(schema.schema, named, _write_hint=False)


def _short(name: Any) -> str:
    return str(name).rsplit(".", 1)[-1]


class _Resolution:
    def __init__(self, reader_named: Mapping[str, Any], writer_named: Mapping[str, Any]) -> None:
        self.reader_named = reader_named
        self.writer_named = writer_named
        self.problems: list[Incompatibility] = []
        # Pairs under check: a recursive type meets itself again and is assumed fine there.
        self.visiting: set[tuple[int, int]] = set()

    def resolve(self, node: Any, named: Mapping[str, Any]) -> Any:
        while True:
            if isinstance(node, str):
                if node in _PRIMITIVES or node not in named:
                    return node
                node = named[node]
            elif isinstance(node, dict) and not isinstance(node.get("type"), str):
                node = node.get("type")
            elif isinstance(node, dict) and node["type"] not in _KINDS:
                if node["type"] in named:
                    node = named[node["type"]]
                else:
                    return node
            else:
                return node

    def report(self, path: str, record: str | None, rule: Rule, detail: str) -> None:
        self.problems.append(Incompatibility(path, record, rule, detail))

    def check(self, reader: Any, writer: Any, path: str, record: str | None) -> bool:
        """Check one position; report problems there; True when it resolves."""
        reader = self.resolve(reader, self.reader_named)
        writer = self.resolve(writer, self.writer_named)
        pair = (id(reader), id(writer))
        if pair in self.visiting:
            return True
        self.visiting.add(pair)
        try:
            return self._check(reader, writer, path, record)
        finally:
            self.visiting.discard(pair)

    def _check(self, reader: Any, writer: Any, path: str, record: str | None) -> bool:
        r_kind, w_kind = _kind(reader), _kind(writer)
        if w_kind == "union":
            # Every branch the writer may have used must be readable.
            return all([self.check(reader, branch, path, record) for branch in writer])
        if r_kind == "union":
            if any(self.readable(branch, writer) for branch in reader):
                return True
            closest = self.closest_branch(reader, writer)
            if closest is not None:
                # Report what breaks inside the branch meant for this data (a nullable
                # record's field, say), not only that no branch fits.
                return self.check(closest, writer, path, record)
            if w_kind == "null":
                self.report(
                    path,
                    record,
                    "NOT_NULLABLE",
                    f"the writer holds null and reader union {_show(reader)} has no null",
                )
            else:
                self.report(
                    path,
                    record,
                    "MISSING_UNION_BRANCH",
                    f"reader union {_show(reader)} has no branch that reads writer "
                    f"type {_show(writer)}",
                )
            return False
        if r_kind != w_kind:
            if w_kind in _PROMOTIONS.get(r_kind, ()):
                return True
            if w_kind == "null":
                self.report(
                    path,
                    record,
                    "NOT_NULLABLE",
                    f"the writer may hold null and reader type {_show(reader)} is not nullable",
                )
            else:
                self.report(
                    path,
                    record,
                    "TYPE_MISMATCH",
                    f"reader type {_show(reader)} cannot read writer type {_show(writer)}",
                )
            return False
        if r_kind == "record":
            return self._record(reader, writer, path)
        if r_kind == "enum":
            return self._enum(reader, writer, path, record)
        if r_kind == "fixed":
            return self._fixed(reader, writer, path, record)
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]", record)
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}", record)
        return self._decimal(reader, writer, path, record)

    def readable(self, reader: Any, writer: Any) -> bool:
        """Whether ``reader`` reads ``writer``, without reporting (a union branch probe)."""
        saved = self.problems
        self.problems = []
        try:
            return self.check(reader, writer, "", None)
        finally:
            self.problems = saved

    def closest_branch(self, union: list[Any], writer: Any) -> Any | None:
        """The reader branch of the writer's kind (and name, for named types), if any."""
        kind = _kind(writer)
        for branch in union:
            candidate = self.resolve(branch, self.reader_named)
            if _kind(candidate) != kind:
                continue
            if kind not in ("record", "enum", "fixed") or self._names_match(candidate, writer):
                return candidate
        return None

    def _names_match(self, reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
        written = _short(writer.get("name"))
        if _short(reader.get("name")) == written:
            return True
        return any(_short(alias) == written for alias in reader.get("aliases") or ())

    def _name_problem(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str, record: str | None
    ) -> bool:
        if self._names_match(reader, writer):
            return False
        self.report(
            path,
            record,
            "NAME_MISMATCH",
            f"reader {reader['type']} {reader.get('name')} does not match writer "
            f"{writer['type']} {writer.get('name')} by name or alias",
        )
        return True

    def _record(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> bool:
        name = str(reader.get("name"))
        if self._name_problem(reader, writer, path, name):
            return False
        written = {field["name"]: field for field in writer["fields"]}
        ok = True
        for field in reader["fields"]:
            field_path = f"{path}.{field['name']}" if path else field["name"]
            source = written.get(field["name"])
            if source is None:
                source = next(
                    (written[a] for a in field.get("aliases") or () if a in written), None
                )
            if source is None:
                if "default" not in field:
                    self.report(
                        field_path,
                        name,
                        "READER_FIELD_MISSING_DEFAULT_VALUE",
                        "reader field has no default and is missing from the writer schema",
                    )
                    ok = False
                continue
            ok = self.check(field["type"], source["type"], field_path, name) and ok
        return ok

    def _enum(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str, record: str | None
    ) -> bool:
        if self._name_problem(reader, writer, path, record):
            return False
        missing = [s for s in writer["symbols"] if s not in set(reader["symbols"])]
        if missing and "default" not in reader:
            self.report(
                path,
                record,
                "MISSING_ENUM_SYMBOLS",
                f"reader enum {reader.get('name')} lacks writer symbols "
                f"{', '.join(missing)} and has no default symbol",
            )
            return False
        return True

    def _fixed(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str, record: str | None
    ) -> bool:
        if self._name_problem(reader, writer, path, record):
            return False
        if reader["size"] != writer["size"]:
            self.report(
                path,
                record,
                "FIXED_SIZE_MISMATCH",
                f"reader fixed {reader.get('name')} has size {reader['size']}, the "
                f"writer's has size {writer['size']}",
            )
            return False
        return self._decimal(reader, writer, path, record)

    def _decimal(self, reader: Any, writer: Any, path: str, record: str | None) -> bool:
        r_decimal, w_decimal = _decimal_of(reader), _decimal_of(writer)
        if r_decimal is None or w_decimal is None or r_decimal == w_decimal:
            return True
        self.report(
            path,
            record,
            "DECIMAL_MISMATCH",
            f"reader decimal({r_decimal[0]},{r_decimal[1]}) differs from writer "
            f"decimal({w_decimal[0]},{w_decimal[1]}); decimals resolve only when "
            "precision and scale match",
        )
        return False


_KINDS = _PRIMITIVES | {"record", "error", "enum", "fixed", "array", "map"}


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    kind = str(node.get("type"))
    return "record" if kind == "error" else kind


def _decimal_of(node: Any) -> tuple[int, int] | None:
    if isinstance(node, dict) and node.get("logicalType") == "decimal":
        return int(node.get("precision", 0)), int(node.get("scale", 0))
    return None


def describe_type(node: Any) -> str:
    """A short human form of an Avro type: ``[null, long]``, ``decimal(10,2)``,
    ``long (timestamp-micros)``, ``enum Status``."""
    return _show(node)


def _show(node: Any) -> str:
    if isinstance(node, list):
        return "[" + ", ".join(_show(branch) for branch in node) + "]"
    if isinstance(node, str):
        return node
    kind = _kind(node)
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {node.get('name')}"
    if kind == "array":
        return f"array<{_show(node['items'])}>"
    if kind == "map":
        return f"map<{_show(node['values'])}>"
    decimal = _decimal_of(node)
    if decimal is not None:
        return f"decimal({decimal[0]},{decimal[1]})"
    logical = node.get("logicalType")
    return f"{kind} ({logical})" if logical else kind
