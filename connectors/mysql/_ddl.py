"""What a statement in a QUERY event does to tables: a small classifier, not a SQL parser.

The schema of every row comes from its TABLE_MAP (names, types, nullability, key), so the
connector does not need to understand a DDL statement to label rows correctly. It needs to
know which tables a statement touches and whether it is a TRUNCATE (a ``t`` event), a DDL
(schema caches of the table are dropped), a statement-based DML (rows the binlog does not
carry: fatal for a captured table) or something it cannot classify (fatal when it names a
captured table: never guess).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

TableName = tuple[str, str]


class StatementKind(StrEnum):
    """What a QUERY event's statement is, as far as captured tables are concerned."""

    TRANSACTION = "transaction"  # BEGIN, COMMIT, ROLLBACK, SAVEPOINT, XA ...
    CREATE_TABLE = "create table"
    ALTER_TABLE = "alter table"
    DROP_TABLE = "drop table"
    RENAME_TABLE = "rename table"
    TRUNCATE = "truncate"
    INDEX = "index"
    DROP_DATABASE = "drop database"
    DML = "statement-based DML"
    OTHER_DDL = "other"  # views, routines, users, grants, maintenance: no table rows change
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Statement:
    """A classified statement: its kind, the tables it touches, renames as (old, new)."""

    kind: StatementKind
    tables: tuple[TableName, ...] = ()
    renames: tuple[tuple[TableName, TableName], ...] = field(default=())
    database: str | None = None

    def touches(self, names: set[TableName]) -> list[TableName]:
        """The tables of ``names`` this statement touches (renames both ways)."""
        touched = [t for t in self.tables if t in names]
        for old, new in self.renames:
            touched += [t for t in (old, new) if t in names and t not in touched]
        return touched


_TOKEN = re.compile(r"`((?:[^`]|``)*)`|([A-Za-z0-9_$]+)|(\S)")
_COMMENT = re.compile(r"/\*(?!!)(?:.|\n)*?\*/|(?:--\s|#)[^\n]*")
_VERSIONED = re.compile(r"/\*!\d*|\*/")
_IGNORED_OBJECTS = {
    "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "USER", "ROLE", "SEQUENCE", "SERVER",
    "DEFINER", "ALGORITHM", "SQL", "AGGREGATE", "PACKAGE", "TABLESPACE", "LOGFILE", "SPATIAL",
    "RESOURCE",
}
_IGNORED_STATEMENTS = {
    "GRANT", "REVOKE", "FLUSH", "ANALYZE", "OPTIMIZE", "REPAIR", "CHECK", "SET", "INSTALL",
    "UNINSTALL", "RESET", "PURGE", "KILL", "DO", "CHECKSUM", "SHOW", "USE",
}
_TRANSACTION = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "XA", "START"}
_DML = {"INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD", "CALL", "WITH", "SELECT"}


def classify(sql: str, default_database: str) -> Statement:
    """Classify ``sql`` run with ``default_database`` as the current database."""
    words = list(_tokens(_strip_comments(sql)))
    if not words:
        return Statement(StatementKind.OTHER_DDL)
    upper = [w.upper() if not quoted else "" for w, quoted in words]
    first = upper[0]
    if first in _TRANSACTION:
        return Statement(StatementKind.TRANSACTION)
    if first in _DML:
        return Statement(StatementKind.DML, _all_names(words, default_database))
    if first in _IGNORED_STATEMENTS:
        return Statement(StatementKind.OTHER_DDL)
    if first == "TRUNCATE":
        rest = words[2:] if len(upper) > 1 and upper[1] == "TABLE" else words[1:]
        return Statement(StatementKind.TRUNCATE, tuple(_names_list(rest, default_database)[:1]))
    if first == "RENAME" and len(upper) > 1 and upper[1] in ("TABLE", "TABLES"):
        return _rename(words[2:], default_database)
    if first in ("CREATE", "ALTER", "DROP"):
        return _ddl(first, words, upper, default_database)
    return Statement(StatementKind.UNKNOWN, _all_names(words, default_database))


