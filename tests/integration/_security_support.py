"""Servers for the security tests: a PostgreSQL that checks passwords and serves TLS, a MariaDB
that serves TLS, a private CA, and the ``liberate`` CLI in a subprocess.

The session's shared servers trust every local connection, so a wrong or missing password
would go unnoticed there. ``SecurePostgres`` trusts only the fixtures' superuser; every other
user logs in with scram-sha-256, and a user listed in ``CERT_USERS`` only with a client
certificate over TLS. These servers are always throwaway ones (never the
``LIBERATE_TEST_*`` servers): the tests need to choose how the server authenticates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql

from tests.servers import MARIADBD, PG_BIN, PG_SUPERUSER, MariaDBServer, PostgresCluster

REPO = Path(__file__).resolve().parents[2]
#: users that may only log in with a client certificate over TLS (pg_hba ``cert``)
CERT_USERS = ("cert_user",)
#: users that may only connect over TLS (with a password)
TLS_ONLY_USERS = ("tls_user",)


@dataclass(frozen=True)
class Pki:
    """A private CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, client: str = CERT_USERS[0]) -> Pki:
    """Write a CA, a server certificate and a client certificate (CN ``client``) as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _certificate("liberate test CA", ca_key, None, ca_key, ca=True)
    pem = serialization.Encoding.PEM
    pki = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    for cert_path, key_path, subject, server in (
        (pki.server_cert, pki.server_key, "127.0.0.1", True),
        (pki.client_cert, pki.client_key, client, False),
    ):
        key = _key()
        cert = _certificate(subject, key, ca_cert.subject, ca_key, server=server)
        cert_path.write_bytes(cert.public_bytes(pem))
        _write_key(key, key_path)
    return pki


class SecurePostgres(PostgresCluster):
    """A throwaway PostgreSQL with password authentication and TLS (see the module docstring).

    ``url_for(db)`` is still the trusted superuser; ``user_url(user, password, db)`` is how a
    test logs in as anyone else.
    """

    def __init__(self, pki: Pki) -> None:
        super().__init__()
        self.pki = pki

    def _init(self) -> None:
        super()._init()
        for source, name in (
            (self.pki.server_cert, "server.pem"),
            (self.pki.server_key, "server.key"),
            (self.pki.ca, "ca.pem"),
        ):
            target = self.data_dir / name
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)
            self._chown(target)
        rules = ["local all all trust"]
        for kind in ("all", "replication"):
            rules.append(f"host {kind} {PG_SUPERUSER} 127.0.0.1/32 trust")
            rules += [f"hostssl {kind} {user} 127.0.0.1/32 cert" for user in CERT_USERS]
            rules += [f"hostnossl {kind} {user} 127.0.0.1/32 reject" for user in CERT_USERS]
            rules += [f"hostnossl {kind} {user} 127.0.0.1/32 reject" for user in TLS_ONLY_USERS]
            rules.append(f"host {kind} all 127.0.0.1/32 scram-sha-256")
        (self.data_dir / "pg_hba.conf").write_text("\n".join(rules) + "\n", encoding="utf-8")
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n"
                "ssl_ca_file = 'ca.pem'\npassword_encryption = 'scram-sha-256'\n"
            )

    def admin(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit superuser connection."""
        return psycopg.connect(self.url_for(database), autocommit=True)

    def create_user(self, user: str, password: str | None, *, replication: bool = False) -> None:
        """``CREATE ROLE user LOGIN [REPLICATION] [PASSWORD ...]``."""
        with self.admin() as conn:
            statement = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user))
            if replication:
                statement += sql.SQL(" REPLICATION")
            if password is not None:
                statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
            conn.execute(statement)

    def create_database(self, name: str, owner: str | None = None) -> None:
        with self.admin() as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if owner is not None:
                statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            conn.execute(statement)

    def user_url(self, user: str, database: str, password: str | None = None) -> str:
        """``postgresql://user[:password]@127.0.0.1:port/database`` (password URL-quoted)."""
        from urllib.parse import quote

        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{database}"


@contextmanager
def secure_postgres(directory: Path) -> Iterator[SecurePostgres]:
    """A started ``SecurePostgres`` with its PKI under ``directory``; removed afterwards.

    Against an external server (``LIBERATE_TEST_POSTGRES_URL``, e.g. the docker-compose
    stack) on a machine without the PostgreSQL binaries, the calling tests are skipped.
    """
    if os.environ.get("LIBERATE_TEST_POSTGRES_URL") and not (PG_BIN / "initdb").exists():
        pytest.skip(f"the security tests start a PostgreSQL of their own: no {PG_BIN}/initdb")
    cluster = SecurePostgres(make_pki(directory / "pki"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class TlsMariaDB(MariaDBServer):
    """A throwaway MariaDB serving TLS with the certificates of ``pki``."""

    def __init__(self, pki: Pki) -> None:
        super().__init__()
        self.pki = pki

    def _server_args(self) -> list[str]:
        return [
            *super()._server_args(),
            f"--ssl-ca={self.pki.ca}",
            f"--ssl-cert={self.pki.server_cert}",
            f"--ssl-key={self.pki.server_key}",
        ]


@contextmanager
def tls_mariadb(directory: Path) -> Iterator[TlsMariaDB]:
    """A started ``TlsMariaDB`` with its PKI under ``directory``; removed afterwards (skips
    like ``secure_postgres`` against an external server without the MariaDB binaries)."""
    if os.environ.get("LIBERATE_TEST_MYSQL_URL") and shutil.which(MARIADBD) is None:
        pytest.skip("the TLS tests start a MariaDB of their own: mariadbd is not installed")
    server = TlsMariaDB(make_pki(directory / "pki", client="x509_user"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def liberate(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m liberate ARGS`` in ``cwd`` as a user runs it; output captured as text."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LIBERATE_DB_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "liberate", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
