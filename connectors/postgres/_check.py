"""``liberate check`` and ``liberate status`` for the PostgreSQL WAL source.

Both connect briefly, read the catalog and write nothing. Each check is one ``CheckResult``
with the fix in its hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from connectors.postgres import _catalog as catalog
from connectors.postgres._pgoutput import lsn_text
from connectors.postgres._stream import ReplicationConnection, replication_conninfo
from connectors.postgres._tables import captured_table
from connectors.postgres.config import PostgresSourceConfig, SnapshotMode, split_name
from connectors.postgres.offsets import WalOffset
from liberate.connector import CheckResult, ConnectorStatus
from liberate.database import create_engine, database_url, mask_url
from liberate.errors import LiberateError
from liberate.records import Primitive
from liberate.streams.base import partition_key


def run_checks(settings: PostgresSourceConfig) -> list[CheckResult]:
    """Every prerequisite of the source, each with its fix."""
    url = database_url(settings)
    try:
        engine = create_engine(settings, poolclass=NullPool, pool_pre_ping=False)
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except (DBAPIError, LiberateError) as exc:
        return [CheckResult("database", False, f"cannot connect to {mask_url(url)}: "
                            f"{_reason(exc)}", "check that the server runs and the URL, user "
                            "and password are right")]
    results = [CheckResult("database", True, f"connected to {mask_url(url)}")]
    try:
        checks: list[Callable[[], list[CheckResult]]] = [
            lambda: _server(conn, settings),
            lambda: _replication_connection(settings),
            lambda: _tables(conn, settings),
            lambda: _publication(conn, settings),
            lambda: _slot(conn, settings),
        ]
        for check in checks:
            try:
                results.extend(check())
            except (DBAPIError, LiberateError) as exc:
                results.append(CheckResult("database", False, _reason(exc)))
    finally:
        conn.close()
        engine.dispose()
    return results


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LiberateError):
        return exc.message
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _server(conn: Connection, settings: PostgresSourceConfig) -> list[CheckResult]:
    facts = catalog.server_facts(conn)
    results = [
        CheckResult(
            "wal_level",
            facts.wal_level == "logical",
            f"wal_level = {facts.wal_level}",
            None if facts.wal_level == "logical"
            else "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
        ),
        CheckResult(
            "replication privilege",
            facts.superuser or facts.replication,
            f"role {facts.user}: " + (
                "superuser" if facts.superuser else
                "REPLICATION" if facts.replication else "no REPLICATION attribute"
            ),
            None if facts.superuser or facts.replication
            else f"ALTER ROLE {facts.user} REPLICATION",
        ),
    ]
    slot = catalog.slot_info(conn, settings.slot_name)
    # A missing slot takes one; resuming an interrupted snapshot briefly takes one more.
    needed = (0 if slot is not None else 1) + 1
    free = facts.max_replication_slots - facts.slots_used
    results.append(CheckResult(
        "replication slots",
        free >= needed,
        f"{facts.slots_used} of max_replication_slots = {facts.max_replication_slots} in use",
        None if free >= needed else
        "raise max_replication_slots (needs a restart) or drop unused slots",
    ))
    return results


def _replication_connection(settings: PostgresSourceConfig) -> list[CheckResult]:
    url = database_url(settings)
    try:
        connection = ReplicationConnection(replication_conninfo(url), where=mask_url(url))
    except LiberateError as exc:
        return [CheckResult("replication connection", False, exc.message, exc.hint)]
    try:
        row = connection.command(b"IDENTIFY_SYSTEM")[0]
    finally:
        connection.close()
    return [CheckResult("replication connection", True,
                        f"system {row.get('systemid')}, timeline {row.get('timeline')}")]


def _tables(conn: Connection, settings: PostgresSourceConfig) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name in settings.tables:
        schema, table = split_name(name)
        label = f"table {schema}.{table}"
        facts = catalog.table_facts(conn, schema, table)
        if facts is None:
            results.append(CheckResult(label, False, "not found",
                                       "check tables: ('schema.table' for another schema)"))
            continue
        configured = settings.key_columns_for(schema, table)
        key = configured or list(facts.primary_key) or list(facts.identity_columns)
        if not key:
            results.append(CheckResult(label, False, "no primary key",
                                       "add a primary key, or set key_columns:"))
            continue
        results.append(_identity(label, schema, table, facts, key, configured is not None))
        results.append(_column_types(conn, settings, schema, table, key))
    return results


def _column_types(conn: Connection, settings: PostgresSourceConfig, schema: str, table: str,
                  key: list[str]) -> CheckResult:
    """Every captured column has a type of the contract (docs/types.md), or the one that
    has not is named."""
    label = f"columns of {schema}.{table}"
    try:
        captured = captured_table(
            catalog.reflect_table(conn, schema, table), topic=settings.topic_for(schema, table),
            source_name=settings.name, database=str(conn.engine.url.database),
            key_columns=key,
        )
    except LiberateError as exc:
        return CheckResult(label, False, exc.message, exc.hint)
    return CheckResult(label, True, f"{len(captured.schema.columns)} columns, every type mapped")


def _identity(label: str, schema: str, table: str, facts: catalog.TableFacts, key: list[str],
              configured: bool) -> CheckResult:
    identity = facts.replica_identity
    name = f"{schema}.{table}"
    described = {"d": "DEFAULT", "f": "FULL", "i": "USING INDEX", "n": "NOTHING"}[identity]
    message = f"key ({', '.join(key)}), replica identity {described}"
    if identity == "n":
        return CheckResult(label, False, message,
                           f"ALTER TABLE {name} REPLICA IDENTITY FULL (with NOTHING, updates "
                           "and deletes of a published table fail)")
    carried = set(facts.primary_key if identity == "d" else facts.identity_columns)
    if identity != "f" and not set(key) <= carried:
        return CheckResult(label, False, message + ": deletes would not carry the key",
                           f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    hint = None
    if identity != "f":
        hint = (f"before-images carry only the key; for whole before-images: ALTER TABLE "
                f"{name} REPLICA IDENTITY FULL")
    return CheckResult(label, True, message, hint)


def _publication(conn: Connection, settings: PostgresSourceConfig) -> list[CheckResult]:
    name = settings.publication_name
    label = f"publication {name}"
    if settings.snapshot_mode is SnapshotMode.INITIAL_ONLY:
        return []
    info = catalog.publication_info(conn, name)
    if info is None:
        may_create = conn.execute(
            sa.text("SELECT has_database_privilege(current_database(), 'CREATE')")
        ).scalar()
        return [CheckResult(
            label, bool(may_create), "missing: created FOR TABLE the tables at the first run",
            None if may_create else f"CREATE PUBLICATION {name} FOR TABLE ... (the role may "
            "not create it)",
        )]
    wanted = [split_name(t) for t in settings.tables]
    missing = [f"{s}.{t}" for s, t in wanted if not info.all_tables and (s, t) not in info.tables]
    absent = sorted({"insert", "update", "delete", "truncate"} - info.operations)
    if missing:
        return [CheckResult(label, False, f"does not publish {', '.join(missing)}",
                            f"ALTER PUBLICATION {name} ADD TABLE {', '.join(missing)}")]
    if absent:
        return [CheckResult(label, False, f"does not publish {', '.join(absent)}",
                            f"ALTER PUBLICATION {name} SET (publish = 'insert, update, "
                            "delete, truncate')")]
    scope = "ALL TABLES" if info.all_tables else f"{len(info.tables)} table(s)"
    return [CheckResult(label, True, f"publishes {scope}")]


def _slot(conn: Connection, settings: PostgresSourceConfig) -> list[CheckResult]:
    name = settings.slot_name
    label = f"slot {name}"
    if settings.snapshot_mode is SnapshotMode.INITIAL_ONLY:
        return []
    slot = catalog.slot_info(conn, name)
    if slot is None:
        return [CheckResult(label, True, "missing: created at the first run")]
    facts = catalog.server_facts(conn)
    if slot.plugin != "pgoutput" or slot.database != facts.database:
        return [CheckResult(label, False,
                            f"a {slot.plugin} slot of database {slot.database}",
                            "give this source a slot of its own (slot:)")]
    if slot.lost:
        return [CheckResult(label, False, f"lost (wal_status {slot.wal_status})",
                            "see docs/postgres.md, 'A lost slot': snapshot_mode: when_needed, or "
                            "reset the source's offsets")]
    lag = _lag_bytes(conn, slot)
    state = f"active (pid {slot.active_pid})" if slot.active else "inactive"
    message = f"{state}, wal_status {slot.wal_status}, {lag} bytes behind"
    hint = None
    if slot.wal_status == "unreserved":
        hint = "the slot is about to lose WAL it needs: run the source, or raise " \
               "max_slot_wal_keep_size"
    return [CheckResult(label, slot.wal_status != "unreserved", message, hint)]


def _lag_bytes(conn: Connection, slot: catalog.SlotInfo) -> int | None:
    if slot.confirmed_flush is None:
        return None
    return catalog.current_wal_lsn(conn) - slot.confirmed_flush


def slot_status(
    settings: PostgresSourceConfig, offsets: Mapping[str, Mapping[str, Primitive]]
) -> ConnectorStatus:
    """Stored position, slot lag in bytes and wal_status (for ``liberate status``)."""
    stored_map = offsets.get(partition_key({"server": settings.name}))
    position: dict[str, Primitive] = {}
    stored: WalOffset | None = None
    if stored_map:
        stored = WalOffset.from_map(stored_map)
        position = dict(stored_map)
        position["lsn_text"] = lsn_text(stored.lsn)
    try:
        engine = create_engine(settings, poolclass=NullPool, pool_pre_ping=False)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                current = catalog.current_wal_lsn(conn)
                slot = catalog.slot_info(conn, settings.slot_name)
        finally:
            engine.dispose()
    except (DBAPIError, LiberateError) as exc:
        return ConnectorStatus(position=position, lag={"error": _reason(exc)}, state="unknown")
    lag: dict[str, Primitive] = {"current_lsn": lsn_text(current)}
    if stored is not None:
        lag["stored_behind_bytes"] = max(0, current - stored.lsn)
    if slot is None:
        state = "no slot" if settings.snapshot_mode is not SnapshotMode.INITIAL_ONLY else "idle"
        return ConnectorStatus(position=position, lag=lag, state=state)
    lag["slot_wal_status"] = slot.wal_status
    lag["slot_active"] = slot.active
    if slot.confirmed_flush is not None:
        lag["slot_lag_bytes"] = max(0, current - slot.confirmed_flush)
    if slot.restart_lsn is not None:
        lag["slot_retained_bytes"] = max(0, current - slot.restart_lsn)
    if slot.lost:
        state = "slot lost"
    elif stored is not None and stored.snapshotting:
        state = "snapshotting"
    else:
        state = "streaming" if slot.active else "stopped"
    return ConnectorStatus(position=position, lag=lag, state=state)
