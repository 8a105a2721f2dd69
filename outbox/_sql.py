"""SQL text for the three dialects, composed from quoted identifiers and bound parameters.

This package runs inside applications that may not have SQLAlchemy, so it cannot lean on a
query builder. Statements are therefore composed here, in one place, under two rules:

- identifiers (table and column names from the application's own configuration) are
  validated (``check_identifier``) and quoted by the dialect's rule, the quote character
  doubled inside;
- values are never part of the text: every value is a driver parameter, written in the
  driver's paramstyle (``Params``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from outbox._event import OutboxError

Dialect = Literal["postgresql", "mysql", "sqlite"]
DIALECTS: tuple[Dialect, ...] = ("postgresql", "mysql", "sqlite")

_QUOTES: dict[Dialect, str] = {"postgresql": '"', "mysql": "`", "sqlite": '"'}
# PostgreSQL truncates identifiers past 63 bytes (NAMEDATALEN - 1); MySQL allows 64 characters.
_MAX_LENGTH: dict[Dialect, int] = {"postgresql": 63, "mysql": 64, "sqlite": 128}
_PARAMSTYLES = frozenset({"qmark", "numeric", "named", "format", "pyformat"})
_ALIASES = {"postgres": "postgresql", "mariadb": "mysql"}


def dialect_named(name: str) -> Dialect:
    """The dialect called ``name`` (``postgres`` and ``mariadb`` accepted as aliases)."""
    name = _ALIASES.get(name.lower(), name.lower())
    for dialect in DIALECTS:
        if dialect == name:
            return dialect
    raise OutboxError(f"unsupported database dialect {name!r}; use one of {', '.join(DIALECTS)}")


def check_identifier(dialect: Dialect, name: str, *, what: str = "identifier") -> str:
    """``name`` if it is safe to quote as a ``dialect`` identifier; ``OutboxError`` if not.

    Rejected: empty names, names too long for the dialect, control characters (NUL among
    them), and ``%`` (format-style drivers would read it as a parameter marker).
    """
    if not isinstance(name, str) or not name:
        raise OutboxError(f"the {what} must be a non-empty name, not {name!r}")
    if len(name.encode()) > _MAX_LENGTH[dialect]:
        raise OutboxError(
            f"the {what} {name!r} is longer than {dialect} allows ({_MAX_LENGTH[dialect]} bytes)"
        )
    if not name.isprintable() or "%" in name:
        raise OutboxError(
            f"the {what} {name!r} contains a control character or '%'; rename it"
        )
    return name


def quote(dialect: Dialect, name: str, *, what: str = "identifier") -> str:
    """``name`` as a quoted ``dialect`` identifier (validated; the quote character doubled)."""
    check_identifier(dialect, name, what=what)
    mark = _QUOTES[dialect]
    return mark + name.replace(mark, mark + mark) + mark


def qualified(dialect: Dialect, table: str, schema: str | None) -> str:
    """``schema.table`` (or ``table``) quoted."""
    quoted = quote(dialect, table, what="table name")
    if schema is None:
        return quoted
    return quote(dialect, schema, what="schema name") + "." + quoted


def statement(*parts: str) -> str:
    """One SQL statement from parts that are keywords, quoted identifiers or placeholders."""
    return " ".join(parts)


class Params:
    """Collects the values of one statement and writes their placeholders in ``paramstyle``."""

    def __init__(self, paramstyle: str) -> None:
        if paramstyle not in _PARAMSTYLES:
            raise OutboxError(f"unsupported DB-API paramstyle {paramstyle!r}")
        self.paramstyle = paramstyle
        self._values: list[Any] = []

    def __call__(self, value: Any) -> str:
        """The placeholder of ``value`` (which is bound, never written into the text)."""
        self._values.append(value)
        index = len(self._values)
        style = self.paramstyle
        if style == "qmark":
            return "?"
        if style == "numeric":
            return f":{index}"
        if style == "named":
            return f":p{index}"
        if style == "format":
            return "%s"
        return f"%(p{index})s"

    def list(self, values: Sequence[Any]) -> str:
        """Comma-separated placeholders of ``values``."""
        return ", ".join(self(v) for v in values)

    @property
    def values(self) -> Sequence[Any] | dict[str, Any]:
        """The parameters to pass with the statement (a dict for the named styles)."""
        if self.paramstyle in ("named", "pyformat"):
            return {f"p{i}": v for i, v in enumerate(self._values, start=1)}
        return tuple(self._values)


_STATEMENT_END = re.compile(r";\s*(?:\n|$)")


def split_script(script: str) -> list[str]:
    """The statements of one of our .sql files (``;`` at a line end separates; ``--`` comments
    dropped). Only for our own files: their statements contain no ``;`` in literals."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in _STATEMENT_END.split("\n".join(lines)) if s.strip()]
