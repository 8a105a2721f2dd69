"""The table of accepted and refused schema changes, at every level, as Confluent decides.

Each change states by hand whether the new schema reads the old data (backward) and whether
the old schema reads the new data (forward); the level table follows Confluent's definitions:
NONE accepts everything, BACKWARD needs backward, FORWARD forward, FULL both, and with one
previous version a transitive level decides as its plain form. The transitive cases have
three versions, where only the first one breaks. Every row runs through the embedded
registry (the path a running source takes) and per-subject levels from a run file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liberate.errors import SchemaCompatibilityError
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import SubjectLevels, check_compatibility
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.schema.registry import COMPATIBILITY_LEVELS, CompatibilityLevel


def row(*fields: dict[str, Any]) -> AvroSchema:
    return AvroSchema(
        {"type": "record", "name": "Value", "namespace": "shop.orders", "fields": list(fields)}
    )


def status(*symbols: str) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols)}


ID = {"name": "id", "type": "long"}
AMOUNT_INT = {"name": "amount", "type": "int"}

# change -> (old, new, new reads old data (backward), old reads new data (forward))
CHANGES: dict[str, tuple[AvroSchema, AvroSchema, bool, bool]] = {
    "add field with default": (
        row(ID), row(ID, {"name": "note", "type": "string", "default": "-"}), True, True,
    ),
    "add nullable field (null default)": (
        row(ID), row(ID, {"name": "note", "type": ["null", "string"], "default": None}),
        True, True,
    ),
    "add field without default": (
        row(ID), row(ID, {"name": "note", "type": "string"}), False, True,
    ),
    "remove field with default": (
        row(ID, {"name": "note", "type": "string", "default": "-"}), row(ID), True, True,
    ),
    "remove field without default": (
        row(ID, {"name": "note", "type": "string"}), row(ID), True, False,
    ),
    "promote int to long": (
        row(ID, AMOUNT_INT), row(ID, {"name": "amount", "type": "long"}), True, False,
    ),
    "narrow long to int": (
        row(ID, {"name": "amount", "type": "long"}), row(ID, AMOUNT_INT), False, True,
    ),
    "change int to string": (
        row(ID, AMOUNT_INT), row(ID, {"name": "amount", "type": "string"}), False, False,
    ),
    "rename field with the old name as alias": (
        row(ID, AMOUNT_INT), row(ID, {"name": "total", "type": "int", "aliases": ["amount"]}),
        True, False,
    ),
    "rename field without alias": (
        row(ID, AMOUNT_INT), row(ID, {"name": "total", "type": "int"}), False, False,
    ),
    "add enum symbol": (
        row(ID, {"name": "status", "type": status("NEW", "PAID")}),
        row(ID, {"name": "status", "type": status("NEW", "PAID", "SHIPPED")}),
        True, False,
    ),
    "remove enum symbol": (
        row(ID, {"name": "status", "type": status("NEW", "PAID", "SHIPPED")}),
        row(ID, {"name": "status", "type": status("NEW", "PAID")}),
        False, True,
    ),
    "widen union": (
        row(ID, {"name": "v", "type": ["null", "string"], "default": None}),
        row(ID, {"name": "v", "type": ["null", "string", "long"], "default": None}),
        True, False,
    ),
    "narrow union": (
        row(ID, {"name": "v", "type": ["null", "string", "long"], "default": None}),
        row(ID, {"name": "v", "type": ["null", "string"], "default": None}),
        False, True,
    ),
    "make a column nullable": (
        row(ID, AMOUNT_INT), row(ID, {"name": "amount", "type": ["null", "int"], "default": None}),
        True, False,
    ),
}


def accepted(level: CompatibilityLevel, backward: bool, forward: bool) -> bool:
    base = level.removesuffix("_TRANSITIVE")
    return {"NONE": True, "BACKWARD": backward, "FORWARD": forward,
            "FULL": backward and forward}[base]


ROWS = [
    pytest.param(old, new, level, accepted(level, backward, forward), id=f"{change}-{level}")
    for change, (old, new, backward, forward) in CHANGES.items()
    for level in COMPATIBILITY_LEVELS
]

# Three versions; the new schema is compatible with the latest and not with version 1.
DEFAULTED_NOTE = {"name": "note", "type": "string", "default": "-"}
TRANSITIVE: dict[str, tuple[list[AvroSchema], AvroSchema, dict[CompatibilityLevel, bool]]] = {
    "drop the default of a field version 1 lacks": (
        [row(ID), row(ID, DEFAULTED_NOTE)],
        row(ID, {"name": "note", "type": "string"}),
        {"NONE": True, "BACKWARD": True, "BACKWARD_TRANSITIVE": False, "FORWARD": True,
         "FORWARD_TRANSITIVE": True, "FULL": True, "FULL_TRANSITIVE": False},
    ),
    "remove a field version 1 has without default": (
        [row(ID, AMOUNT_INT), row(ID, {"name": "amount", "type": "int", "default": 0})],
        row(ID),
        {"NONE": True, "BACKWARD": True, "BACKWARD_TRANSITIVE": True, "FORWARD": True,
         "FORWARD_TRANSITIVE": False, "FULL": True, "FULL_TRANSITIVE": False},
    ),
}
TRANSITIVE_ROWS = [
    pytest.param(history, new, level, ok, id=f"{change}-{level}")
    for change, (history, new, levels) in TRANSITIVE.items()
    for level, ok in levels.items()
]


@pytest.mark.parametrize(("old", "new", "level", "ok"), ROWS)
def test_change_is_accepted_or_refused_as_confluent_decides(
    old: AvroSchema, new: AvroSchema, level: CompatibilityLevel, ok: bool
) -> None:
    assert (check_compatibility(new, [old], level) == []) is ok


@pytest.mark.parametrize(("history", "new", "level", "ok"), TRANSITIVE_ROWS)
def test_transitive_levels_check_every_version_and_the_others_only_the_latest(
    history: list[AvroSchema], new: AvroSchema, level: CompatibilityLevel, ok: bool
) -> None:
    assert (check_compatibility(new, history, level) == []) is ok


@pytest.mark.parametrize(("history", "new", "level", "ok"), TRANSITIVE_ROWS)
def test_embedded_registry_applies_each_level_set_per_subject_in_the_run_file(
    tmp_path: Path, history: list[AvroSchema], new: AvroSchema, level: CompatibilityLevel,
    ok: bool,
) -> None:
    with EmbeddedRegistry(tmp_path / "streams.db") as registry:
        registry.set_compatibility("NONE")
        for schema in history:
            registry.register("shop.orders-value", schema)
        registry.configure_levels(SubjectLevels("NONE", {"shop.*-value": level}))
        assert registry.compatibility("shop.orders-value") == "NONE"  # set at the next version
        assert (registry.check("shop.orders-value", new) == []) is ok
        if ok:
            registry.register("shop.orders-value", new)
        else:
            with pytest.raises(SchemaCompatibilityError) as refused:
                registry.register("shop.orders-value", new)
            assert refused.value.level == level
        assert registry.compatibility("shop.orders-value") == level
        assert len(registry.versions("shop.orders-value")) == len(history) + ok


@pytest.mark.parametrize(("old", "new", "level", "ok"), ROWS)
def test_embedded_registry_refuses_exactly_the_refused_changes(
    tmp_path: Path, old: AvroSchema, new: AvroSchema, level: CompatibilityLevel, ok: bool
) -> None:
    with EmbeddedRegistry(tmp_path / "streams.db") as registry:
        registry.configure_levels(SubjectLevels("BACKWARD", {"shop.orders-value": level}))
        registry.register("shop.orders-value", old)
        if ok:
            registry.register("shop.orders-value", new)
            assert len(registry.versions("shop.orders-value")) == 2
        else:
            with pytest.raises(SchemaCompatibilityError):
                registry.register("shop.orders-value", new)
            assert len(registry.versions("shop.orders-value")) == 1


def test_an_exact_subject_wins_over_globs_and_the_first_glob_over_later_ones() -> None:
    levels = SubjectLevels(
        "BACKWARD",
        {"shop.*": "NONE", "shop.orders-*": "FORWARD", "shop.orders-value": "FULL"},
    )
    assert levels.level_for("shop.orders-value") == "FULL"
    assert levels.level_for("shop.orders-key") == "NONE"
    assert levels.level_for("crm.users-value") is None


def test_subjects_the_run_file_does_not_name_keep_the_default(tmp_path: Path) -> None:
    with EmbeddedRegistry(tmp_path / "streams.db") as registry:
        registry.configure_levels(SubjectLevels("FULL", {"shop.orders-value": "NONE"}))
        registry.register("crm.users-value", row(ID))
        assert registry.compatibility("crm.users-value") == "FULL"
        with pytest.raises(SchemaCompatibilityError):
            registry.register("crm.users-value", row(ID, {"name": "x", "type": "int"}))
