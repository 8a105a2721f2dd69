"""The SQLite file behind the embedded backend: connections, tables, format checks, errors.

Durability: WAL journal, ``synchronous=FULL`` by default: every commit is fsynced, so neither
a killed process nor an OS crash loses a committed append. With ``synchronous=NORMAL`` a
killed *process* still loses nothing (the WAL frames reach the OS before commit returns), but
an OS crash may lose the last commits before the next checkpoint (SQLite's documented
WAL+NORMAL behaviour) - not acceptable where a source confirms positions upstream after the
append, as CDC sources do.

The file may also hold the embedded schema registry's tables (``registry_*``/``schema_*``);
the registry opens its own connection and creates its own tables.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from liberate.errors import FatalError, LiberateError, RetriableError

FORMAT_KEY = "stream_format"
FORMAT_VERSION = 1
BUSY_TIMEOUT_S = 60.0
Synchronous = Literal["NORMAL", "FULL"]

# Tables another liberate component may have created in the file before we did.
_SHARED_TABLE_PREFIXES = ("registry_", "schema_", "sqlite_", "liberate_meta")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS liberate_meta ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS stream_topics ("
    " topic_id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " partitions INTEGER NOT NULL CHECK (partitions > 0),"
    " compacted INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL)",
    # next_offset is the end offset of a partition; it never goes back even if batches are
    # ever removed, so offsets are never reused.
    "CREATE TABLE IF NOT EXISTS stream_partitions ("
    " topic_id INTEGER NOT NULL REFERENCES stream_topics (topic_id),"
    " partition_id INTEGER NOT NULL,"
    " next_offset INTEGER NOT NULL,"
    " PRIMARY KEY (topic_id, partition_id)) WITHOUT ROWID",
    # A batch holds records base_offset .. base_offset + record_count - 1 (see the codec).
    "CREATE TABLE IF NOT EXISTS stream_batches ("
    " topic_id INTEGER NOT NULL,"
    " partition_id INTEGER NOT NULL,"
    " base_offset INTEGER NOT NULL,"
    " record_count INTEGER NOT NULL,"
    " payload BLOB NOT NULL,"
    " UNIQUE (topic_id, partition_id, base_offset))",
    "CREATE TABLE IF NOT EXISTS stream_group_offsets ("
    " group_name TEXT NOT NULL,"
    " topic TEXT NOT NULL,"
    " partition_id INTEGER NOT NULL,"
    " next_offset INTEGER NOT NULL,"
    " PRIMARY KEY (group_name, topic, partition_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS stream_source_offsets ("
    " source TEXT NOT NULL,"
    " partition_key TEXT NOT NULL,"
    " offset_json TEXT NOT NULL,"
    " PRIMARY KEY (source, partition_key)) WITHOUT ROWID",
)

INSERT_BATCH = (
    "INSERT INTO stream_batches (topic_id, partition_id, base_offset, record_count, payload)"
    " VALUES (?, ?, ?, ?, ?)"
)
UPDATE_PARTITION = (
    "UPDATE stream_partitions SET next_offset = ? WHERE topic_id = ? AND partition_id = ?"
)
UPSERT_SOURCE_OFFSET = (
    "INSERT INTO stream_source_offsets (source, partition_key, offset_json) VALUES (?, ?, ?)"
    " ON CONFLICT (source, partition_key) DO UPDATE SET offset_json = excluded.offset_json"
)
UPSERT_GROUP_OFFSET = (
    "INSERT INTO stream_group_offsets (group_name, topic, partition_id, next_offset)"
    " VALUES (?, ?, ?, ?)"
    " ON CONFLICT (group_name, topic, partition_id)"
    " DO UPDATE SET next_offset = excluded.next_offset"
)


def connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT), usable from any thread."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise _cannot_open(path, exc) from exc
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise FatalError(
                f"stream store {path} cannot use SQLite's WAL journal (got {mode})",
                hint="put the stream store on a local filesystem (WAL needs shared memory)",
            )
        # The pragma only takes the two literal values of the Synchronous type.
        conn.execute(
            "PRAGMA synchronous = FULL" if synchronous == "FULL" else "PRAGMA synchronous = NORMAL"
        )
    except sqlite3.Error as exc:
        conn.close()
        raise _cannot_open(path, exc) from exc
    except FatalError:
        conn.close()
        raise
    return conn


def _cannot_open(path: Path, exc: BaseException) -> FatalError:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return FatalError(
            f"{path} is not a liberate stream store (not an SQLite database)",
            hint="point streams.path at a new file or at a store liberate created",
        )
    return FatalError(
        f"cannot open the stream store {path}: {exc}",
        hint="check that the directory exists or can be created and is writable by this user",
    )


def initialize(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new store, or check that an existing file is one of ours."""
    try:
        with transaction(conn):
            tables = {
                str(row[0])
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            version: int | None = None
            if "liberate_meta" in tables:
                row = conn.execute(
                    "SELECT value FROM liberate_meta WHERE key = ?", (FORMAT_KEY,)
                ).fetchone()
                version = int(row[0]) if row is not None else None
            if version is None:
                foreign = sorted(t for t in tables if not t.startswith(_SHARED_TABLE_PREFIXES))
                if foreign:
                    raise FatalError(
                        f"{path} is not a liberate stream store (it has tables {foreign[:5]})",
                        hint="point streams.path at a new file, not at an application database",
                    )
                for ddl in SCHEMA:
                    conn.execute(ddl)
                conn.execute(
                    "INSERT INTO liberate_meta (key, value) VALUES (?, ?)",
                    (FORMAT_KEY, str(FORMAT_VERSION)),
                )
            elif version > FORMAT_VERSION:
                raise FatalError(
                    f"{path} was written by a newer liberate (store format {version})",
                    hint="upgrade liberate to read this store",
                )
    except sqlite3.Error as exc:
        raise _cannot_open(path, exc) from exc


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` .. ``COMMIT``: the write lock up front, so no other writer (thread
    or process) interleaves; rolled back on any exception."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise wrap(exc, "begin a write") from exc
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


_NO_SPACE = frozenset({"SQLITE_FULL", "SQLITE_IOERR_WRITE"})


def wrap(exc: sqlite3.Error, doing: str) -> LiberateError:
    """Our error for an SQLite error: a busy lock or a full disk is retried, anything else is
    fatal."""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return RetriableError(
            f"the stream store is locked by another writer (while trying to {doing})",
            hint="another process holds the store's write lock; it is retried",
        )
    # A full disk (ENOSPC: SQLITE_FULL) or a file-size quota (EFBIG: SQLITE_IOERR_WRITE) fails
    # the write; the transaction is rolled back whole, so retrying once space is freed is safe.
    if getattr(exc, "sqlite_errorname", None) in _NO_SPACE:
        return RetriableError(
            f"the stream store cannot write (while trying to {doing}): {exc}",
            hint="the disk of the stream store is full or a file-size limit is reached: free "
            "space; it is retried",
        )
    return FatalError(
        f"the stream store failed to {doing}: {exc}",
        hint="check free disk space and permissions of the stream store file",
    )
