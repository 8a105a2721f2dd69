"""``liberate check`` and ``liberate status`` for a MySQL source: read-only, brief connections."""

from __future__ import annotations

import re
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from connectors.mysql._catalog import Catalog, table_names
from connectors.mysql._gtid import gtid_position
from connectors.mysql._server import (
    REQUIRED_SETTINGS,
    ServerInfo,
    binary_logs,
    binlog_end,
    collation_encodings,
    replica_hosts,
    server_info,
)
from connectors.mysql.config import MySqlSourceConfig
from connectors.mysql.offsets import BinlogPosition, file_sequence
from liberate.connector import CheckResult, ConnectorStatus
from liberate.database import create_engine, database_url, mask_url
from liberate.errors import LiberateError
from liberate.records import Primitive

_GRANT_HINT = "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the user"
_SETTING_HINTS = {
    "log_bin": "start the server with --log-bin (needs a restart)",
    "binlog_format": "SET GLOBAL binlog_format=ROW and put binlog_format=ROW in the config",
    "binlog_row_image": "SET GLOBAL binlog_row_image=FULL and put it in the config",
    "binlog_row_metadata": "SET GLOBAL binlog_row_metadata=FULL and put it in the config "
    "(MySQL 8.0.14+, MariaDB 10.5+)",
}


def run_checks(config: MySqlSourceConfig) -> list[CheckResult]:
    """Connectivity, server settings, privileges, server id and tables, each with its fix."""
    url = database_url(config)
    try:
        engine = create_engine(config)
    except LiberateError as exc:
        return [CheckResult("database", False, exc.message, exc.hint)]
    results: list[CheckResult] = []
    try:
        with engine.connect() as conn:
            info = server_info(conn)
            results.append(CheckResult("database", True,
                                       f"connected to {mask_url(url)} ({info.version})"))
            results.extend(_settings(info))
            results.extend(_privileges(conn, info))
            results.append(_server_id(conn, config, info))
            if config.position_mode == "gtid" and not info.gtid_enabled:
                results.append(CheckResult(
                    "gtid_mode", False, "position_mode: gtid needs gtid_mode=ON",
                    "turn GTIDs on, or set position_mode: file",
                ))
            results.extend(_tables(conn, config, url.database))
    except DBAPIError as exc:
        results.append(CheckResult("database", False, f"cannot connect: {exc.orig}",
                                   "check the URL, the server and the credentials"))
    finally:
        engine.dispose()
    return results


def _settings(info: ServerInfo) -> list[CheckResult]:
    wrong = {name: (value, needed) for name, value, needed in info.wrong_settings()}
    results = []
    for name, needed in REQUIRED_SETTINGS.items():
        if name in wrong:
            value = wrong[name][0]
            results.append(CheckResult(name, False, f"is {value}, needs {needed}",
                                       _SETTING_HINTS[name]))
        else:
            results.append(CheckResult(name, True, needed))
    return results


def _privileges(conn: Connection, info: ServerInfo) -> list[CheckResult]:
    grants = " ".join(str(r[0]) for r in conn.execute(sa.text("SHOW GRANTS")).all()).upper()
    global_grants = " ".join(re.findall(r"GRANT (.*?) ON \*\.\*", grants))
    everything = "ALL PRIVILEGES" in global_grants
    needed = {
        "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA"),
        "REPLICATION CLIENT": ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"),
        "SELECT": ("SELECT",),
    }
    if info.flavor == "mysql":
        needed["RELOAD (snapshot lock)"] = ("RELOAD",)
    missing = [
        name for name, spellings in needed.items()
        if not everything and not any(s in global_grants for s in spellings)
        and not (name == "SELECT" and "SELECT" in grants)
    ]
    if missing:
        return [CheckResult("privileges", False, f"missing {', '.join(missing)}", _GRANT_HINT)]
    return [CheckResult("privileges", True, ", ".join(needed))]


