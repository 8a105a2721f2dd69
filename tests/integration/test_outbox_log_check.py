"""``liberate check`` of a log-mode relay: the CDC connector's prerequisites (wal_level, binlog
format, privileges, the table), then the outbox columns, each failure with its fix."""

from __future__ import annotations

import uuid

import pymysql
import pytest
from sqlalchemy.engine import make_url

from connectors.outbox import OutboxSource
from liberate.connector import CheckResult
from tests.integration._outbox_support import create_outbox, engine_for, relay_config

pytestmark = pytest.mark.integration


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


@pytest.mark.parametrize(("kind", "prerequisite"),
                         [("postgresql", "wal_level"), ("mysql", "binlog_format")])
def test_check_reports_the_log_prerequisites_and_the_outbox_columns(
    kind: str, prerequisite: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url" if kind == "postgresql" else "mysql_url")
    create_outbox(url)
    results = _by_name(OutboxSource(relay_config(url, mode="log")).check())
    assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok]
    assert results[prerequisite].ok
    columns = results["outbox columns of outbox"]
    assert "aggregatetype" in columns.message and "payload" in columns.message


def test_check_names_missing_outbox_columns_with_the_fix(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text, aggregateid "
                "text, type text, payload jsonb)")
    finally:
        engine.dispose()
    results = _by_name(OutboxSource(relay_config(postgres_url, mode="log")).check())
    columns = results["outbox columns of outbox"]
    assert not columns.ok and columns.message == "no column(s) headers, created_at"
    assert columns.hint is not None and "headers: null" in columns.hint
    fixed = relay_config(postgres_url, mode="log", columns={"headers": None, "timestamp": None})
    assert _by_name(OutboxSource(fixed).check())["outbox columns of outbox"].ok


def test_check_reports_missing_replication_privileges_on_mysql(mysql_url: str) -> None:
    create_outbox(mysql_url)
    parsed = make_url(mysql_url)
    user = f"lt_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=parsed.host or "127.0.0.1", port=parsed.port or 3306,
                            user=parsed.username or "root", password=parsed.password or "",
                            autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
            cur.execute(f"GRANT SELECT ON `{parsed.database}`.* TO '{user}'@'%'")
        url = parsed.set(username=user, password="pw").render_as_string(hide_password=False)
        results = _by_name(OutboxSource(relay_config(url, mode="log")).check())
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")
        admin.close()
    privileges = results["privileges"]
    assert not privileges.ok and "REPLICATION SLAVE" in privileges.message
    assert "outbox columns of outbox" not in results  # the log prerequisites come first
