"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

No engine runs here (nor in CI), so the stack is never started by the tests. What is checked:

- the file is a valid Compose file: parsed and validated by ``compose-spec`` (the Rust
  ``compose_spec`` crate's parser: every key and value shape of the Compose Specification,
  unknown keys refused);
- every service has a pinned image tag or a build, published ports are host:container pairs,
  ``depends_on`` names existing services, bind mounts name files that exist;
- PostgreSQL runs with ``wal_level=logical``; MySQL with a ROW binlog, full row image and
  metadata, GTIDs on; Kafka in KRaft mode (broker and controller roles, a controller quorum,
  no ZooKeeper) with an internal listener the other containers use;
- the ``liberate`` service is built from the Dockerfile, mounts ``config/``, starts once the
  servers' healthchecks pass, and runs a run file that exists there and passes
  ``liberate.config.loader`` with the service's environment, pointing at the stack's Kafka
  and registry;
- the Dockerfile starts from python:3.11-slim, runs as a non-root user, enters ``liberate``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from liberate.config.loader import load_run_file
from liberate.config.models import RunConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CONFIG_MOUNT = "/config"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose resolves it with no variables set on the host."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): _compose_default(str(v)) for k, v in env.items()}


def _compose_default(value: str) -> str:
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def _server_options(command: list[str]) -> dict[str, str]:
    """``--name=value`` and ``-c name=value`` options, names with ``_`` and ``-`` unified."""
    options: dict[str, str] = {}
    for index, arg in enumerate(command):
        if arg == "-c" and index + 1 < len(command):
            arg = command[index + 1]
        elif not arg.startswith("--"):
            continue
        name, _, value = arg.lstrip("-").partition("=")
        options[name.replace("-", "_").lower()] = value
    return options


def test_compose_file_is_valid_by_the_compose_specification() -> None:
    compose = PyCompose.from_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))
    compose.validate()
    assert set(compose.service_names()) == {
        "postgres", "mysql", "kafka", "schema-registry", "liberate"
    }


def test_the_specification_check_refuses_a_misspelt_key() -> None:
    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace("healthcheck:", "healtcheck:", 1)
    with pytest.raises(ValueError, match="healtcheck"):
        PyCompose.from_yaml(broken)


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_has_a_pinned_image_or_a_build(name: str) -> None:
    service = _services()[name]
    if "build" in service:
        return
    image = str(service["image"])
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{name}: image {image} has no tag"
    assert tag != "latest", f"{name}: pin a version, not latest"
    assert re.match(r"^\d+(\.\d+)+", tag), f"{name}: pin a version number, got {tag}"


@pytest.mark.parametrize("name", sorted(_services()))
def test_published_ports_map_a_host_port_to_a_container_port(name: str) -> None:
    for port in _services()[name].get("ports", []):
        assert re.fullmatch(r"\d{2,5}:\d{2,5}", str(port)), f"{name}: port {port!r}"


def test_host_ports_are_not_published_twice() -> None:
    host_ports = [
        str(port).split(":")[0]
        for service in _services().values()
        for port in service.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports))


@pytest.mark.parametrize("name", sorted(_services()))
def test_depends_on_names_services_of_the_stack(name: str) -> None:
    depends = _services()[name].get("depends_on", [])
    assert set(depends) <= set(_services()) - {name}


@pytest.mark.parametrize("name", sorted(_services()))
def test_bind_mounts_name_files_of_the_repository(name: str) -> None:
    for volume in _services()[name].get("volumes", []):
        source = str(volume).split(":")[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_postgres_runs_with_logical_decoding() -> None:
    options = _server_options(_command(_services()["postgres"]))
    assert options["wal_level"] == "logical"
    assert int(options["max_replication_slots"]) >= 1
    assert int(options["max_wal_senders"]) >= 1


def test_mysql_runs_a_row_binlog_with_full_metadata_and_gtids() -> None:
    mysql = _services()["mysql"]
    assert str(mysql["image"]).startswith("mysql:8.")  # binlog_row_metadata needs 8.0.18+
    options = _server_options(_command(mysql))
    assert "log_bin" in options
    assert options["binlog_format"].upper() == "ROW"
    assert options["binlog_row_image"].upper() == "FULL"
    assert options["binlog_row_metadata"].upper() == "FULL"
    assert options["gtid_mode"].upper() == "ON"
    assert options["enforce_gtid_consistency"].upper() == "ON"
    assert int(options["server_id"]) >= 1


def test_kafka_runs_in_kraft_mode_with_an_internal_listener() -> None:
    env = _environment(_services()["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node_id}@kafka:")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert "INTERNAL://kafka:29092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"  # one broker
    registry = _environment(_services()["schema-registry"])
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"].endswith("kafka:29092")


def test_liberate_service_is_built_here_and_mounts_config() -> None:
    liberate = _services()["liberate"]
    assert liberate["build"] == "."
    assert f"./config:{CONFIG_MOUNT}:ro" in liberate["volumes"]
    assert set(liberate["depends_on"]) >= {"postgres", "mysql", "schema-registry"}


def test_liberate_starts_only_once_its_servers_are_healthy() -> None:
    services = _services()
    for name, condition in services["liberate"]["depends_on"].items():
        assert condition == {"condition": "service_healthy"}, name
        assert "test" in services[name]["healthcheck"], f"{name} has no healthcheck"


def _liberate_run_config() -> RunConfig:
    liberate = _services()["liberate"]
    verb, run_file = _command(liberate)
    assert verb == "run"
    assert run_file.startswith(f"{CONFIG_MOUNT}/")
    path = ROOT / "config" / run_file.removeprefix(f"{CONFIG_MOUNT}/")
    assert path.is_file(), f"the liberate service runs {run_file}, missing as {path}"
    return load_run_file(path, environ=_environment(liberate))


def test_liberate_service_runs_a_valid_run_file_against_the_stack() -> None:
    config = _liberate_run_config()
    assert config.streams.backend == "kafka"
    assert config.streams.kafka is not None
    assert config.streams.kafka.bootstrap_servers == "kafka:29092"
    assert config.streams.schema_registry is not None
    assert config.streams.schema_registry.url == "http://schema-registry:8081"
    assert {s.connector for s in config.sources} == {"postgres", "mysql"}
    assert [s.connector for s in config.sinks] == ["sql"]


def test_run_file_of_the_stack_takes_passwords_from_the_environment() -> None:
    text = (ROOT / "config" / "compose.yaml").read_text(encoding="utf-8")
    assert not re.search(r"://[^/@\s]+:[^/@\s]+@", text)
    for entry in (*_liberate_run_config().sources, *_liberate_run_config().sinks):
        password = getattr(entry, "password", None)
        assert password is not None and password.get_secret_value() == "liberate"


def test_dockerfile_runs_liberate_as_an_unprivileged_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["liberate"]' in instructions
    assert any(line.startswith("RUN pip install .") for line in instructions)


def test_dockerfile_copies_only_what_exists_and_is_not_docker_ignored() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [
        line.split()[1:-1]
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    ]
    sources = [source for sources in copies for source in sources]
    assert {"pyproject.toml", "liberate", "connectors", "sinks", "outbox"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing"
        assert source not in ignored, f"COPY {source}: excluded by .dockerignore"
