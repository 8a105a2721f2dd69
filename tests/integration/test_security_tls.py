"""TLS and authentication options reach the drivers.

Each test is arranged so that it fails if the option is dropped on the way: the server
refuses a user without TLS (pg_hba ``hostnossl ... reject``, MariaDB ``REQUIRE X509``),
authenticates another only by its client certificate (pg_hba ``cert``), and a wrong CA must
make verification fail. The server's own view (``pg_stat_ssl``, ``Ssl_version``) confirms
the connection is encrypted and which certificate was presented.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import psycopg
import pymysql
import pytest
from pydantic import SecretStr

from connectors.mysql._replica import connect_kwargs
from connectors.postgres._stream import ReplicationConnection, replication_conninfo
from liberate.config.base import DatabaseSettings
from liberate.config.models import KafkaSettings, SchemaRegistrySettings
from liberate.database import create_engine, database_url
from liberate.errors import LiberateError
from liberate.schema.confluent import ConfluentRegistry
from liberate.streams._kafka_config import client_config, producer_config
from tests.integration._security_support import (
    Pki,
    SecurePostgres,
    TlsMariaDB,
    liberate,
    make_pki,
    secure_postgres,
    tls_mariadb,
)

PASSWORD = "tls-Pw;'\"-7"


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePostgres]:
    with secure_postgres(tmp_path_factory.mktemp("secure-pg")) as cluster:
        cluster.create_user("cert_user", None, replication=True)
        cluster.create_user("tls_user", PASSWORD)
        yield cluster


def _tls_query(pki: Pki, *, client: bool) -> str:
    query = f"sslmode=verify-full&sslrootcert={pki.ca}"
    if client:
        query += f"&sslcert={pki.client_cert}&sslkey={pki.client_key}"
    return query


def _ssl_of(pg: SecurePostgres, user: str, backend_type: str) -> list[tuple[Any, ...]]:
    with pg.admin() as conn:
        return conn.execute(
            "SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.usename = %s AND a.backend_type = %s",
            (user, backend_type),
        ).fetchall()


def test_postgres_engine_passes_sslmode_root_and_client_certificates(pg: SecurePostgres) -> None:
    url = pg.user_url("cert_user", "postgres") + "?" + _tls_query(pg.pki, client=True)
    engine = create_engine(DatabaseSettings(database=SecretStr(url)))
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (True, "/CN=cert_user")


def test_postgres_engine_verifies_the_server_with_the_given_root_certificate(
    pg: SecurePostgres, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other")
    url = pg.user_url("tls_user", "postgres") + f"?sslmode=verify-full&sslrootcert={other.ca}"
    engine = create_engine(DatabaseSettings(database=SecretStr(url), password=SecretStr(PASSWORD)))
    try:
        with pytest.raises(Exception, match=r"SSL error|certificate verify failed"):
            engine.connect().close()
    finally:
        engine.dispose()


def test_postgres_replication_connection_passes_tls_options(pg: SecurePostgres) -> None:
    url = pg.user_url("cert_user", "postgres") + "?" + _tls_query(pg.pki, client=True)
    settings = DatabaseSettings(database=SecretStr(url))
    connection = ReplicationConnection(
        replication_conninfo(database_url(settings)), where="secure pg"
    )
    try:
        connection.command(b"IDENTIFY_SYSTEM")
        assert _ssl_of(pg, "cert_user", "walsender") == [(True, "/CN=cert_user")]
    finally:
        connection.close()


def test_postgres_replication_connection_without_tls_is_refused(pg: SecurePostgres) -> None:
    url = pg.user_url("cert_user", "postgres") + "?sslmode=disable"
    settings = DatabaseSettings(database=SecretStr(url))
    with pytest.raises(LiberateError, match=r"no encryption|reject"):
        ReplicationConnection(replication_conninfo(database_url(settings)), where="secure pg")


def test_a_run_file_reaches_postgres_over_tls_with_certificates_and_passwords(
    pg: SecurePostgres, tmp_path: Path
) -> None:
    pg.create_database("tls_shop", owner="cert_user")
    pg.create_database("tls_wh", owner="tls_user")
    with psycopg.connect(pg.url_for("tls_shop"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders VALUES (1, 'a'), (2, 'b')")
        conn.execute("ALTER TABLE orders OWNER TO cert_user")
    (tmp_path / "wh-password").write_text(PASSWORD + "\n")
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: shop
    connector: query
    database: "{pg.user_url('cert_user', 'tls_shop')}?{_tls_query(pg.pki, client=True)}"
    tables: [orders]
    mode: bulk
sinks:
  - name: wh
    connector: sql
    database: "{pg.user_url('tls_user', 'tls_wh')}?{_tls_query(pg.pki, client=False)}"
    password_file: {tmp_path}/wh-password
    topics: [shop.orders]
""")
    result = liberate(tmp_path, "run", "--once", str(run_file))
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pg.url_for("tls_wh")) as conn:
        assert conn.execute("SELECT id, note FROM orders ORDER BY id").fetchall() == [
            (1, "a"), (2, "b")
        ]


