"""Every way of giving a database password works against a server that checks it, giving two
is refused, and a password file that cannot be read is a clear error that shows nothing of
the file (docs/security.md, "Credentials")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from liberate.config.base import DatabaseSettings
from liberate.config.models import BasicAuth, KafkaSettings
from liberate.database import create_engine, database_url
from liberate.errors import ConfigError
from liberate.streams._kafka_config import client_config
from tests.integration._security_support import SecurePostgres, secure_postgres

PASSWORD = "cred-Pw;@/ 'x'%"
USER = "cred_user"


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePostgres]:
    with secure_postgres(tmp_path_factory.mktemp("credentials-pg")) as cluster:
        cluster.create_user(USER, PASSWORD)
        yield cluster


def _current_user(settings: DatabaseSettings) -> str:
    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT current_user").scalar())
    finally:
        engine.dispose()


def _settings(pg: SecurePostgres, url_password: str | None = None, **kwargs: Any
              ) -> DatabaseSettings:
    url = pg.user_url(USER, "postgres", url_password)
    return DatabaseSettings(database=SecretStr(url), **kwargs)


def test_password_in_the_url(pg: SecurePostgres) -> None:
    assert _current_user(_settings(pg, PASSWORD)) == USER


def test_password_from_the_environment_through_the_run_file(pg: SecurePostgres) -> None:
    assert _current_user(_settings(pg, password=SecretStr(PASSWORD))) == USER


def test_password_file_first_line_without_its_newline(pg: SecurePostgres, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\nsecond line is ignored\n")
    assert _current_user(_settings(pg, password_file=tmp_path / "pw")) == USER


def test_liberate_db_password_is_the_default(
    pg: SecurePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIBERATE_DB_PASSWORD", PASSWORD)
    assert _current_user(_settings(pg)) == USER


def test_a_wrong_password_is_refused_by_the_server(pg: SecurePostgres) -> None:
    with pytest.raises(Exception, match="password authentication failed") as failed:
        _current_user(_settings(pg, password=SecretStr("not-it")))
    assert "not-it" not in str(failed.value)


def test_two_passwords_are_refused(tmp_path: Path) -> None:
    url = "postgresql://u:inline@127.0.0.1/db"
    with pytest.raises(ValidationError, match="password is given twice") as twice:
        DatabaseSettings(database=SecretStr(url), password=SecretStr("other"))
    assert "inline" not in str(twice.value) and "other" not in str(twice.value)
    with pytest.raises(ValidationError, match="given twice"):
        DatabaseSettings(database=SecretStr("postgresql://u@h/db"),
                         password=SecretStr("a"), password_file=tmp_path / "pw")


def test_an_unreadable_password_file_is_a_config_error_that_shows_no_content(
    tmp_path: Path,
) -> None:
    missing = DatabaseSettings(database=SecretStr("postgresql://u@h/db"),
                               password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"cannot read password_file .*missing"):
        database_url(missing)
    (tmp_path / "empty").write_text("")
    empty = DatabaseSettings(database=SecretStr("postgresql://u@h/db"),
                             password_file=tmp_path / "empty")
    with pytest.raises(ConfigError, match="it is empty"):
        database_url(empty)
    (tmp_path / "binary").write_bytes(b"\xffsecret-bytes")
    binary = DatabaseSettings(database=SecretStr("postgresql://u@h/db"),
                              password_file=tmp_path / "binary")
    with pytest.raises(ConfigError) as bad:
        database_url(binary)
    assert "secret-bytes" not in str(bad.value)


def test_registry_basic_auth_needs_exactly_one_password(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        BasicAuth(user="u")
    with pytest.raises(ValidationError, match="exactly one"):
        BasicAuth(user="u", password=SecretStr("p"), password_file=tmp_path / "p")


def test_kafka_property_files_cannot_repeat_or_override_managed_properties(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError, match="both properties and property_files"):
        KafkaSettings(bootstrap_servers="b:9092", properties={"sasl.password": "x"},
                      property_files={"sasl.password": tmp_path / "p"})
    with pytest.raises(ValidationError, match="managed by liberate"):
        KafkaSettings(bootstrap_servers="b:9092", property_files={"group.id": tmp_path / "p"})
    unreadable = KafkaSettings(bootstrap_servers="b:9092",
                               property_files={"sasl.password": tmp_path / "missing"})
    with pytest.raises(ConfigError, match=r"streams\.kafka\.property_files\.sasl\.password"):
        client_config(unreadable)
