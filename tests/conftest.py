"""Shared pytest fixtures: real databases, started on demand, one fresh database per test.

Fixtures (the whole surface):

- ``postgres_server`` (session): a throwaway PostgreSQL 15 cluster with ``wal_level=logical``,
  or the server of ``LIBERATE_TEST_POSTGRES_URL`` when that is set (an admin URL). Has ``url``
  (superuser, ``postgres`` database), ``url_for(db)``, and for fault tests ``restart()``,
  ``kill()``, ``shutdown()`` (clean, keeps the data), ``start()`` (these skip the test
  against an external server).
- ``mysql_server`` (session): a throwaway MariaDB 10.11 with a ROW binlog
  (``binlog_row_image=FULL``, ``binlog_row_metadata=FULL``, ``server_id=1``), or the server of
  ``LIBERATE_TEST_MYSQL_URL``. Same attributes as above.
- ``postgres_url`` / ``mysql_url`` (function): a fresh, uniquely named database created for the
  test and dropped after it, as a plain URL (``postgresql://liberate@127.0.0.1:PORT/lt_...``,
  ``mysql://root@127.0.0.1:PORT/lt_...``; liberate.database picks psycopg 3 / PyMySQL).
  Replication slots left in the database are dropped with it.
- ``sqlite_url`` (function): ``sqlite:///<tmp_path>/test.db``.
- ``any_db_url`` (function, parametrized ``sqlite``/``postgresql``/``mysql``): one of the three
  above; only the server a parameter needs is started, and the server parameters carry the
  ``integration`` marker.
- ``kafka_broker`` (session): a throwaway noida-db 0.2.3 Kafka broker (transactions and
  ``read_committed`` work), or the cluster of ``LIBERATE_TEST_KAFKA_BOOTSTRAP``. Has
  ``bootstrap``, and for fault tests ``restart()``, ``shutdown()``, ``start()`` (these skip the
  test against an external cluster). See tests/kafka_broker.py.
- ``tansu_broker`` (session): a throwaway in-memory Tansu 0.6.0 broker for the smoke lane.
- ``schema_registry_url`` (session): ``liberate registry serve`` in a child process on a free
  port with a temp store, or ``LIBERATE_TEST_SCHEMA_REGISTRY_URL``.

Servers start lazily, the first time a test asks for them, and are removed at session end
(also on SIGTERM; a SIGKILLed session takes its servers down with it but leaves temp dirs).
Tests under tests/integration are marked ``integration`` and tests under tests/e2e ``e2e``
automatically (``pytest -m "not integration"`` runs without servers).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_broker import KafkaBroker, TansuBroker, kafka_cluster, schema_registry
from tests.servers import (
    ExternalServer,
    MariaDBServer,
    PostgresCluster,
    Server,
    create_mysql_database,
    create_postgres_database,
    drop_mysql_database,
    drop_postgres_database,
    new_database_name,
)

_TESTS_DIR = Path(__file__).parent
_AUTO_MARKERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_configure(config: pytest.Config) -> None:
    # `timeout` and CI runners stop a run with SIGTERM, which skips fixture teardown and
    # atexit; as KeyboardInterrupt it tears the servers down like Ctrl-C does.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = item.path.relative_to(_TESTS_DIR)
        except ValueError:
            continue
        marker = _AUTO_MARKERS.get(relative.parts[0])
        if marker is not None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """The PostgreSQL server of this session (see the module docstring)."""
    external = os.environ.get("LIBERATE_TEST_POSTGRES_URL")
    if external:
        yield ExternalServer(external)
        return
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Server]:
    """The MySQL/MariaDB server of this session (see the module docstring)."""
    external = os.environ.get("LIBERATE_TEST_MYSQL_URL")
    if external:
        yield ExternalServer(external)
        return
    server = MariaDBServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: Server) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    name = new_database_name()
    url = create_postgres_database(postgres_server, name)
    try:
        yield url
    finally:
        drop_postgres_database(postgres_server, name)


@pytest.fixture
def mysql_url(mysql_server: Server) -> Iterator[str]:
    """A fresh MySQL/MariaDB database for this test, dropped afterwards."""
    name = new_database_name()
    url = create_mysql_database(mysql_server, name)
    try:
        yield url
    finally:
        drop_mysql_database(mysql_server, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file under this test's tmp_path."""
    return f"sqlite:///{tmp_path / 'test.db'}"


_DB_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
        pytest.param("mysql", id="mysql", marks=pytest.mark.integration),
    ]
)
def any_db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh database of each kind in turn (sqlite, postgresql, mysql)."""
    url: str = request.getfixturevalue(_DB_URL_FIXTURES[request.param])
    return url


# -- Kafka lane (tests/kafka_broker.py) ---------------------------------------------------------
# Appended as one block: brokers and the schema registry for the Kafka backend tests.


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """The Kafka-protocol broker of this session (see the module docstring)."""
    with kafka_cluster("LIBERATE_TEST_KAFKA_BOOTSTRAP") as broker:
        yield broker


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[TansuBroker]:
    """A Tansu broker for the smoke lane (in memory; known gaps marked xfail where used)."""
    broker = TansuBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """The URL of a Confluent-compatible schema registry (see the module docstring)."""
    with schema_registry("LIBERATE_TEST_SCHEMA_REGISTRY_URL") as url:
        yield url