def _ddl(first: str, words: list[tuple[str, bool]], upper: list[str], db: str) -> Statement:
    i = 1
    while i < len(upper) and upper[i] in ("OR", "REPLACE", "TEMPORARY", "ONLINE", "IGNORE",
                                          "UNIQUE", "FULLTEXT", "OFFLINE"):
        i += 1
    what = upper[i] if i < len(upper) else ""
    rest = words[i + 1 :]
    rest_upper = upper[i + 1 :]
    if what == "TABLE":
        skip = _skip_if_exists(rest_upper)
        names = _names_list(rest[skip:], db)
        if first == "CREATE":
            return Statement(StatementKind.CREATE_TABLE, tuple(names[:1]))
        if first == "DROP":
            return Statement(StatementKind.DROP_TABLE, tuple(names))
        table = tuple(names[:1])
        renamed = _alter_rename(rest[skip + 1 :], db)
        if table and renamed is not None:
            return Statement(StatementKind.ALTER_TABLE, table, ((table[0], renamed),))
        return Statement(StatementKind.ALTER_TABLE, table)
    if what == "INDEX":
        on = [n for n, (w, q) in enumerate(rest) if not q and w.upper() == "ON"]
        indexed = _names_list(rest[on[0] + 1 :], db)[:1] if on else []
        return Statement(StatementKind.INDEX, tuple(indexed))
    if what in ("DATABASE", "SCHEMA"):
        skip = _skip_if_exists(rest_upper)
        name = rest[skip][0] if skip < len(rest) else ""
        if first == "DROP":
            return Statement(StatementKind.DROP_DATABASE, database=name)
        return Statement(StatementKind.OTHER_DDL, database=name)
    if what in _IGNORED_OBJECTS:
        return Statement(StatementKind.OTHER_DDL)
    return Statement(StatementKind.UNKNOWN, _all_names(words, db))


def _rename(words: list[tuple[str, bool]], db: str) -> Statement:
    pairs: list[tuple[TableName, TableName]] = []
    names = _names_list(words, db, separators=(",", "TO"))
    for index in range(0, len(names) - 1, 2):
        pairs.append((names[index], names[index + 1]))
    return Statement(StatementKind.RENAME_TABLE, renames=tuple(pairs))


def _alter_rename(words: list[tuple[str, bool]], db: str) -> TableName | None:
    """The new name of ``ALTER TABLE t ... RENAME [TO|AS] new`` (not RENAME COLUMN/INDEX)."""
    for index, (word, quoted) in enumerate(words):
        if quoted or word.upper() != "RENAME":
            continue
        tail = words[index + 1 :]
        if tail and not tail[0][1] and tail[0][0].upper() in ("COLUMN", "INDEX", "KEY"):
            continue
        if tail and not tail[0][1] and tail[0][0].upper() in ("TO", "AS"):
            tail = tail[1:]
        names = _names_list(tail, db)
        return names[0] if names else None
    return None


def _skip_if_exists(upper: list[str]) -> int:
    if upper[:2] == ["IF", "EXISTS"]:
        return 2
    if upper[:3] == ["IF", "NOT", "EXISTS"]:
        return 3
    return 0


def _names_list(
    words: list[tuple[str, bool]], db: str, separators: tuple[str, ...] = (",",)
) -> list[TableName]:
    """Leading ``name[.name]`` items separated by ``separators``, until anything else."""
    names: list[TableName] = []
    index = 0
    while index < len(words):
        word, quoted = words[index]
        if not quoted and not _is_identifier(word):
            break
        if index + 2 < len(words) and words[index + 1] == (".", False):
            names.append((word, words[index + 2][0]))
            index += 3
        else:
            names.append((db, word))
            index += 1
        if index < len(words) and not words[index][1] and words[index][0].upper() in separators:
            index += 1
            continue
        break
    return names


def _all_names(words: list[tuple[str, bool]], db: str) -> tuple[TableName, ...]:
    """Every identifier, qualified or not: what an unclassified statement might touch."""
    names: list[TableName] = []
    for index, (word, quoted) in enumerate(words):
        if not quoted and not _is_identifier(word):
            continue
        names.append((db, word))
        if index + 2 < len(words) and words[index + 1] == (".", False):
            names.append((word, words[index + 2][0]))
    return tuple(names)


def _is_identifier(word: str) -> bool:
    return bool(word) and (word[0].isalnum() or word[0] in "_$")


def _strip_comments(sql: str) -> str:
    # Versioned comments (/*!50001 ... */) are executed by the server: keep their content.
    return _VERSIONED.sub(" ", _COMMENT.sub(" ", sql))


def _tokens(sql: str) -> Iterator[tuple[str, bool]]:
    for match in _TOKEN.finditer(sql):
        quoted, word, symbol = match.groups()
        if quoted is not None:
            yield quoted.replace("``", "`"), True
        elif word is not None:
            yield word, False
        else:
            yield symbol, False
