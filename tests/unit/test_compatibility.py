"""Schema compatibility: Avro resolution rules at each Confluent level."""

from __future__ import annotations

from typing import Any

import pytest

from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import (
    check_compatibility,
    incompatibility_hint,
    incompatibility_message,
    resolution_problems,
)
from liberate.schema.registry import COMPATIBILITY_LEVELS, CompatibilityLevel

NULLABLE_INT: Any = ["null", "int"]


def row(*fields: dict[str, Any], name: str = "Value", **extra: Any) -> AvroSchema:
    return AvroSchema(
        {"type": "record", "name": name, "namespace": "orders", "fields": list(fields), **extra}
    )


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


ID = field("id", "long")

# (change, old, new, {level: accepted})
CHANGES: list[tuple[str, AvroSchema, AvroSchema, dict[str, bool]]] = [
    (
        "add nullable field with default",
        row(ID),
        row(ID, field("amount", NULLABLE_INT, default=None)),
        {"BACKWARD": True, "FORWARD": True, "FULL": True},
    ),
    (
        "add required field without default",
        row(ID),
        row(ID, field("amount", "int")),
        {"BACKWARD": False, "FORWARD": True, "FULL": False},
    ),
    (
        "remove required field",
        row(ID, field("amount", "int")),
        row(ID),
        {"BACKWARD": True, "FORWARD": False, "FULL": False},
    ),
    (
        "remove field that had a default",
        row(ID, field("amount", "int", default=0)),
        row(ID),
        {"BACKWARD": True, "FORWARD": True, "FULL": True},
    ),
    (
        "widen int to long",
        row(ID, field("amount", "int")),
        row(ID, field("amount", "long")),
        {"BACKWARD": True, "FORWARD": False, "FULL": False},
    ),
    (
        "narrow long to int",
        row(ID, field("amount", "long")),
        row(ID, field("amount", "int")),
        {"BACKWARD": False, "FORWARD": True, "FULL": False},
    ),
    (
        "widen long to double",
        row(ID, field("amount", "long")),
        row(ID, field("amount", "double")),
        {"BACKWARD": True, "FORWARD": False},
    ),
    (
        "string to bytes",
        row(ID, field("note", "string")),
        row(ID, field("note", "bytes")),
        {"BACKWARD": True, "FORWARD": True, "FULL": True},
    ),
    (
        "int to string",
        row(ID, field("amount", "int")),
        row(ID, field("amount", "string")),
        {"BACKWARD": False, "FORWARD": False},
    ),
    (
        "rename field",
        row(ID, field("amount", "int")),
        row(ID, field("total", "int")),
        {"BACKWARD": False, "FORWARD": False, "NONE": True},
    ),
    (
        "rename field keeping the old name as alias",
        row(ID, field("amount", "int")),
        row(ID, field("total", "int", aliases=["amount"])),
        {"BACKWARD": True},
    ),
    (
        "rename record",
        row(ID),
        row(ID, name="Row"),
        {"BACKWARD": False, "FORWARD": False},
    ),
    (
        "rename record keeping the old name as alias",
        row(ID),
        row(ID, name="Row", aliases=["Value"]),
        {"BACKWARD": True},
    ),
    (
        "change namespace only (names match unqualified)",
        row(ID),
        AvroSchema({"type": "record", "name": "Value", "namespace": "shop", "fields": [ID]}),
        {"FULL": True},
    ),
    (
        "enum add symbol",
        row(ID, field("status", enum("NEW", "PAID"))),
        row(ID, field("status", enum("NEW", "PAID", "SHIPPED"))),
        {"BACKWARD": True, "FORWARD": False, "FULL": False},
    ),
    (
        "enum add symbol when the old enum has a default",
        row(ID, field("status", enum("NEW", "PAID", default="NEW"))),
        row(ID, field("status", enum("NEW", "PAID", "SHIPPED", default="NEW"))),
        {"FULL": True},
    ),
    (
        "enum remove symbol",
        row(ID, field("status", enum("NEW", "PAID", "SHIPPED"))),
        row(ID, field("status", enum("NEW", "PAID"))),
        {"BACKWARD": False, "FORWARD": True},
    ),
    (
        "decimal scale change",
        row(ID, field("amount", decimal(10, 2))),
        row(ID, field("amount", decimal(10, 3))),
        {"BACKWARD": False, "FORWARD": False, "NONE": True},
    ),
    (
        "decimal precision change",
        row(ID, field("amount", decimal(10, 2))),
        row(ID, field("amount", decimal(12, 2))),
        {"BACKWARD": False, "FORWARD": False},
    ),
    (
        "timestamp annotation on a long (logical types follow their type)",
        row(ID, field("at", "long")),
        row(ID, field("at", {"type": "long", "logicalType": "timestamp-micros"})),
        {"FULL": True},
    ),
    (
        "nullable column becomes NOT NULL",
        row(ID, field("amount", NULLABLE_INT, default=None)),
        row(ID, field("amount", "int")),
        {"BACKWARD": False, "FORWARD": True},
    ),
    (
        "NOT NULL column becomes nullable",
        row(ID, field("amount", "int")),
        row(ID, field("amount", NULLABLE_INT, default=None)),
        {"BACKWARD": True, "FORWARD": False},
    ),
    (
        "union gains a branch",
        row(ID, field("v", ["null", "string"])),
        row(ID, field("v", ["null", "string", "long"])),
        {"BACKWARD": True, "FORWARD": False},
    ),
    (
        "union loses a branch",
        row(ID, field("v", ["null", "string", "long"])),
        row(ID, field("v", ["null", "string"])),
        {"BACKWARD": False, "FORWARD": True},
    ),
    (
        "union branch widened int to long",
        row(ID, field("v", ["null", "int"])),
        row(ID, field("v", ["null", "long"])),
        {"BACKWARD": True, "FORWARD": False},
    ),
    (
        "array items widened",
        row(ID, field("tags", {"type": "array", "items": "int"})),
        row(ID, field("tags", {"type": "array", "items": "long"})),
        {"BACKWARD": True, "FORWARD": False},
    ),
    (
        "map values narrowed",
        row(ID, field("attrs", {"type": "map", "values": "long"})),
        row(ID, field("attrs", {"type": "map", "values": "int"})),
        {"BACKWARD": False, "FORWARD": True},
    ),
    (
        "fixed size change",
        row(ID, field("hash", {"type": "fixed", "name": "Hash", "size": 16})),
        row(ID, field("hash", {"type": "fixed", "name": "Hash", "size": 32})),
        {"BACKWARD": False, "FORWARD": False},
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "level", "accepted"),
    [
        pytest.param(old, new, level, accepted, id=f"{change} / {level}")
        for change, old, new, levels in CHANGES
        for level, accepted in levels.items()
    ],
)
def test_schema_change_is_accepted_or_refused_per_level(
    old: AvroSchema, new: AvroSchema, level: CompatibilityLevel, accepted: bool
) -> None:
    problems = check_compatibility(new, [old], level)
    assert (problems == []) is accepted, problems


