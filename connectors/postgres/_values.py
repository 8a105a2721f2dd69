"""Column values between their text form (as pgoutput sends them) and Python values.

pgoutput sends each column in PostgreSQL's text output format; psycopg's loaders turn that
text into exactly the Python values a query returns on the same connection, so a streamed
row and a snapshot row of the same data become the same Avro value. The loaders run in C
(``Transformer.load_sequence``). The reverse, a key value to text, uses psycopg's dumpers; the
snapshot stores the last key read that way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import BaseConnection
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import Format

from liberate.errors import RecordError


class RowLoader:
    """Loads the text values of one relation's tuples (in its column order)."""

    __slots__ = ("_load", "_transformer", "type_oids", "where")

    def __init__(self, context: psycopg.Connection[Any], type_oids: Sequence[int], *, where: str
                 ) -> None:
        transformer = Transformer(context)
        transformer.set_loader_types(list(type_oids), Format.TEXT)
        self._transformer = transformer
        self._load = transformer.load_sequence
        self.type_oids = tuple(type_oids)
        self.where = where

    @property
    def connection(self) -> BaseConnection[Any] | None:
        """The connection whose adaptation context the loaders use."""
        return self._transformer.connection

    def column_loads(self) -> list[Callable[[bytes], Any]]:
        """The ``load`` of each column's loader: what ``load`` applies to a non-NULL value."""
        get = self._transformer.get_loader
        return [get(oid, Format.TEXT).load for oid in self.type_oids]

    def load(self, values: Sequence[bytes | None]) -> tuple[Any, ...]:
        """Python values of ``values`` (None stays None)."""
        try:
            return self._load(values)
        except (psycopg.DataError, ValueError, UnicodeDecodeError) as exc:
            raise RecordError(
                f"cannot read a row of {self.where}: {exc}",
                hint="the value has no Python form: exclude the column or report the type",
            ) from exc


class KeyText:
    """Key values to their text form and back, for key positions stored in offsets."""

    __slots__ = ("_context", "_loader")

    def __init__(self, context: psycopg.Connection[Any], type_oids: Sequence[int]) -> None:
        self._context = Transformer(context)
        self._loader = RowLoader(context, type_oids, where="a stored snapshot key")

    def dump(self, values: Sequence[Any]) -> tuple[str, ...]:
        """The text form of key values (as PostgreSQL reads them back)."""
        out: list[str] = []
        for value in values:
            dumper = self._context.get_dumper(value, PyFormat.TEXT)
            dumped = dumper.dump(value)
            if dumped is None:
                raise ValueError("a key value cannot be NULL")
            out.append(bytes(dumped).decode("utf-8"))
        return tuple(out)

    def load(self, texts: Sequence[str]) -> tuple[Any, ...]:
        """Python key values of stored texts."""
        return self._loader.load([t.encode("utf-8") for t in texts])
