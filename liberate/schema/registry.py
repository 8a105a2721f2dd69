"""The schema registry contract, as the runtime and the CLI consume it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from liberate.schema.avro import AvroSchema

if TYPE_CHECKING:
    from liberate.schema.compatibility import SubjectLevels

CompatibilityLevel = Literal[
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
]
COMPATIBILITY_LEVELS: tuple[CompatibilityLevel, ...] = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_COMPATIBILITY: CompatibilityLevel = "BACKWARD"


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One version of a subject."""

    subject: str
    version: int
    schema_id: int
    schema: AvroSchema


class SchemaRegistry(Protocol):
    """What liberate needs from a schema registry (embedded or Confluent-compatible)."""

    def register(self, subject: str, schema: AvroSchema) -> int:
        """Return the id of ``schema`` under ``subject``, registering a new version if needed.

        A schema identical to an existing version returns that version's id. A new version
        is checked against the subject's compatibility level first; a breaking one raises
        ``SchemaCompatibilityError`` naming the field and the rule, and registers nothing.
        """
        ...

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with this id; ``FatalError`` when unknown."""
        ...

    def subjects(self) -> list[str]:
        """Every subject, sorted."""
        ...

    def versions(self, subject: str) -> list[RegisteredSchema]:
        """Every version of ``subject``, oldest first."""
        ...

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        """The level of ``subject`` (or the global default when None)."""
        ...

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        """Set the level of ``subject`` (or the global default when None)."""
        ...

    def configure_levels(self, levels: SubjectLevels) -> None:
        """Apply a run file's levels: ``levels.default`` as ``set_compatibility(level)`` does,
        and each subject's configured level, set on the subject before its next version is
        registered or checked."""
        ...

    def check(self, subject: str, schema: AvroSchema) -> list[str]:
        """Problems ``schema`` would have as the next version of ``subject`` (empty: fine)."""
        ...
