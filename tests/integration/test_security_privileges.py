"""Each connector runs as a user that has exactly the privileges docs/security.md lists.

The GRANT statements below are the ones the document shows (a test keeps the two in step).
PostgreSQL runs on a throwaway ``SecurePostgres`` (passwords checked) whose test databases
are hardened first: PUBLIC loses CONNECT on the database and every privilege on schema
public, so nothing works that the grants do not allow. MariaDB runs on the session's server;
its users are created and dropped per test. Each connector runs with ``liberate check`` and
``liberate run --once`` exactly as a user would, into a SQLite sink (or from a SQLite source
for the SQL sink), and the rows must arrive.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import outbox
from tests.integration._security_support import SecurePostgres, liberate, secure_postgres
from tests.servers import Server, drop_postgres_database

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "least-Privilege-Pw1"
ROWS = 5


def grants(section: str) -> list[str]:
    """The GRANT-block statements of ``section`` in docs/security.md, placeholders filled in
    by the caller (``liberate`` the user, ``shop`` the database, ``orders`` the table)."""
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- grants: {re.escape(section)} -->\s*```sql\n(.*?)```", text, re.S)
    assert match, f"docs/security.md has no grants block {section!r}"
    body = "\n".join(line for line in match.group(1).splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in body.split(";") if statement.strip()]


def _fill(statement: str, user: str, database: str) -> str:
    statement = statement.replace("'liberate'@'%'", f"'{user}'@'%'")
    statement = re.sub(r"\bliberate\b", user, statement)
    return re.sub(r"\bshop\b", database, statement)


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePostgres]:
    with secure_postgres(tmp_path_factory.mktemp("privileges-pg")) as cluster:
        yield cluster


@pytest.fixture
def shop(pg: SecurePostgres) -> Iterator[str]:
    """A hardened database with a table ``orders`` of ROWS rows, owned by the superuser;
    dropped afterwards with its replication slots."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    with pg.admin(name) as conn:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO orders SELECT i, 'n' || i FROM generate_series(1, %s) i",
                     (ROWS,))
    yield name
    drop_postgres_database(pg, name)


def _pg_user(pg: SecurePostgres, database: str, section: str) -> str:
    user = f"u_{uuid.uuid4().hex[:8]}"
    pg.create_user(user, PASSWORD)
    with pg.admin(database) as conn:
        for statement in grants(section):
            conn.execute(_fill(statement, user, database).encode())
    return user


def _pg_url(pg: SecurePostgres, user: str, database: str) -> str:
    return pg.user_url(user, database)


def _run_into_sqlite(tmp_path: Path, source: str, topic: str) -> list[tuple[object, ...]]:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: src
{source}
sinks:
  - name: copy
    connector: sql
    database: sqlite:///{tmp_path}/copy.db
    topics: [{topic}]
    table: copied
