"""Log output: human-readable lines or JSON lines (``--log-format json``), never a credential.

Every message passes ``SecretMask`` before it is written: the password of any URL
(``scheme://user:password@host``) becomes ``***``, and so does every secret of the loaded run
file (``protect_secrets``: database passwords from the URL, ``password``, ``password_file`` or
the environment, and any other secret setting). The code already masks URLs where it prints
them (``liberate.database.mask_url``); this is the second belt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, SecretStr

LogFormat = Literal["text", "json"]
MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: secrets shorter than this are not masked on their own: "a" would mask every letter a
MIN_SECRET_LENGTH = 3

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/?#@\s]*:)[^@/\s]+(?=@)")


class SecretMask(logging.Filter):
    """Masks URL passwords and registered secrets in each record's message and traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values from now on (longest first, so no part of one shows)."""
        with self._lock:
            known = set(self._secrets)
            known.update(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def mask(self, text: str) -> str:
        """``text`` with every URL password and registered secret replaced by ``***``."""
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self.mask(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


class JsonLineFormatter(logging.Formatter):
    """One JSON object a line: ts (ISO-8601 UTC), level, logger, thread, message[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


#: the mask of this process's log output
SECRETS = SecretMask()
_format: list[LogFormat] = ["text"]


def log_format() -> LogFormat:
    """The format ``configure_logging`` chose (``text`` until it is called)."""
    return _format[0]


def configure_logging(verbosity: int, log_format: LogFormat = "text",
                      stream: TextIO | None = None) -> None:
    """Send log records at the level ``-v`` asks for to ``stream`` (stderr), masked."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 \
        else logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(SECRETS)
    handler.setFormatter(JsonLineFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_liberate", False)]:
        root.removeHandler(old)
    handler._liberate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    _format[0] = log_format


def protect_secrets(config: object) -> None:
    """Mask every secret of a loaded run file in the log output from now on."""
    SECRETS.add(secrets_of(config))


def secrets_of(value: object) -> list[str]:
    """The secret strings in a config: ``SecretStr`` values (a URL's password, not the whole
    URL) and database passwords wherever they come from."""
    found: list[str] = []
    if isinstance(value, SecretStr):
        text = value.get_secret_value()
        found.extend(_url_passwords(text) if "://" in text else [text])
    elif isinstance(value, BaseModel):
        found.extend(_database_password(value))
        for name in type(value).model_fields:
            found.extend(secrets_of(getattr(value, name)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            found.extend(secrets_of(getattr(value, item.name)))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(secrets_of(item))
    elif isinstance(value, dict):
        from liberate.config.models import is_secret_property

        for key, item in value.items():
            secret_key = is_secret_property(str(key))
            if isinstance(item, str) and secret_key:
                found.append(item)
            elif isinstance(item, Path) and secret_key:
                found.extend(_file_secret(item))  # e.g. streams.kafka.property_files
            else:
                found.extend(secrets_of(item))
    return found


def _url_passwords(text: str) -> list[str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(text).password
    except ArgumentError:
        return []
    return [str(password)] if password else []


def _file_secret(path: Path) -> list[str]:
    from liberate.database import read_password_file
    from liberate.errors import LiberateError

    try:
        return [read_password_file(path, "secret file")]
    except LiberateError:
        return []


def _database_password(model: BaseModel) -> list[str]:
    from liberate.config.base import DatabaseSettings
    from liberate.database import database_url
    from liberate.errors import LiberateError

    if not isinstance(model, DatabaseSettings):
        return []
    try:
        password = database_url(model).password
    except (LiberateError, OSError):
        return []
    return [str(password)] if password else []
