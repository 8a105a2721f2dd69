"""Base models every connector and sink config extends.

Each connector owns one pydantic model (in its own package) that subclasses
``SourceConfig`` or ``SinkConfig``; the run-file loader validates each entry of ``sources:``
and ``sinks:`` with the model of the connector it names. Unknown keys are errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]


class StrictModel(BaseModel):
    """A config model that refuses unknown keys and is immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DatabaseSettings(StrictModel):
    """How to reach a database: a URL, and optionally a password kept out of it.

    The password comes from exactly one place: the URL, ``password`` (``${VAR}`` from the
    environment), ``password_file``, or else the ``LIBERATE_DB_PASSWORD`` environment variable.

    ``postgresql://`` means psycopg 3 and ``mysql://`` means PyMySQL; SQLAlchemy ``+driver``
    forms are accepted as they are; ``sqlite:///path`` for SQLite.
    """

    database: SecretStr = Field(description="Database URL, e.g. postgresql://user@host/db")
    password: SecretStr | None = Field(
        default=None,
        description="Database password kept out of the URL, usually ${VAR} from the environment"
        " (no URL escaping needed); never printed",
    )
    password_file: Path | None = Field(
        default=None, description="File whose first line is the database password"
    )

    @field_validator("database")
    @classmethod
    def _url_has_a_scheme(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value.get_secret_value()):
            raise ValueError(
                "must be a database URL such as postgresql://user@host:5432/db, "
                "mysql://user@host:3306/db or sqlite:///path/to/file.db"
            )
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        given = [n for n in ("password", "password_file") if getattr(self, n) is not None]
        if _url_password(self.database.get_secret_value()) is not None:
            given.insert(0, "a password in the database URL")
        if len(given) > 1:
            raise ValueError(
                f"the password is given twice ({' and '.join(given)}); keep one of them"
            )
        return self


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None  # not parseable here; database_url() reports it with the fix


OnFailure = Literal["continue", "stop"]


class SupervisionSettings(StrictModel):
    """How the runtime treats failures of one connector (every source and sink has these).

    A retriable failure (a lost connection, a server that is down) is retried with backoff
    (0.5 s doubling to 30 s); the connector *fails* on an error that is not retriable or after
    ``max_retries`` consecutive retriable ones. The other connectors keep running unless
    ``on_failure`` is ``stop``.
    """

    on_failure: OnFailure = Field(
        default="continue",
        description="When this connector fails for good: continue (the other connectors keep "
        "running; the run exits 1 when it ends) or stop (the whole run stops and exits 1)",
    )
    max_retries: int | None = Field(
        default=None,
        ge=0,
        description="Consecutive retriable failures before the connector fails; unset: retry "
        "for ever (5 under `liberate run --once`)",
    )


class SourceConfig(SupervisionSettings):
    """Keys every source has."""

    name: Name = Field(description="Unique name of this source; prefixes its topics and offsets")
    connector: str = Field(description="Which source connector runs this entry")


class SinkConfig(SupervisionSettings):
    """Keys every sink has: its name, connector, and the topics it consumes."""

    name: Name = Field(description="Unique name of this sink; also its consumer group")
    connector: str = Field(description="Which sink connector runs this entry")
    topics: list[str] = Field(default_factory=list, description="Topics to consume")
    topics_regex: str | None = Field(
        default=None, description="Consume every topic whose whole name matches this regex"
    )
