"""What the connector asks the server outside the binlog: settings, positions, snapshots, hosts.

Every statement is fixed text; the few values go in as bind parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from connectors.mysql._tablemap import encodings_from
from connectors.mysql.offsets import BinlogPosition
from liberate.errors import PrerequisiteError

log = logging.getLogger(__name__)

#: server settings this connector needs, with the value it needs
REQUIRED_SETTINGS = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
}
ER_PARSE_ERROR = 1064
_VARIABLES = (
    *REQUIRED_SETTINGS, "gtid_mode", "server_id", "binlog_checksum", "version",
    "binlog_expire_logs_seconds", "expire_logs_days",
)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The flavour, version and relevant global variables of a server."""

    flavor: str  # "mariadb" or "mysql"
    version: str
    variables: dict[str, str]

    @property
    def server_id(self) -> int:
        return int(self.variables.get("server_id", "0") or 0)

    @property
    def gtid_enabled(self) -> bool:
        return self.flavor == "mariadb" or self.variables.get("gtid_mode", "").upper() == "ON"

    def wrong_settings(self) -> list[tuple[str, str, str]]:
        """``(name, value, needed)`` of every required setting the server does not have."""
        wrong = []
        for name, needed in REQUIRED_SETTINGS.items():
            value = self.variables.get(name, "(not supported)")
            if value.upper() not in (needed, "1" if needed == "ON" else needed):
                wrong.append((name, value, needed))
        return wrong


def server_info(conn: Connection) -> ServerInfo:
    rows = conn.execute(
        sa.text("SHOW GLOBAL VARIABLES WHERE Variable_name IN :names").bindparams(
            sa.bindparam("names", expanding=True)
        ),
        {"names": list(_VARIABLES)},
    ).all()
    variables = {str(name).lower(): str(value) for name, value in rows}
    version = variables.get("version", "")
    flavor = "mariadb" if "mariadb" in version.lower() else "mysql"
    return ServerInfo(flavor, version, variables)


def require_settings(info: ServerInfo) -> None:
    """Raise ``PrerequisiteError`` naming every setting the connector needs and lacks."""
    wrong = info.wrong_settings()
    if wrong:
        listed = ", ".join(f"{name}={value} (needs {needed})" for name, value, needed in wrong)
        raise PrerequisiteError(
            f"the server is not set up for binlog change data capture: {listed}",
            hint="set " + " ".join(f"--{n.replace('_', '-')}={v}" for n, _, v in wrong)
            + " in the server's config and restart it (log_bin needs a restart; see "
            "docs/mysql.md, 'Server settings')",
        )


def binlog_end(conn: Connection, info: ServerInfo) -> BinlogPosition:
    """The position after the last event written to the binlog, with its GTID position."""
    row = _master_status(conn)
    if row is None:
        raise PrerequisiteError(
            "the server has no binlog (SHOW MASTER STATUS is empty)",
            hint="start the server with --log-bin",
        )
    values = tuple(row)
    file, pos = str(values[0]), int(values[1])
    gtids: str | None = None
    if info.flavor == "mariadb":
        gtids = str(conn.execute(sa.text("SELECT @@global.gtid_binlog_pos")).scalar() or "")
    elif info.gtid_enabled:
        gtids = str(conn.execute(sa.text("SELECT @@global.gtid_executed")).scalar() or "")
    return BinlogPosition(file, pos, gtids, 0, info.server_id)


def _master_status(conn: Connection) -> sa.Row[Any] | None:
    try:
        return conn.execute(sa.text("SHOW MASTER STATUS")).first()
    except DBAPIError:
        # MySQL 8.4 renamed it.
        return conn.execute(sa.text("SHOW BINARY LOG STATUS")).first()


def binary_logs(conn: Connection) -> list[tuple[str, int]]:
    """The binlog files the server still has, oldest first, with their sizes."""
    return [(str(r[0]), int(r[1])) for r in conn.execute(sa.text("SHOW BINARY LOGS")).all()]


def collation_encodings(conn: Connection) -> dict[int, str]:
    rows = conn.execute(
        sa.text("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
    ).all()
    return encodings_from({int(r[0]): str(r[1]) for r in rows if r[0] is not None})


def start_consistent_snapshot(conn: Connection, info: ServerInfo) -> BinlogPosition:
    """Begin a consistent read on ``conn`` and return the binlog position it corresponds to.

    MariaDB reports the binlog position of a ``WITH CONSISTENT SNAPSHOT`` transaction in
    ``binlog_snapshot_file``/``binlog_snapshot_position``, no lock needed; its GTID position
    comes from ``BINLOG_GTID_POS``. MySQL has no such variables: a brief global read lock
    holds the binlog still while the transaction starts (needs the RELOAD privilege).
    """
    conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
    conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if info.flavor == "mariadb":
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        status = dict(
            (str(name).lower(), str(value))
            for name, value in conn.execute(
                sa.text("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            ).all()
        )
        file = status["binlog_snapshot_file"]
        pos = int(status["binlog_snapshot_position"])
        gtids = conn.execute(
            sa.text("SELECT BINLOG_GTID_POS(:file, :pos)"), {"file": file, "pos": pos}
        ).scalar()
        return BinlogPosition(file, pos, str(gtids or ""), 0, info.server_id)
    try:
        conn.exec_driver_sql("FLUSH TABLES WITH READ LOCK")
    except DBAPIError as exc:
        raise PrerequisiteError(
            f"cannot take the global read lock that pins the snapshot's binlog position: {exc}",
            hint="GRANT RELOAD ON *.* TO the user (the lock is held for milliseconds)",
        ) from exc
    try:
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        position = binlog_end(conn, info)
    finally:
        conn.exec_driver_sql("UNLOCK TABLES")
    return position


def replica_hosts(conn: Connection) -> list[tuple[int, str]] | None:
    """``(server_id, host)`` of every registered replica; None when the user may not see them
    (MariaDB 10.5+ wants REPLICATION MASTER ADMIN for SHOW SLAVE HOSTS)."""
    try:
        rows = conn.execute(sa.text("SHOW SLAVE HOSTS")).all()
    except DBAPIError as exc:
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        if code != ER_PARSE_ERROR:
            return None
        rows = conn.execute(sa.text("SHOW REPLICAS")).all()  # MySQL 8.4 dropped the old name
    return [(int(r[0]), str(r[1] or "")) for r in rows]