# -- MySQL / MariaDB ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMariaDB]:
    with tls_mariadb(tmp_path_factory.mktemp("tls-mariadb")) as server:
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "CREATE USER 'x509_user'@'%%' IDENTIFIED BY %s REQUIRE X509", (PASSWORD,)
                )
                cur.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* "
                            "TO 'x509_user'@'%'")
        finally:
            conn.close()
        yield server


def _mysql_url(server: TlsMariaDB, tls: bool) -> str:
    url = f"mysql://x509_user@127.0.0.1:{server.port}/mysql"
    if tls:
        pki = server.pki
        url += f"?ssl_ca={pki.ca}&ssl_cert={pki.client_cert}&ssl_key={pki.client_key}"
    return url


def test_mysql_engine_passes_ssl_ca_cert_and_key(mariadb: TlsMariaDB) -> None:
    settings = DatabaseSettings(
        database=SecretStr(_mysql_url(mariadb, tls=True)), password=SecretStr(PASSWORD)
    )
    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_version'").one()[1]
    finally:
        engine.dispose()
    assert str(version).startswith("TLS")


def test_mysql_binlog_connection_passes_ssl_ca_cert_and_key(mariadb: TlsMariaDB) -> None:
    for tls in (True, False):
        settings = DatabaseSettings(
            database=SecretStr(_mysql_url(mariadb, tls=tls)), password=SecretStr(PASSWORD)
        )
        kwargs = connect_kwargs(database_url(settings))
        if not tls:
            with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
                pymysql.connect(**kwargs)
            continue
        conn = pymysql.connect(**kwargs)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
                row = cur.fetchone()
        finally:
            conn.close()
        assert row is not None and str(row[1]).startswith("TLS")


# -- Kafka and the schema registry --------------------------------------------------------------


def test_kafka_sasl_ssl_properties_and_password_file_reach_librdkafka(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "kafka-password").write_text("sasl-Secret-1\n")
    settings = KafkaSettings(
        bootstrap_servers="127.0.0.1:9",
        properties={
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "liberate",
            "ssl.ca.location": str(pki.ca),
        },
        property_files={"sasl.password": tmp_path / "kafka-password"},
    )
    config = client_config(settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.password"] == "sasl-Secret-1"
    assert "sasl-Secret-1" not in repr(settings)
    # librdkafka checks every property and loads the CA when the client is created.
    confluent_kafka.Producer(producer_config(settings, None)).flush(0)
    broken = settings.model_copy(
        update={"properties": {**settings.properties, "ssl.ca.location": str(tmp_path / "nope")}}
    )
    with pytest.raises(confluent_kafka.KafkaException, match=r"ssl\.ca\.location"):
        confluent_kafka.Producer(producer_config(broken, None))


class _RegistryHandler(http.server.BaseHTTPRequestHandler):
    expected_auth = ""
    seen_auth: list[str] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.seen_auth.append(auth)
        if auth != self.expected_auth:
            self.send_response(401)
            body = json.dumps({"error_code": 401, "message": "Unauthorized"}).encode()
        else:
            self.send_response(200)
            body = json.dumps(["orders-value"]).encode()
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_registry(tmp_path: Path) -> Iterator[tuple[str, Pki]]:
    pki = make_pki(tmp_path / "pki")
    _RegistryHandler.expected_auth = "Basic " + base64.b64encode(b"sr-user:sr-Secret-2").decode()
    _RegistryHandler.seen_auth = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RegistryHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", pki
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_registry_client_uses_the_ca_and_basic_auth_from_a_password_file(
    https_registry: tuple[str, Pki], tmp_path: Path
) -> None:
    url, pki = https_registry
    (tmp_path / "sr-password").write_text("sr-Secret-2\n")
    settings = SchemaRegistrySettings.model_validate({
        "url": url,
        "ssl_ca": pki.ca,
        "basic_auth": {"user": "sr-user", "password_file": tmp_path / "sr-password"},
        "retries": 0,
    })
    registry = ConfluentRegistry(settings)
    try:
        assert registry.subjects() == ["orders-value"]
    finally:
        registry.close()
    assert _RegistryHandler.seen_auth[-1] == _RegistryHandler.expected_auth
    assert "sr-Secret-2" not in repr(settings)


def test_registry_client_refuses_a_server_its_ca_did_not_sign(
    https_registry: tuple[str, Pki], tmp_path: Path
) -> None:
    url, _ = https_registry
    other = make_pki(tmp_path / "other")
    settings = SchemaRegistrySettings.model_validate({
        "url": url,
        "ssl_ca": other.ca,
        "basic_auth": {"user": "sr-user", "password": "sr-Secret-2"},
        "retries": 0,
    })
    registry = ConfluentRegistry(settings)
    try:
        with pytest.raises(LiberateError):
            registry.subjects()
    finally:
        registry.close()
    assert _RegistryHandler.seen_auth == []  # the handshake failed before any request
