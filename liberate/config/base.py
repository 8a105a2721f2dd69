"""Base models every connector and sink config extends.

Each connector owns one pydantic model (in its own package) that subclasses
``SourceConfig`` or ``SinkConfig``; the run-file loader validates each entry of ``sources:``
and ``sinks:`` with the model of the connector it names. Unknown keys are errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]


class StrictModel(BaseModel):
    """A config model that refuses unknown keys and is immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DatabaseSettings(StrictModel):
    """How to reach a database: a URL, and optionally a password kept out of it.

    ``postgresql://`` means psycopg 3 and ``mysql://`` means PyMySQL; SQLAlchemy ``+driver``
    forms are accepted as they are; ``sqlite:///path`` for SQLite.
    """

    database: SecretStr = Field(description="Database URL, e.g. postgresql://user@host/db")
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


class SourceConfig(StrictModel):
    """Keys every source has."""

    name: Name = Field(description="Unique name of this source; prefixes its topics and offsets")
    connector: str = Field(description="Which source connector runs this entry")


class SinkConfig(StrictModel):
    """Keys every sink has: its name, connector, and the topics it consumes."""

    name: Name = Field(description="Unique name of this sink; also its consumer group")
    connector: str = Field(description="Which sink connector runs this entry")
    topics: list[str] = Field(default_factory=list, description="Topics to consume")
    topics_regex: str | None = Field(
        default=None, description="Consume every topic whose whole name matches this regex"
    )
