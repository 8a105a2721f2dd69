"""The run file loader: every problem reported at once, with its YAML path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from liberate.config.base import DatabaseSettings
from liberate.config.loader import load_run_file, parse_run_file
from liberate.errors import ConfigError

GOOD = """\
streams:
  backend: embedded
  path: ${STREAMS_PATH:-.liberate/test.db}
sources:
  - name: shop
    connector: query
    database: sqlite:///${SHOP_DB}
    tables: [orders]
    mode: incrementing
    incrementing_column: id
sinks:
  - name: warehouse
    connector: sql
    database: sqlite:///warehouse.db
    topics: [shop.orders]
"""


def parse(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_run_file(text, Path("run.yaml"), env or {})
    return info.value


def test_valid_file_interpolates_environment_variables_and_defaults() -> None:
    run = parse_run_file(GOOD, Path("run.yaml"), {"SHOP_DB": "/data/shop.db"})
    assert str(run.streams.path) == ".liberate/test.db"
    source = run.sources[0]
    assert source.name == "shop"
    assert isinstance(source, DatabaseSettings)
    assert source.database.get_secret_value() == "sqlite:////data/shop.db"
    assert run.sinks[0].name == "warehouse"


def test_missing_environment_variable_is_reported_with_path_and_line() -> None:
    error = parse(GOOD)
    assert [(i.path, i.line) for i in error.issues] == [("sources[0].database", 7)]
    assert "SHOP_DB is not set" in error.issues[0].message


def test_every_problem_is_reported_at_once_with_lines() -> None:
    text = """\
streams:
  backend: embedded
  colour: blue
sources:
  - name: shop
    connector: query
    database: sqlite:///shop.db
    tables: [orders]
    mode: incrementing
    incrementing_colum: id
  - name: other
    connector: nosuch
sinks:
  - name: warehouse
    connector: sql
    database: not a url
    topics: [a]
extra: 1
"""
    error = parse(text)
    found = {(i.path, i.line) for i in error.issues}
    assert ("streams.colour", 3) in found
    assert ("sources[0].incrementing_colum", 10) in found
    assert ("sources[1].connector", 12) in found
    assert ("sinks[0].database", 16) in found
    assert ("extra", 18) in found
    unknown = next(i for i in error.issues if i.path == "sources[1].connector")
    assert "available:" in unknown.message and "query" in unknown.message


def test_yaml_syntax_error_names_the_line() -> None:
    error = parse("sources:\n  - name: [x\n    connector: query\n")
    assert len(error.issues) == 1
    assert error.issues[0].line is not None
    assert "YAML syntax error" in error.issues[0].message


def test_duplicate_keys_are_refused() -> None:
    twice = GOOD.replace("    mode: incrementing\n", "    mode: incrementing\n    mode: bulk\n")
    error = parse(twice, {"SHOP_DB": "x.db"})
    assert any("duplicate key" in i.message and i.path == "sources[0].mode" for i in error.issues)


def test_duplicate_connector_names_are_refused() -> None:
    text = GOOD + """\
  - name: warehouse
    connector: sql
    database: sqlite:///w2.db
    topics: [shop.orders]
"""
    error = parse(text, {"SHOP_DB": "x.db"})
    assert [i.path for i in error.issues] == ["sinks[1].name"]


def test_empty_file_says_what_is_needed(tmp_path: Path) -> None:
    file = tmp_path / "empty.yaml"
    file.write_text("")
    with pytest.raises(ConfigError) as info:
        load_run_file(file)
    assert "empty" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_file(tmp_path / "nope.yaml")
    assert info.value.exit_code == 2


def test_secrets_never_appear_in_error_messages() -> None:
    text = GOOD.replace("sqlite:///${SHOP_DB}", "postgresql://app:s3cret-pw@db/shop").replace(
        "    mode: incrementing\n", "    mode: sideways\n"
    )
    error = parse(text)
    assert "s3cret-pw" not in str(error)
    assert any(i.path == "sources[0].mode" for i in error.issues)
