"""The run file's own models: ``streams:`` and the validated whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from liberate.config.base import SinkConfig, SourceConfig, StrictModel
from liberate.schema.compatibility import SubjectLevels
from liberate.schema.registry import CompatibilityLevel

SubjectNameStrategy = Literal["topic", "record", "topic_record"]
KafkaPropertyValue = str | int | float | bool

# librdkafka properties liberate sets itself: a run file that set them would silently break a
# guarantee (read_committed, idempotence, the sink's own offsets) or the transactional ids.
MANAGED_KAFKA_PROPERTIES: dict[str, str] = {
    "bootstrap.servers": "set streams.kafka.bootstrap_servers instead",
    "transactional.id": "liberate derives one per source (streams.kafka.transactional_id_prefix)",
    "enable.idempotence": "the producer is always idempotent",
    "group.id": "the consumer group of a sink is the sink's name",
    "enable.auto.commit": "sinks commit offsets themselves, after writing",
    "isolation.level": "consumers always read committed records only",
    "partitioner": "keys are partitioned with murmur2 like Java clients and the embedded backend",
}


class KafkaSettings(StrictModel):
    """How to reach a Kafka cluster and how liberate creates and writes its topics."""

    bootstrap_servers: str = Field(
        min_length=1, description="Comma-separated host:port list of brokers to bootstrap from"
    )
    properties: dict[str, KafkaPropertyValue] = Field(
        default_factory=dict,
        repr=False,  # may hold sasl.password and the like: never in a repr or a log line
        description="librdkafka properties for every client (security.protocol, sasl.*, ssl.*,"
        " compression.type, ...); values are never logged",
    )
    property_files: dict[str, Path] = Field(
        default_factory=dict,
        description="librdkafka properties whose value is the first line of a file, for secrets"
        " kept out of the run file (e.g. sasl.password: /run/secrets/kafka-password)",
    )
    partitions: int = Field(default=1, ge=1, description="Partitions of topics liberate creates")
    replication_factor: int = Field(
        default=1, description="Replication factor of topics liberate creates (-1: broker default)"
    )
    transactional: bool = Field(
        default=True,
        description="Write records and source offsets in one transaction (exactly-once);"
        " false: idempotent at-least-once",
    )
    transactional_id_prefix: str = Field(
        default="liberate",
        min_length=1,
        description="Transactional ids are <prefix>-<source name>: two runs of one source fence",
    )
    offsets_topic: str = Field(
        default="liberate-offsets",
        min_length=1,
        description="Compacted topic that stores the offsets of sources",
    )

    @field_validator("replication_factor")
    @classmethod
    def _replication_is_positive_or_default(cls, value: int) -> int:
        if value < 1 and value != -1:
            raise ValueError("must be 1 or more, or -1 for the broker's default")
        return value

    @field_validator("properties")
    @classmethod
    def _no_managed_properties(
        cls, value: dict[str, KafkaPropertyValue]
    ) -> dict[str, KafkaPropertyValue]:
        problems = [
            f"{key!r} is managed by liberate ({why})"
            for key, why in MANAGED_KAFKA_PROPERTIES.items()
            if key in value
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _property_files_are_separate(self) -> Self:
        problems = [
            f"{key!r} is managed by liberate ({why})"
            for key, why in MANAGED_KAFKA_PROPERTIES.items()
            if key in self.property_files
        ]
        problems += [
            f"{key!r} is in both properties and property_files; keep one"
            for key in self.property_files
            if key in self.properties
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def masked_properties(self) -> dict[str, KafkaPropertyValue]:
        """``properties`` with secret values replaced by ``***``: safe to print or log."""
        return {k: "***" if is_secret_property(k) else v for k, v in self.properties.items()}


def is_secret_property(name: str) -> bool:
    """Whether a librdkafka property holds a secret (passwords, keys, JAAS configs, tokens)."""
    lowered = name.lower()
    return any(
        marker in lowered
        for marker in ("password", "secret", "jaas", "token", "ssl.key.pem", "credentials")
    )


class BasicAuth(StrictModel):
    """HTTP basic authentication for a schema registry."""

    user: str = Field(min_length=1, description="User name (or API key)")
    password: SecretStr | None = Field(
        default=None, description="Password (or API secret), usually ${VAR}"
    )
    password_file: Path | None = Field(
        default=None, description="File whose first line is the password (or API secret)"
    )

    @model_validator(mode="after")
    def _exactly_one_password(self) -> Self:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of password and password_file")
        return self


class SchemaRegistrySettings(StrictModel):
    """A Confluent-compatible schema registry (Confluent, Karapace, Apicurio, Redpanda, or
    ``liberate registry serve``)."""

    url: str = Field(
        pattern=r"^https?://",
        description="Base URL, e.g. http://localhost:8081 (comma-separate several)",
    )
    basic_auth: BasicAuth | None = Field(default=None, description="HTTP basic auth")
    ssl_ca: Path | None = Field(default=None, description="CA bundle that signs the registry")
    ssl_cert: Path | None = Field(default=None, description="Client certificate (PEM)")
    ssl_key: Path | None = Field(default=None, description="Client private key (PEM)")
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one HTTP request")
    retries: int = Field(
        default=3, ge=0, le=20, description="Retries of a request that failed in transport"
    )

    @model_validator(mode="after")
    def _key_needs_a_certificate(self) -> Self:
        if self.ssl_key is not None and self.ssl_cert is None:
            raise ValueError("ssl_key needs ssl_cert (the client certificate it belongs to)")
        return self


class StreamsConfig(StrictModel):
    """Where streams live. ``embedded`` keeps everything in one local SQLite file; ``kafka``
    uses a Kafka cluster and a Confluent-compatible schema registry."""

    backend: Literal["embedded", "kafka"] = Field(
        default="embedded",
        description="Stream backend: embedded (one local SQLite file) or kafka",
    )
    path: Path = Field(
        default=Path(".liberate/streams.db"),
        description="Embedded backend file (relative paths are relative to the working directory)",
    )
    compatibility: CompatibilityLevel = Field(
        default="BACKWARD",
        description="Default schema compatibility level for new subjects",
    )
    compatibility_per_subject: dict[str, CompatibilityLevel] = Field(
        default_factory=dict,
        description="Compatibility level per subject: a subject name or a glob (*, ?, [...])"
        " -> level, e.g. {'shop.orders-value': FULL, 'shop.audit.*': NONE}; an exact name"
        " wins over globs, the first matching glob over later ones (docs/schemas.md)",
    )
    subject_name_strategy: SubjectNameStrategy = Field(
        default="topic",
        description="Subject names: topic (<topic>-key/-value), record, or topic_record",
    )
    kafka: KafkaSettings | None = Field(
        default=None, description="Kafka cluster settings (backend: kafka)"
    )
    schema_registry: SchemaRegistrySettings | None = Field(
        default=None,
        description="Confluent-compatible schema registry (required with backend: kafka)",
    )

    @field_validator("compatibility_per_subject")
    @classmethod
    def _subjects_are_named(
        cls, value: dict[str, CompatibilityLevel]
    ) -> dict[str, CompatibilityLevel]:
        if any(not subject.strip() for subject in value):
            raise ValueError("a subject name or glob cannot be empty")
        return value

    def subject_levels(self) -> SubjectLevels:
        """The compatibility levels this file sets, as the registries apply them."""
        return SubjectLevels(self.compatibility, dict(self.compatibility_per_subject))

    @model_validator(mode="after")
    def _kafka_backend_has_what_it_needs(self) -> Self:
        if self.backend != "kafka":
            return self
        missing: list[str] = []
        if self.kafka is None:
            missing.append(
                "streams.kafka.bootstrap_servers (e.g. kafka: {bootstrap_servers: localhost:9092})"
            )
        if self.schema_registry is None:
            missing.append(
                "streams.schema_registry.url (a Confluent-compatible registry; without one, run"
                " `liberate registry serve registry.db` and use http://127.0.0.1:8081)"
            )
        if missing:
            raise ValueError("backend kafka needs " + " and ".join(missing))
        return self


@dataclass(frozen=True)
class RunConfig:
    """A validated run file."""

    path: Path
    streams: StreamsConfig
    sources: tuple[SourceConfig, ...]
    sinks: tuple[SinkConfig, ...]

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)
