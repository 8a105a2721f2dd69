"""Starting a snapshot: under the slot's exported snapshot, resumed under a new one, or plain.

Each start opens the snapshot's REPEATABLE READ transaction, sets its snapshot, and returns the
``SnapshotReader`` with the connection it reads on (the caller closes it when done). See
docs/postgres.md for why a resumed snapshot and the stream still meet exactly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql
from sqlalchemy.engine import URL, Connection, Engine

from connectors.postgres import _catalog as catalog
from connectors.postgres._engine import guarded
from connectors.postgres._pgoutput import lsn_text
from connectors.postgres._snapshotting import SnapshotReader, SnapshotStart
from connectors.postgres._stream import CreatedSlot, ReplicationConnection
from connectors.postgres._tableset import TableSet
from connectors.postgres.config import PostgresSourceConfig, split_name
from connectors.postgres.offsets import SnapshotProgress, WalOffset, Watermark
from liberate.errors import FatalError
from liberate.records import Primitive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotContext:
    """What every start needs."""

    settings: PostgresSourceConfig
    engine: Engine
    url: URL
    tables: TableSet
    partition: dict[str, Primitive]
    replication: Callable[[], ReplicationConnection]

    def reader(self, conn: Connection, start: SnapshotStart, *, stream_lsn: int,
               snapshot_lsn: int, watermarks: tuple[Watermark, ...]) -> SnapshotReader:
        readers = guarded("reading the tables", self.url,
                          lambda: self.tables.snapshot_tables(conn))
        return SnapshotReader(
            conn, readers, start, stream_lsn=stream_lsn, snapshot_lsn=snapshot_lsn,
            watermarks=watermarks, chunk_size=self.settings.snapshot_chunk_size,
            partition=self.partition, source_name=self.settings.name,
            heartbeat_topic=self.settings.heartbeat_topic_name,
        )


def _transaction(context: SnapshotContext) -> Connection:
    conn = context.engine.connect().execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return conn


def _with_exported_snapshot(
    context: SnapshotContext, slot: str, *, temporary: bool
) -> tuple[CreatedSlot, Connection]:
    """Create ``slot`` exporting its snapshot and import it into a new transaction."""
    replication = context.replication()
    conn: Connection | None = None
    try:
        created = guarded(
            "creating a replication slot", context.url,
            lambda: replication.create_slot(slot, temporary=temporary, export=True),
        )
        conn = _transaction(context)
        name = str(created.snapshot_name)
        target = conn
        guarded("importing the slot's snapshot", context.url, lambda: catalog.driver(
            target).execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(name))))
        return created, conn
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    finally:
        # The exported snapshot lives until the next command or the close: imported by now.
        # Closing also drops a temporary slot.
        replication.close()


def exported_snapshot(context: SnapshotContext) -> tuple[SnapshotReader, Connection]:
    """Create the source's slot, exporting its snapshot, and read the tables under it."""
    created, conn = _with_exported_snapshot(context, context.settings.slot_name,
                                            temporary=False)
    point = created.consistent_point
    log.info("source %s: created replication slot %s at %s; reading the tables",
             context.settings.name, created.name, lsn_text(point))
    first = Watermark(context.tables.names[0], None, point)
    return context.reader(conn, SnapshotStart(0, None), stream_lsn=point, snapshot_lsn=point,
                          watermarks=(first,)), conn


def resumed_snapshot(
    context: SnapshotContext, start: WalOffset, progress: SnapshotProgress | None
) -> tuple[SnapshotReader, Connection]:
    """Read the rest of the tables under a new snapshot consistent at a known LSN (a temporary
    slot's), to stream from ``start`` with that LSN as a watermark."""
    temporary = f"{context.settings.slot_name[:48]}_resume_{os.getpid() % 100000}"
    created, conn = _with_exported_snapshot(context, temporary, temporary=True)
    point = created.consistent_point
    names = context.tables.names
    snapshot_start = SnapshotStart(0, None)
    mark = Watermark(names[0], None, point)
    if progress is not None:
        if progress.table not in names:
            conn.close()
            raise FatalError(
                f"the interrupted snapshot was reading {progress.table}, which is no longer "
                "in tables:",
                hint="put the table back, or delete the source's stored offsets to start over",
            )
        index = names.index(progress.table)
        schema, table = split_name(progress.table)
        facts = guarded("reading the tables", context.url,
                        lambda: catalog.table_facts(conn, schema, table))
        if facts is None or progress.after is None or facts.relfilenode != progress.relfilenode:
            # Rewritten (TRUNCATE, VACUUM FULL...) since: read it again whole, after a 't'.
            snapshot_start = SnapshotStart(index, None, truncate_first=progress.after is not None)
            mark = Watermark(progress.table, None, point)
        else:
            snapshot_start = SnapshotStart(index, None)
            mark = Watermark(progress.table, progress.after, point)
    log.info("source %s: resuming the snapshot at %s under a snapshot at %s",
             context.settings.name, names[snapshot_start.index], lsn_text(point))
    reader = context.reader(conn, snapshot_start, stream_lsn=start.lsn, snapshot_lsn=point,
                            watermarks=(*start.watermarks, mark))
    if mark.after is not None:
        entry = reader.tables[snapshot_start.index]
        reader.restart(SnapshotStart(snapshot_start.index, entry.key_text.load(mark.after)))
    return reader, conn


def plain_snapshot(
    context: SnapshotContext, progress: SnapshotProgress | None
) -> tuple[SnapshotReader, Connection]:
    """initial_only: a REPEATABLE READ snapshot, no slot (no stream to meet)."""
    conn = _transaction(context)
    point = guarded("reading the WAL position", context.url,
                    lambda: catalog.current_wal_lsn(conn))
    reader = context.reader(conn, SnapshotStart(0, None), stream_lsn=0, snapshot_lsn=point,
                            watermarks=())
    names = context.tables.names
    if progress is not None and progress.table in names:
        index = names.index(progress.table)
        after = (reader.tables[index].key_text.load(progress.after)
                 if progress.after is not None else None)
        reader.restart(SnapshotStart(index, after))
    return reader, conn
