"""The Kafka and schema registry settings of a run file, and how liberate turns them into
client configurations and errors, without a broker."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from liberate.config.loader import parse_run_file
from liberate.config.models import KafkaSettings, SchemaRegistrySettings, StreamsConfig
from liberate.errors import ConfigError, FatalError, RetriableError
from liberate.schema.confluent import client_config, masked_url
from liberate.streams._kafka_config import LibrdkafkaLog, consumer_config, producer_config
from liberate.streams._kafka_errors import wrap_kafka_error

SOURCE = """\
sources:
  - name: shop
    connector: query
    database: sqlite:///shop.db
    tables: [orders]
"""


def problems_of(streams: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_run_file(streams + SOURCE, Path("run.yaml"), {})
    return str(raised.value)


def test_a_kafka_backend_without_brokers_or_registry_says_what_to_add() -> None:
    text = problems_of("streams:\n  backend: kafka\n")

    assert "streams (line 1): backend kafka needs streams.kafka.bootstrap_servers" in text
    assert "streams.schema_registry.url" in text
    assert "liberate registry serve" in text


def test_a_complete_kafka_run_file_validates() -> None:
    run = parse_run_file(
        "streams:\n  backend: kafka\n  kafka:\n    bootstrap_servers: b1:9092,b2:9092\n"
        "    properties: {compression.type: zstd, linger.ms: 20}\n"
        "  schema_registry:\n    url: https://registry:8081\n"
        "    basic_auth: {user: app, password: hunter2}\n" + SOURCE,
        Path("run.yaml"),
        {},
    )

    kafka = run.streams.kafka
    assert kafka is not None and kafka.properties == {"compression.type": "zstd", "linger.ms": 20}
    assert (kafka.partitions, kafka.replication_factor, kafka.transactional) == (1, 1, True)
    assert kafka.offsets_topic == "liberate-offsets"
    assert "hunter2" not in repr(run.streams)


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        (
            "{bootstrap_servers: b:9092, properties: {enable.idempotence: false}}",
            "always idempotent",
        ),
        ("{bootstrap_servers: b:9092, properties: {group.id: x}}", "sink's name"),
        ("{bootstrap_servers: b:9092, properties: {isolation.level: x}}", "committed records"),
        ("{bootstrap_servers: b:9092, replication_factor: 0}", "-1 for the broker's default"),
        ("{bootstrap_servers: b:9092, partitions: 0}", "greater than or equal to 1"),
    ],
)
def test_settings_that_would_break_a_guarantee_are_refused(kafka: str, message: str) -> None:
    text = problems_of(
        f"streams:\n  backend: kafka\n  kafka: {kafka}\n"
        "  schema_registry: {url: 'http://r:8081'}\n"
    )

    assert message in text


def test_secret_properties_are_masked_and_never_in_a_repr() -> None:
    settings = KafkaSettings(
        bootstrap_servers="b:9092",
        properties={"sasl.username": "app", "sasl.password": "hunter2", "linger.ms": 5},
    )

    assert settings.masked_properties() == {
        "sasl.username": "app",
        "sasl.password": "***",
        "linger.ms": 5,
    }
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_clients_get_the_users_properties_but_never_override_what_guarantees_rest_on() -> None:
    settings = KafkaSettings(bootstrap_servers="b:9092", properties={"linger.ms": 50})

    producer = producer_config(settings, "liberate-shop")
    consumer = consumer_config(settings, "warehouse", from_beginning=False)

    assert producer["linger.ms"] == 50
    assert producer["enable.idempotence"] is True
    assert producer["partitioner"] == "murmur2_random"
    assert producer["transactional.id"] == "liberate-shop"
    assert producer["allow.auto.create.topics"] is False
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert (consumer["group.id"], consumer["auto.offset.reset"]) == ("warehouse", "latest")


def test_registry_settings_become_client_settings_with_basic_auth_and_tls(tmp_path: Path) -> None:
    settings = SchemaRegistrySettings.model_validate(
        {
            "url": "https://registry:8081",
            "basic_auth": {"user": "app", "password": "hunter2"},
            "ssl_ca": tmp_path / "ca.pem",
            "ssl_cert": tmp_path / "client.pem",
            "ssl_key": tmp_path / "client.key",
        }
    )

    config = client_config(settings)

    assert config["basic.auth.user.info"] == "app:hunter2"
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert config["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert config["ssl.key.location"] == str(tmp_path / "client.key")
    assert "hunter2" not in repr(settings)


def test_a_key_without_its_certificate_is_refused() -> None:
    with pytest.raises(ValueError, match="ssl_key needs ssl_cert"):
        SchemaRegistrySettings.model_validate({"url": "https://r", "ssl_key": "k.pem"})


def test_registry_urls_are_shown_without_their_credentials() -> None:
    assert masked_url("http://app:hunter2@r1:8081,https://r2:8081/sr") == (
        "http://***@r1:8081,https://r2:8081/sr"
    )
    assert masked_url("http://r:8081") == "http://r:8081"


@pytest.mark.parametrize(
    ("code", "kind", "hint"),
    [
        (KafkaError._ALL_BROKERS_DOWN, RetriableError, "brokers at b:9092 are up"),
        (KafkaError._TRANSPORT, RetriableError, "brokers at b:9092 are up"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, FatalError, "sasl"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, FatalError, "ACLs"),
        (KafkaError._FENCED, FatalError, "same transactional id"),
        (KafkaError.MSG_SIZE_TOO_LARGE, FatalError, "message.max.bytes"),
        (KafkaError.INVALID_REPLICATION_FACTOR, FatalError, "replication_factor"),
    ],
)
def test_kafka_errors_are_classified_by_what_the_runtime_must_do(
    code: int, kind: type[Exception], hint: str
) -> None:
    error = wrap_kafka_error(KafkaError(code), "write records", "b:9092")

    assert type(error) is kind
    assert error.message.startswith("Kafka: cannot write records: ")
    assert hint in (error.hint or "")


def test_librdkafka_lines_are_capped_at_warning_and_repeats_are_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = LibrdkafkaLog(logging.getLogger("test.librdkafka"))
    with caplog.at_level(logging.DEBUG, logger="test.librdkafka"):
        for _ in range(5):
            log.log(logging.ERROR, "%s [%s] %s", "FAIL", "liberate#producer-1", "refused")
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "liberate#consumer-2", "refused")
        log.log(
            logging.WARNING,
            "%s [%s] %s",
            "CONFWARN",
            "liberate#producer-1",
            "Configuration property session.timeout.ms is a consumer property and will be"
            " ignored by this producer instance",
        )

    levels = [(r.levelname, r.getMessage()[:30]) for r in caplog.records]
    assert levels == [
        ("WARNING", "FAIL [liberate#producer-1] ref"),
        ("WARNING", "FAIL [liberate#consumer-2] ref"),
        ("DEBUG", "CONFWARN [liberate#producer-1]"),
    ]


def test_the_embedded_backend_stays_the_default() -> None:
    assert StreamsConfig().backend == "embedded"
