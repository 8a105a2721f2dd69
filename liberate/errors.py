"""The one error hierarchy of liberate, grouped by what the runtime must do.

- ``ConfigError``: the run file or the command line is wrong; nothing has connected (exit 2).
- ``FatalError``: the connector cannot go on (a missing prerequisite, a breaking schema change,
  a lost replication slot); the run stops with the message and its hint (exit 1).
- ``RetriableError``: a transient failure (connection lost, deadlock); retried with backoff.
- ``RecordError``: one record cannot be processed; skipped or dead-lettered by policy.

Every third-party error is wrapped at the boundary (``raise ... from exc``). Messages never
contain credentials. Exceptions are picklable with their structured context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class LiberateError(Exception):
    """Root of every liberate error. ``hint`` says what the user should do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


def _rebuild(cls: type[LiberateError], message: str, state: dict[str, Any]) -> LiberateError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the run file: where it is and what is wrong."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "<file>"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(LiberateError):
    """The run file or the command line is invalid. Carries every issue found at once."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        issues: list[ConfigIssue] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.issues = list(issues or [])

    def __str__(self) -> str:
        lines = [self.message]
        lines.extend(f"  - {issue}" for issue in self.issues)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class FatalError(LiberateError):
    """The connector cannot continue; the run stops and reports why."""


class PrerequisiteError(FatalError):
    """A database lacks something liberate needs (a table, a key, a setting, a privilege)."""


class UnsupportedTypeError(FatalError):
    """A column has a type with no Avro mapping yet."""


class SchemaCompatibilityError(FatalError):
    """A new schema version breaks the subject's compatibility level."""

    def __init__(
        self,
        message: str,
        *,
        subject: str,
        level: str,
        problems: list[str],
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.subject = subject
        self.level = level
        self.problems = list(problems)


class RetriableError(LiberateError):
    """A transient failure; the runtime retries with backoff."""


class RecordError(LiberateError):
    """One record cannot be processed (bad data); skipped or dead-lettered by policy."""

    def __init__(self, message: str, *, origin: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.origin = origin


class RecordTooLargeError(FatalError):
    """A serialized record is larger than the stream backend accepts: the source stops at it
    (skipping it would lose it). ``index`` is its place in the batch given to the backend, so
    the caller can name the record by its key."""

    def __init__(self, message: str, *, index: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.index = index
