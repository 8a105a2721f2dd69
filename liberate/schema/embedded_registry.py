"""The embedded schema registry: Confluent's model in the SQLite file of the embedded stream.

Model (as Confluent Schema Registry): a schema has one global id whatever subject registers
it; a subject is a list of versions numbered from 1; each subject has a compatibility level,
falling back to the global default (``BACKWARD`` until set). Ids and versions are never
reused or deleted.

The registry keeps its own ``registry_*`` tables and its own connection to the file (WAL
journal, busy timeout), so it coexists with the stream backend and with other processes
that open the same file. ``register`` runs inside ``BEGIN IMMEDIATE``: two processes
registering at once are serialized by SQLite, and the compatibility check sees the versions
it is about to extend.

Hot path: the runtime calls ``register`` for every batch, so ``(subject, fingerprint) -> id``
and ``id -> schema`` are cached in memory. Both never go stale: what was registered stays.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from liberate.errors import (
    ConfigError,
    FatalError,
    LiberateError,
    RetriableError,
    SchemaCompatibilityError,
)
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import (
    SubjectLevels,
    check_compatibility,
    incompatibility_hint,
    incompatibility_message,
)
from liberate.schema.registry import (
    COMPATIBILITY_LEVELS,
    DEFAULT_COMPATIBILITY,
    CompatibilityLevel,
    RegisteredSchema,
)

BUSY_TIMEOUT_S = 60.0
# The compatibility row of the global default; subjects are never empty (register refuses).
_GLOBAL = ""

_TABLES = (
    "CREATE TABLE IF NOT EXISTS registry_schemas ("
    " schema_id INTEGER PRIMARY KEY,"
    " fingerprint TEXT NOT NULL UNIQUE,"
    " schema_text TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS registry_versions ("
    " subject TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " schema_id INTEGER NOT NULL REFERENCES registry_schemas (schema_id),"
    " PRIMARY KEY (subject, version),"
    " UNIQUE (subject, schema_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS registry_compatibility ("
    " subject TEXT PRIMARY KEY,"
    " level TEXT NOT NULL) WITHOUT ROWID",
)
_VERSIONS = (
    "SELECT v.version, v.schema_id, s.fingerprint, s.schema_text"
    " FROM registry_versions v JOIN registry_schemas s ON s.schema_id = v.schema_id"
    " WHERE v.subject = ? ORDER BY v.version"
)


class EmbeddedRegistry:
    """A ``SchemaRegistry`` kept in an SQLite file (usually the embedded stream's file).

    Threading: every method may be called from any thread; a lock serializes the connection.
    Lifecycle: usable once constructed; ``close`` releases the connection (idempotent).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, AvroSchema] = {}
        self._levels = SubjectLevels()
        self._applied: set[str] = set()  # subjects whose configured level is stored
        self._conn: sqlite3.Connection | None = _open(self.path)

    # -- the SchemaRegistry protocol ----------------------------------------------------------

    def register(self, subject: str, schema: AvroSchema) -> int:
        """Return the id of ``schema`` under ``subject``, registering a new version if needed.

        A schema identical (by canonical form) to any version of the subject returns that
        version's id. Otherwise the schema is checked against the subject's versions at its
        compatibility level; a breaking one raises ``SchemaCompatibilityError`` and registers
        nothing. A schema already known under another subject keeps its global id.
        """
        cached = self._ids.get((subject, schema.fingerprint))
        if cached is not None:
            return cached
        _check_subject(subject)
        _ = schema.parsed  # an invalid schema fails here (FatalError), not in every reader
        self._apply_configured_level(subject)
        with self._lock, self._write() as conn:
            rows = conn.execute(_VERSIONS, (subject,)).fetchall()
            for _version, schema_id, fingerprint, _text in rows:
                if fingerprint == schema.fingerprint:
                    self._ids[(subject, schema.fingerprint)] = int(schema_id)
                    return int(schema_id)
            level = self._level(conn, subject)
            existing = [self._cached_schema(int(row[1]), str(row[3])) for row in rows]
            problems = check_compatibility(schema, existing, level)
            if problems:
                raise SchemaCompatibilityError(
                    incompatibility_message(subject, level, problems),
                    subject=subject,
                    level=level,
                    problems=problems,
                    hint=incompatibility_hint(level),
                )
            conn.execute(
                "INSERT OR IGNORE INTO registry_schemas (fingerprint, schema_text) VALUES (?, ?)",
                (schema.fingerprint, schema.canonical),
            )
            found = conn.execute(
                "SELECT schema_id FROM registry_schemas WHERE fingerprint = ?",
                (schema.fingerprint,),
            ).fetchone()
            schema_id = int(found[0])
            conn.execute(
                "INSERT INTO registry_versions (subject, version, schema_id) VALUES (?, ?, ?)",
                (subject, len(rows) + 1, schema_id),
            )
        self._ids[(subject, schema.fingerprint)] = schema_id
        self._schemas.setdefault(schema_id, schema)
        return schema_id

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with this id; ``FatalError`` when unknown."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            row = self._read(
                "SELECT schema_text FROM registry_schemas WHERE schema_id = ?", (schema_id,)
            )
        if not row:
            raise FatalError(
                f"schema id {schema_id} is not in the embedded registry {self.path}",
                hint="the records were written with another registry: read them with the "
                "streams file (or schema registry) that wrote them",
            )
        return self._cached_schema(schema_id, str(row[0][0]))

    def subjects(self) -> list[str]:
        """Every subject, sorted."""
        with self._lock:
            rows = self._read("SELECT DISTINCT subject FROM registry_versions ORDER BY subject")
        return [str(row[0]) for row in rows]

    def versions(self, subject: str) -> list[RegisteredSchema]:
        """Every version of ``subject``, oldest first (empty for an unknown subject)."""
        with self._lock:
            rows = self._read(_VERSIONS, (subject,))
        return [
            RegisteredSchema(
                subject=subject,
                version=int(version),
                schema_id=int(schema_id),
                schema=self._cached_schema(int(schema_id), str(text)),
            )
            for version, schema_id, _fingerprint, text in rows
        ]

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        """The level of ``subject`` (its own, else the global default), or the global default."""
        with self._lock:
            conn = self._connection()
            try:
                return self._level(conn, subject)
            except sqlite3.Error as exc:
                raise self._failure("read", exc) from exc

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        """Set the level of ``subject`` (or the global default when None)."""
        if level not in COMPATIBILITY_LEVELS:
            raise ConfigError(
                f"unknown compatibility level {level!r}",
                hint=f"use one of {', '.join(COMPATIBILITY_LEVELS)}",
            )
        if subject is not None:
            _check_subject(subject)
        with self._lock, self._write() as conn:
            conn.execute(
                "INSERT INTO registry_compatibility (subject, level) VALUES (?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET level = excluded.level",
                (_GLOBAL if subject is None else subject, level),
            )

    def check(self, subject: str, schema: AvroSchema) -> list[str]:
        """Problems ``schema`` would have as the next version of ``subject`` (empty: fine)."""
        if (subject, schema.fingerprint) in self._ids:
            return []
        versions = self.versions(subject)
        if any(v.schema.fingerprint == schema.fingerprint for v in versions):
            return []
        level = self._levels.level_for(subject) or self.compatibility(subject)
        return check_compatibility(schema, [v.schema for v in versions], level)

    def configure_levels(self, levels: SubjectLevels) -> None:
        """Store ``levels.default`` as the global level; each subject ``levels`` names gets its
        level stored when this registry first registers a version of it."""
        self.set_compatibility(levels.default)
        self._levels = levels
        self._applied = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; idempotent. Cached ids and schemas stay readable."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EmbeddedRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedRegistry({str(self.path)!r})"

    # -- internals (callers hold self._lock) ---------------------------------------------------

    def _apply_configured_level(self, subject: str) -> None:
        # Called without the lock: set_compatibility takes it.
        level = self._levels.level_for(subject)
        if level is not None and subject not in self._applied:
            self.set_compatibility(level, subject)
            self._applied.add(subject)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise FatalError(
                f"the embedded registry {self.path} is closed",
                hint="this is a bug in the caller: the registry was used after close()",
            )
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            # IMMEDIATE takes the write lock first, so the versions read are the ones extended.
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure("write", exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failure("write", exc) from exc
            raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._connection().execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise self._failure("read", exc) from exc

    def _level(self, conn: sqlite3.Connection, subject: str | None) -> CompatibilityLevel:
        scopes = [_GLOBAL] if subject is None else [subject, _GLOBAL]
        for scope in scopes:
            row = conn.execute(
                "SELECT level FROM registry_compatibility WHERE subject = ?", (scope,)
            ).fetchone()
            if row is not None and row[0] in COMPATIBILITY_LEVELS:
                return _as_level(str(row[0]))
        return DEFAULT_COMPATIBILITY

    def _cached_schema(self, schema_id: int, text: str) -> AvroSchema:
        cached = self._schemas.get(schema_id)
        if cached is None:
            cached = self._schemas.setdefault(schema_id, AvroSchema(text))
        return cached

    def _failure(self, action: str, exc: sqlite3.Error) -> LiberateError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return RetriableError(
                f"the embedded registry {self.path} is locked by another writer "
                f"(while trying to {action} it)",
                hint="another process holds the file's write lock; it is retried",
            )
        return FatalError(
            f"cannot {action} the embedded registry {self.path}: {exc}",
            hint="check free disk space and permissions of the streams file, and that it is "
            "on a local disk",
        )


def _as_level(value: str) -> CompatibilityLevel:
    for level in COMPATIBILITY_LEVELS:
        if level == value:
            return level
    return DEFAULT_COMPATIBILITY


def _check_subject(subject: str) -> None:
    if not subject:
        raise FatalError(
            "a schema subject cannot be empty",
            hint="name the topic (the subject is derived from it) or the record",
        )


def _open(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise _cannot_open(path, exc) from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _TABLES:
            conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.close()
        raise _cannot_open(path, exc) from exc
    return conn


def _cannot_open(path: Path, exc: BaseException) -> FatalError:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return FatalError(
            f"{path} is not an SQLite database, so it cannot hold the embedded registry",
            hint="point streams.path at a new file or at a streams file liberate created",
        )
    return FatalError(
        f"cannot open the embedded registry in {path}: {exc}",
        hint="check that the directory exists or can be created and is writable by this user",
    )