@pytest.mark.parametrize("level", COMPATIBILITY_LEVELS)
def test_an_identical_schema_is_compatible_at_every_level(level: CompatibilityLevel) -> None:
    schema = row(ID, field("amount", decimal(10, 2)), field("status", enum("A", "B")))
    assert check_compatibility(schema, [schema], level) == []


@pytest.mark.parametrize("level", COMPATIBILITY_LEVELS)
def test_the_first_version_is_compatible_at_every_level(level: CompatibilityLevel) -> None:
    assert check_compatibility(row(ID), [], level) == []


def test_none_accepts_any_change() -> None:
    assert check_compatibility(AvroSchema("string"), [row(ID)], "NONE") == []


def test_backward_problem_names_field_record_rule_and_remedy() -> None:
    problems = check_compatibility(row(ID, field("amount", "int")), [row(ID)], "BACKWARD")
    assert problems == [
        "field 'amount' (orders.Value): BACKWARD: reader field has no default and is missing "
        "from the writer schema; add a default to the new column or make it nullable"
    ]


def test_forward_problem_of_a_removed_column_says_to_keep_it() -> None:
    problems = check_compatibility(row(ID), [row(ID, field("amount", "int"))], "FORWARD")
    assert len(problems) == 1
    assert problems[0].startswith("field 'amount' (orders.Value): FORWARD: ")
    assert "keep the column" in problems[0]


def test_full_reports_which_direction_broke() -> None:
    problems = check_compatibility(
        row(ID, field("amount", "long")), [row(ID, field("amount", "int"))], "FULL"
    )
    assert len(problems) == 1
    assert "FULL (forward)" in problems[0]
    assert "reader type int cannot read writer type long" in problems[0]


def test_type_problem_names_both_types() -> None:
    problems = check_compatibility(
        row(ID, field("amount", "int")), [row(ID, field("amount", "long"))], "BACKWARD"
    )
    assert problems == [
        "field 'amount' (orders.Value): BACKWARD: reader type int cannot read writer type "
        "long; keep the old type or widen it (int -> long -> float -> double, string <-> "
        "bytes), or write to a new topic"
    ]


def test_decimal_problem_shows_both_precisions_and_scales() -> None:
    (problem,) = check_compatibility(
        row(ID, field("amount", decimal(10, 3))),
        [row(ID, field("amount", decimal(10, 2)))],
        "BACKWARD",
    )
    assert "decimal(10,3) differs from writer decimal(10,2)" in problem


def test_nullable_to_not_null_problem_says_nulls() -> None:
    (problem,) = check_compatibility(
        row(ID, field("amount", "int")),
        [row(ID, field("amount", NULLABLE_INT, default=None))],
        "BACKWARD",
    )
    assert problem.startswith("field 'amount' (orders.Value): BACKWARD: the writer may hold null")
    assert "keep the column nullable" in problem


def test_enum_problem_lists_missing_symbols() -> None:
    (problem,) = check_compatibility(
        row(ID, field("status", enum("NEW"))),
        [row(ID, field("status", enum("NEW", "PAID", "SHIPPED")))],
        "BACKWARD",
    )
    assert "lacks writer symbols PAID, SHIPPED" in problem


