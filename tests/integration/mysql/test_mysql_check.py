"""``liberate check`` and ``liberate status`` of a MySQL source against a real server."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import make_url

from connectors.mysql import MySqlSource
from liberate.connector import CheckResult
from liberate.errors import PrerequisiteError
from tests.conformance.source import drain, offsets_after
from tests.integration.mysql.conftest import MySqlDb, read_all, source_config
from tests.integration.mysql.test_mysql_changes import ORDERS, poll_until


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_check_passes_on_a_server_set_up_for_binlog_capture(db: MySqlDb) -> None:
    db.execute(ORDERS)
    results = _by_name(MySqlSource(source_config(db, ["orders"])).check())
    assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok]
    assert {"database", "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata",
            "privileges", "server_id", f"{db.name}.orders"} <= set(results)
    assert "key (id)" in results[f"{db.name}.orders"].message


def test_check_names_the_missing_privileges_with_the_grant(db: MySqlDb) -> None:
    db.execute(ORDERS)
    user = f"lt_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'",
               f"GRANT SELECT ON `{db.name}`.* TO '{user}'@'%'")
    try:
        url = make_url(db.url).set(username=user, password="pw")
        config = source_config(db, ["orders"], database=url.render_as_string(hide_password=False))
        privileges = _by_name(MySqlSource(config).check())["privileges"]
    finally:
        db.execute(f"DROP USER '{user}'@'%'")
    assert not privileges.ok
    assert "REPLICATION SLAVE" in privileges.message and "REPLICATION CLIENT" in privileges.message
    assert privileges.hint is not None and "GRANT REPLICATION SLAVE" in privileges.hint


def test_check_refuses_a_server_id_another_replica_or_the_server_uses(db: MySqlDb) -> None:
    db.execute(ORDERS)
    running = MySqlSource(source_config(db, ["orders"], name="first", server_id=424242))
    running.open({})
    try:
        drain(running)
        clash = source_config(db, ["orders"], name="second", server_id=424242)
        in_use = _by_name(MySqlSource(clash).check())["server_id"]
        itself = _by_name(MySqlSource(running.settings).check())["server_id"]
    finally:
        running.close()
    assert not in_use.ok and "already used" in in_use.message
    assert itself.ok
    (server_id,) = db.query("SELECT @@server_id")[0]
    own = source_config(db, ["orders"], server_id=int(server_id))
    assert not _by_name(MySqlSource(own).check())["server_id"].ok


def test_check_reports_missing_tables_and_tables_without_a_key(db: MySqlDb) -> None:
    db.execute("CREATE TABLE nokey (a INT)")
    results = _by_name(MySqlSource(source_config(db, ["nokey", "missing"])).check())
    nokey = results[f"{db.name}.nokey"]
    assert not nokey.ok and "primary key" in nokey.message
    assert not results[f"{db.name}.missing"].ok
    assert "does not exist" in results[f"{db.name}.missing"].message


def test_wrong_binlog_settings_fail_check_and_open_with_the_fix(db: MySqlDb) -> None:
    db.execute(ORDERS)
    config = source_config(db, ["orders"])
    db.execute("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
    try:
        result = _by_name(MySqlSource(config).check())["binlog_row_metadata"]
        with pytest.raises(PrerequisiteError, match="binlog_row_metadata=MINIMAL"):
            MySqlSource(config).open({})
    finally:
        db.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
    assert not result.ok and result.hint is not None and "FULL" in result.hint


def test_status_reports_the_stored_position_and_how_far_behind_it_is(db: MySqlDb) -> None:
    db.execute(ORDERS, "INSERT INTO orders VALUES (1, 1, 'a')")
    config = source_config(db, ["orders"])
    stored = offsets_after(read_all(config))
    source = MySqlSource(config)
    caught_up = source.status(stored)
    db.execute(*(("INSERT INTO orders VALUES (%s, %s, 'more')", (i, i)) for i in range(2, 20)))
    behind = source.status(stored)
    assert caught_up.state == "streaming"
    assert caught_up.position["file"] == behind.position["file"]
    assert caught_up.lag["binlog_available"] is True
    assert behind.lag["bytes_behind"] > caught_up.lag["bytes_behind"]
    assert "snapshot" not in behind.position
    assert source.status({}).state == "not started"


def test_the_documented_grants_are_enough_to_check_snapshot_and_stream(db: MySqlDb) -> None:
    db.execute(ORDERS, "INSERT INTO orders VALUES (1, 10, 'a')")
    user = f"lt_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'",
               f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '{user}'@'%'")
    try:
        url = make_url(db.url).set(username=user, password="pw")
        config = source_config(db, ["orders"], database=url.render_as_string(hide_password=False))
        results = MySqlSource(config).check()
        source = MySqlSource(config)
        source.open({})
        try:
            snapshot = drain(source)
            db.execute("INSERT INTO orders VALUES (2, 20, 'b')")
            streamed = poll_until(source, 1)
        finally:
            source.close()
    finally:
        db.execute(f"DROP USER '{user}'@'%'")
    assert [r for r in results if not r.ok] == []
    server_id = _by_name(results)["server_id"]
    assert server_id.message.startswith("warning: ") and "MASTER ADMIN" in (server_id.hint or "")
    assert [r.key for r in snapshot + streamed] == [{"id": 1}, {"id": 2}]
