"""Driver rows read as Avro records without building a dict per row: ``RowView``.

``TableSchema.row_value``/``row_key`` make them; ``RecordSerializer`` encodes a view straight
from its row with the writer its ``RowLayout`` compiles (``compile_row_writer``); anything else
reads it as the mapping it is, equal to the dict ``TableSchema.value_of`` would have built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from liberate.schema._generated import FieldPlan, RowWrite, compile_row_writer
from liberate.schema.avro import AvroSchema


class NoRowWriter(Exception):
    """The layout's schema has a shape ``compile_row_writer`` leaves out: use the mapping."""


class RowLayout:
    """Where the fields of one record (a table's value or key) are in a driver row.

    Holds the record's schema and ``write``, which encodes a row as that record: compiled on
    first use (``compile_row_writer``; its errors name no field), or raising ``NoRowWriter``
    for every row when the schema has a shape it leaves out. Threading: the first uses may
    compile twice at once; both results are equal.
    """

    __slots__ = ("_index", "_plan", "fields", "row_length", "schema", "write")

    def __init__(
        self, schema: AvroSchema, fields: Sequence[str], plan: Sequence[FieldPlan], row_length: int
    ) -> None:
        """``plan[k]`` places the k-th field of ``schema`` in rows of ``row_length`` values."""
        self.schema = schema
        self.fields = tuple(fields)
        self.row_length = row_length
        self._plan = tuple(plan)
        self._index = {name: step for name, step in zip(self.fields, self._plan, strict=True)}
        # An attribute, not a property: the serializer calls it once per record.
        self.write: RowWrite = self._compile_and_write

    def _compile_and_write(self, out: bytearray, row: Sequence[Any]) -> None:
        compiled = compile_row_writer(self.schema.schema, self._plan, row_length=self.row_length)
        self.write = compiled if compiled is not None else _no_row_writer
        self.write(out, row)

    def plan_of(self, name: str) -> FieldPlan:
        """How field ``name`` is read from a row (KeyError for an unknown name)."""
        return self._index[name]

    def value(self, row: Sequence[Any], name: str) -> Any:
        """The Avro-ready value of field ``name`` in ``row`` (KeyError for an unknown name)."""
        position, convert, keep, _ = self._index[name]
        item = row[position]
        if convert is None or item is None or type(item) is keep:
            return item
        return convert(item)


class RowView(Mapping[str, Any]):
    """A driver row read as an Avro record: equal to the dict ``value_of`` (or ``key_of``) makes.

    It keeps the row and converts a value when it is read, so making one costs one small
    object. ``RecordSerializer`` encodes it from the row when its layout's schema is the
    record's schema. Treat it as immutable, like the row.
    """

    __slots__ = ("layout", "row")

    def __init__(self, row: Sequence[Any], layout: RowLayout) -> None:
        self.row = row
        self.layout = layout

    def __getitem__(self, name: str) -> Any:
        return self.layout.value(self.row, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.fields)

    def __len__(self) -> int:
        return len(self.layout.fields)

    def __contains__(self, name: object) -> bool:
        return name in self.layout._index

    def __repr__(self) -> str:
        return f"RowView({dict(self)!r})"


def _no_row_writer(out: bytearray, row: Sequence[Any]) -> None:
    raise NoRowWriter