""")
    env = {"SOURCE_PASSWORD": PASSWORD}
    check = liberate(tmp_path, "check", str(run_file), env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    run = liberate(tmp_path, "run", "--once", str(run_file), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    with sqlite3.connect(tmp_path / "copy.db") as db:
        return db.execute("SELECT * FROM copied ORDER BY 1").fetchall()


def test_query_source_on_postgres_needs_only_select(
    pg: SecurePostgres, shop: str, tmp_path: Path
) -> None:
    user = _pg_user(pg, shop, "query source, PostgreSQL")
    source = f"""\
    connector: query
    database: {_pg_url(pg, user, shop)}
    password: ${{SOURCE_PASSWORD}}
    tables: [orders]
    mode: incrementing
    incrementing_column: id"""
    assert len(_run_into_sqlite(tmp_path, source, "src.orders")) == ROWS


def test_postgres_cdc_needs_replication_and_select_with_a_precreated_publication(
    pg: SecurePostgres, shop: str, tmp_path: Path
) -> None:
    with pg.admin(shop) as conn:
        for statement in grants("postgres CDC, publication created by an administrator"):
            conn.execute(_fill(statement, "", shop).encode())
    user = _pg_user(pg, shop, "postgres CDC")
    source = f"""\
    connector: postgres
    database: {_pg_url(pg, user, shop)}
    password: ${{SOURCE_PASSWORD}}
    tables: [orders]
    slot: slot_{shop}
    publication: liberate_orders"""
    assert len(_run_into_sqlite(tmp_path, source, "src.public.orders")) == ROWS
    with pg.admin(shop) as conn:
        conn.execute("INSERT INTO orders VALUES (100, 'streamed')")
    assert (100, "streamed") in _run_into_sqlite(tmp_path, source, "src.public.orders")


def test_postgres_cdc_creates_its_publication_when_it_owns_the_tables(
    pg: SecurePostgres, shop: str, tmp_path: Path
) -> None:
    user = _pg_user(pg, shop, "postgres CDC, publication created by liberate")
    source = f"""\
    connector: postgres
    database: {_pg_url(pg, user, shop)}
    password: ${{SOURCE_PASSWORD}}
    tables: [orders]
    slot: slot_{shop}"""
    assert len(_run_into_sqlite(tmp_path, source, "src.public.orders")) == ROWS


def test_outbox_relay_on_postgres_needs_select_and_delete(
    pg: SecurePostgres, shop: str, tmp_path: Path
) -> None:
    with pg.admin(shop) as conn, conn.transaction():
        outbox.create_table(conn)
        for i in range(ROWS):
            outbox.publish(conn, outbox.OutboxEvent("Order", str(i), "OrderPlaced", {"i": i}))
    user = _pg_user(pg, shop, "outbox relay, PostgreSQL")
    source = f"""\
    connector: outbox
    database: {_pg_url(pg, user, shop)}
    password: ${{SOURCE_PASSWORD}}
    topic: events"""
    assert len(_run_into_sqlite(tmp_path, source, "events")) == ROWS
    with pg.admin(shop) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


def _source_sqlite(tmp_path: Path, rows: range) -> str:
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, note TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"n{i}") for i in rows])
    return f"sqlite:///{path}"


def _sink_run(tmp_path: Path, target: str, *, auto_create: bool) -> None:
    run_file = tmp_path / "sink.yaml"
    run_file.write_text(f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: src
    connector: query
    database: sqlite:///{tmp_path}/source.db
    tables: [orders]
    mode: incrementing
    incrementing_column: id
sinks:
  - name: wh
    connector: sql
    database: {target}
    password: ${{SINK_PASSWORD}}
    topics: [src.orders]
    auto_create: {str(auto_create).lower()}
    auto_evolve: {str(auto_create).lower()}
""")
    env = {"SINK_PASSWORD": PASSWORD}
    check = liberate(tmp_path, "check", str(run_file), env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    run = liberate(tmp_path, "run", "--once", str(run_file), env=env)
    assert run.returncode == 0, run.stdout + run.stderr


def test_sql_sink_on_postgres_creates_its_tables_with_create_on_the_schema(
    pg: SecurePostgres, shop: str, tmp_path: Path
) -> None:
    with pg.admin(shop) as conn:
        conn.execute("DROP TABLE orders")
    user = _pg_user(pg, shop, "SQL sink, PostgreSQL, auto_create")
    _source_sqlite(tmp_path, range(1, ROWS + 1))
    _sink_run(tmp_path, _pg_url(pg, user, shop), auto_create=True)
    with pg.admin(shop) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (ROWS,)


def test_sql_sink_on_postgres_writes_with_dml_only_into_existing_tables(
    pg: SecurePostgres, shop: str, tmp_path: Path
) -> None:
    # An administrator runs the sink once (or applies `liberate sink plan`): the tables exist.
    with pg.admin(shop) as conn:
        conn.execute("DROP TABLE orders")
    _source_sqlite(tmp_path, range(1, 3))
    _sink_run(tmp_path, pg.url_for(shop), auto_create=True)
    user = _pg_user(pg, shop, "SQL sink, PostgreSQL, DML only")
    _source_sqlite(tmp_path, range(3, ROWS + 1))
    _sink_run(tmp_path, _pg_url(pg, user, shop), auto_create=False)
    with pg.admin(shop) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (ROWS,)


# -- MariaDB ------------------------------------------------------------------------------------


@pytest.fixture
def mysql_user(mysql_server: Server) -> Iterator[str]:
    user = f"u_{uuid.uuid4().hex[:8]}"
    yield user
    conn = _mysql_admin(mysql_server)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
    finally:
        conn.close()


def _mysql_admin(server: Server, database: str | None = None) -> pymysql.connections.Connection:
    url = make_url(server.url)
    return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                           password=url.password or "", database=database, autocommit=True)


def _mysql_setup(server: Server, url: str, user: str, section: str) -> str:
    """Create ``user`` with the grants of ``section`` and a table ``orders``; the user's URL."""
    database = make_url(url).database or ""
    conn = _mysql_admin(server, database)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE orders (id int PRIMARY KEY, note varchar(20) NOT NULL)")
            cur.executemany("INSERT INTO orders VALUES (%s, %s)",
                            [(i, f"n{i}") for i in range(1, ROWS + 1)])
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, PASSWORD))
            for statement in grants(section):
                cur.execute(_fill(statement, user, database))
    finally:
        conn.close()
    return str(make_url(url).set(username=user, password=None).render_as_string(False))


def test_query_source_on_mariadb_needs_only_select(
    mysql_server: Server, mysql_url: str, mysql_user: str, tmp_path: Path
) -> None:
    url = _mysql_setup(mysql_server, mysql_url, mysql_user, "query source, MySQL")
    source = f"""\
    connector: query
    database: {url}
    password: ${{SOURCE_PASSWORD}}
    tables: [orders]
    mode: incrementing
    incrementing_column: id"""
    assert len(_run_into_sqlite(tmp_path, source, "src.orders")) == ROWS


def test_mysql_cdc_on_mariadb_needs_replication_and_select(
    mysql_server: Server, mysql_url: str, mysql_user: str, tmp_path: Path
) -> None:
    url = _mysql_setup(mysql_server, mysql_url, mysql_user, "mysql CDC")
    database = make_url(url).database
    source = f"""\
    connector: mysql
    database: {url}
    password: ${{SOURCE_PASSWORD}}
    tables: [orders]"""
    assert len(_run_into_sqlite(tmp_path, source, f"src.{database}.orders")) == ROWS
    conn = _mysql_admin(mysql_server, database)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO orders VALUES (100, 'streamed')")
    finally:
        conn.close()
    assert (100, "streamed") in _run_into_sqlite(tmp_path, source, f"src.{database}.orders")


def test_sql_sink_on_mariadb_creates_its_tables_with_create_and_alter(
    mysql_server: Server, mysql_url: str, mysql_user: str, tmp_path: Path
) -> None:
    url = _mysql_setup(mysql_server, mysql_url, mysql_user, "SQL sink, MySQL, auto_create")
    admin = _mysql_admin(mysql_server, make_url(url).database)
    try:
        with admin.cursor() as cur:
            cur.execute("DROP TABLE orders")
    finally:
        admin.close()
    _source_sqlite(tmp_path, range(1, ROWS + 1))
    _sink_run(tmp_path, url, auto_create=True)
    admin = _mysql_admin(mysql_server, make_url(url).database)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone() == (ROWS,)
    finally:
        admin.close()