def three_versions() -> list[AvroSchema]:
    # v1 has `amount` as int; v2 dropped it; v3 brings it back as a string with a default.
    return [
        row(ID, field("amount", "int")),
        row(ID),
        row(ID, field("amount", "string", default="")),
    ]


def test_backward_checks_only_the_latest_version() -> None:
    v1, v2, v3 = three_versions()
    assert check_compatibility(v3, [v1, v2], "BACKWARD") == []


def test_backward_transitive_checks_every_version_and_names_it() -> None:
    v1, v2, v3 = three_versions()
    problems = check_compatibility(v3, [v1, v2], "BACKWARD_TRANSITIVE")
    assert len(problems) == 1
    assert problems[0].startswith(
        "field 'amount' (orders.Value): BACKWARD_TRANSITIVE (version 1): reader type string "
        "cannot read writer type int"
    )


def test_forward_transitive_checks_every_version() -> None:
    v1 = row(ID, field("amount", "int"))
    v2 = row(ID, field("amount", "int", default=0))
    v3 = row(ID)
    assert check_compatibility(v3, [v1, v2], "FORWARD") == []
    problems = check_compatibility(v3, [v1, v2], "FORWARD_TRANSITIVE")
    assert len(problems) == 1
    assert "FORWARD_TRANSITIVE (version 1)" in problems[0]


def test_full_transitive_checks_both_directions_against_every_version() -> None:
    v1, v2, v3 = three_versions()
    assert check_compatibility(v3, [v1, v2], "FULL") == []
    problems = check_compatibility(v3, [v1, v2], "FULL_TRANSITIVE")
    assert len(problems) == 2
    assert any("FULL_TRANSITIVE (backward, version 1)" in p for p in problems)
    assert any("FULL_TRANSITIVE (forward, version 1)" in p for p in problems)


def envelope(value: AvroSchema) -> AvroSchema:
    return AvroSchema(
        {
            "type": "record",
            "name": "Envelope",
            "namespace": "orders",
            "fields": [
                {"name": "before", "type": ["null", value.schema], "default": None},
                {"name": "after", "type": ["null", "orders.Value"], "default": None},
                {"name": "op", "type": "string"},
            ],
        }
    )


def test_problem_inside_a_nullable_nested_record_names_the_nested_field() -> None:
    old = envelope(row(ID))
    new = envelope(row(ID, field("amount", "int")))
    problems = check_compatibility(new, [old], "BACKWARD")
    assert [p.split(":")[0] for p in problems] == [
        "field 'before.amount' (orders.Value)",
        "field 'after.amount' (orders.Value)",
    ]


def test_nested_record_gaining_a_nullable_field_stays_compatible() -> None:
    old = envelope(row(ID))
    new = envelope(row(ID, field("amount", NULLABLE_INT, default=None)))
    assert check_compatibility(new, [old], "FULL_TRANSITIVE") == []


def test_recursive_types_are_checked_without_looping() -> None:
    def node(*extra: dict[str, Any]) -> AvroSchema:
        return AvroSchema(
            {
                "type": "record",
                "name": "Node",
                "fields": [
                    {"name": "value", "type": "int"},
                    {"name": "next", "type": ["null", "Node"], "default": None},
                    *extra,
                ],
            }
        )

    assert check_compatibility(node(field("label", "string", default="")), [node()], "FULL") == []
    assert check_compatibility(node(field("label", "string")), [node()], "BACKWARD") != []


def test_writer_union_must_be_readable_branch_by_branch() -> None:
    problems = resolution_problems(
        reader=row(ID, field("v", "long")), writer=row(ID, field("v", ["int", "string"]))
    )
    assert [p.rule for p in problems] == ["TYPE_MISMATCH"]
    assert "writer type string" in problems[0].detail


def test_non_union_writer_is_read_by_a_matching_reader_union_branch() -> None:
    problems = resolution_problems(
        reader=row(ID, field("v", ["null", "string", "double"])), writer=row(ID, field("v", "int"))
    )
    assert problems == []


def test_reader_union_without_a_matching_branch_is_reported() -> None:
    (problem,) = resolution_problems(
        reader=row(ID, field("v", ["null", "string"])), writer=row(ID, field("v", "boolean"))
    )
    assert problem.rule == "MISSING_UNION_BRANCH"
    assert problem.path == "v"


def test_top_level_type_change_is_reported_at_the_schema_root() -> None:
    (problem,) = check_compatibility(AvroSchema("string"), [row(ID)], "BACKWARD")
    assert problem.startswith("schema root: BACKWARD: reader type string cannot read writer")


def test_incompatibility_message_lists_subject_level_and_every_problem() -> None:
    text = incompatibility_message("shop.orders-value", "BACKWARD", ["p1", "p2"])
    assert text == (
        "the new schema of subject 'shop.orders-value' breaks BACKWARD compatibility:\n"
        "  - p1\n"
        "  - p2"
    )


def test_incompatibility_hint_names_the_level_and_the_setting() -> None:
    hint = incompatibility_hint("FULL")
    assert "streams.compatibility" in hint
    assert "FULL" in hint
