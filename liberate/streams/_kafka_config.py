"""librdkafka configurations of the clients the Kafka backend creates.

The run file's ``streams.kafka.properties`` go to every client (security settings concern
them all); what liberate's guarantees rest on is set last and cannot be overridden (the
config model refuses those keys). librdkafka's own log lines go to the ``liberate.kafka``
logger instead of stderr.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from liberate.config.models import KafkaSettings
from liberate.database import read_password_file

KAFKA_LOG = logging.getLogger("liberate.kafka")

# librdkafka logs every failed reconnect of every client (several a second while a broker
# restarts); liberate's own errors say what matters. Repeats are kept to one per this long.
_REPEAT_EVERY_S = 30.0


class LibrdkafkaLog:
    """What confluent-kafka calls ``logger``: librdkafka's lines into ``liberate.kafka``.

    Levels are capped at WARNING (a client-side connection error is retried by librdkafka;
    a failure liberate cannot recover from is raised as an exception), and a line of the same
    facility from the same client is repeated at most every 30 s.
    """

    def __init__(self, logger: logging.Logger = KAFKA_LOG) -> None:
        self.logger = logger
        self._last: dict[tuple[object, ...], float] = {}
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: object) -> None:
        level = min(level, logging.WARNING)
        if args and args[0] == "CONFWARN" and "will be ignored by this" in str(args[-1]):
            # streams.kafka.properties go to every client; a consumer setting is meant for
            # consumers, and the producer saying it ignores it is expected.
            level = logging.DEBUG
        if not self.logger.isEnabledFor(level):
            return
        key = (level, *args[:2])  # confluent-kafka passes (facility, client name, text)
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -_REPEAT_EVERY_S) < _REPEAT_EVERY_S:
                return
            self._last[key] = now
        self.logger.log(level, message, *args)


_LIBRDKAFKA_LOG = LibrdkafkaLog()

# How long one blocking admin, metadata or transaction call may take before it is an error.
REQUEST_TIMEOUT_S = 30.0


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """What every client shares: the brokers, the user's properties, our logger."""
    config: dict[str, Any] = {"client.id": "liberate"}
    config.update(settings.properties)
    for name, path in settings.property_files.items():
        config[name] = read_password_file(path, f"streams.kafka.property_files.{name}")
    config["bootstrap.servers"] = settings.bootstrap_servers
    # liberate creates its topics itself, with their partitions and cleanup policy; a broker
    # that creates topics on a metadata request would otherwise create them with its defaults
    # (librdkafka's admin and producer ask for that unless told not to).
    config["allow.auto.create.topics"] = False
    config["logger"] = _LIBRDKAFKA_LOG
    return config


def producer_config(settings: KafkaSettings, transactional_id: str | None) -> dict[str, Any]:
    """An idempotent producer, transactional when ``transactional_id`` is given.

    Keys are partitioned with murmur2 (``murmur2_random`` spreads records without a key),
    so a key lands in the partition Java clients and the embedded backend choose.
    """
    config = {"linger.ms": 5, **client_config(settings)}
    config["enable.idempotence"] = True
    config["partitioner"] = "murmur2_random"
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
    return config


def consumer_config(settings: KafkaSettings, group: str, *, from_beginning: bool) -> dict[str, Any]:
    """A consumer of ``group`` that reads committed records only and never commits by itself."""
    config = client_config(settings)
    config["group.id"] = group
    config["enable.auto.commit"] = False
    config["enable.auto.offset.store"] = False
    config["isolation.level"] = "read_committed"
    config["auto.offset.reset"] = "earliest" if from_beginning else "latest"
    return config


def admin_config(settings: KafkaSettings) -> dict[str, Any]:
    """An admin client (topics, configs, offsets, groups)."""
    return client_config(settings)