def _server_id(conn: Connection, config: MySqlSourceConfig, info: ServerInfo) -> CheckResult:
    server_id = config.replica_server_id
    if server_id == info.server_id:
        return CheckResult(
            "server_id", False, f"{server_id} is the server's own server_id",
            "set server_id: to a number no server or replica of this topology uses",
        )
    ours = f"liberate:{config.name}"
    hosts = replica_hosts(conn)
    if hosts is None:
        return CheckResult(
            "server_id", True,
            f"warning: {server_id} not verified (the user may not list the server's replicas)",
            "GRANT REPLICATION MASTER ADMIN ON *.* (MariaDB 10.5+) to let check see them, or "
            "make sure no other replica uses this server_id",
        )
    others = [host for sid, host in hosts if sid == server_id and host != ours]
    if others:
        return CheckResult(
            "server_id", False,
            f"{server_id} is already used by the replica at {', '.join(others)}",
            "set server_id: to a number no other replica uses (two replicas with one id "
            "disconnect each other)",
        )
    return CheckResult("server_id", True, f"{server_id} is not used by another replica")


def _tables(conn: Connection, config: MySqlSourceConfig, database: str | None
            ) -> list[CheckResult]:
    try:
        names = table_names(config, database)
    except LiberateError as exc:
        return [CheckResult("tables", False, exc.message, exc.hint)]
    catalog = Catalog(config, names, collation_encodings(conn))
    results = []
    for name in names:
        label = f"{name[0]}.{name[1]}"
        try:
            table = catalog.reflect_table(conn, name)
        except LiberateError as exc:
            results.append(CheckResult(label, False, exc.message, exc.hint))
            continue
        key = ", ".join(table.schema.key_columns)
        results.append(CheckResult(
            label, True, f"{len(table.schema.columns)} columns, key ({key}), topic {table.topic}"
        ))
    return results


def source_status(config: MySqlSourceConfig, stored: Mapping[str, Primitive] | None
                  ) -> ConnectorStatus:
    """The stored position, the server's binlog end, and how far behind the source is."""
    position: dict[str, object] = dict(stored or {})
    snapshot = position.pop("snapshot", None)
    state = "snapshot" if isinstance(snapshot, str) and '"done":false' in snapshot else (
        "streaming" if stored else "not started"
    )
    try:
        engine = create_engine(config)
        try:
            with engine.connect() as conn:
                info = server_info(conn)
                end = binlog_end(conn, info)
                logs = binary_logs(conn)
        finally:
            engine.dispose()
    except (DBAPIError, LiberateError) as exc:
        return ConnectorStatus(position=position, lag={"error": str(exc)}, state=state)
    lag: dict[str, object] = {"server_file": end.file, "server_pos": end.pos}
    if end.gtids is not None:
        lag["server_gtids"] = end.gtids
    if stored:
        try:
            current = BinlogPosition.from_map(stored)
        except ValueError:
            return ConnectorStatus(position=position, lag=lag, state=state)
        names = [name for name, _ in logs]
        lag["binlog_available"] = current.file in names
        lag["bytes_behind"] = _bytes_behind(current, end, logs)
        if current.gtids is not None and end.gtids is not None:
            stored_gtids = gtid_position(info.flavor, current.gtids)
            lag["gtids_caught_up"] = stored_gtids.covers(gtid_position(info.flavor, end.gtids))
        if current.file not in names:
            state = "position purged"
    return ConnectorStatus(position=position, lag=lag, state=state)


def _bytes_behind(current: BinlogPosition, end: BinlogPosition, logs: list[tuple[str, int]]
                  ) -> int:
    if current.file == end.file:
        return max(0, end.pos - current.pos)
    behind = 0
    start = file_sequence(current.file)
    stop = file_sequence(end.file)
    for name, size in logs:
        number = file_sequence(name)
        if number == start:
            behind += max(0, size - current.pos)
        elif start < number < stop:
            behind += size
        elif number == stop:
            behind += end.pos
    return behind
