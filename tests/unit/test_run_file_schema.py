"""The committed JSON Schema of the run file matches the config models (editors rely on it)."""

from __future__ import annotations

import json
from pathlib import Path

from liberate.config.jsonschema import run_file_schema

COMMITTED = Path(__file__).resolve().parents[2] / "config" / "liberate.schema.json"


def test_committed_json_schema_is_up_to_date() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == run_file_schema(), (
        "config/liberate.schema.json is stale: regenerate it with "
        "`python -m liberate.config.jsonschema > config/liberate.schema.json`"
    )


def test_every_installed_connector_has_a_branch() -> None:
    schema = run_file_schema()
    sources = {b["$ref"] for b in schema["properties"]["sources"]["items"]["oneOf"]}
    sinks = {b["$ref"] for b in schema["properties"]["sinks"]["items"]["oneOf"]}
    assert len(sources) >= 4 and len(sinks) >= 1
    consts = {
        schema["$defs"][ref.rsplit("/", 1)[-1]]["properties"]["connector"].get("const")
        for ref in sources
    }
    assert {"query", "postgres", "mysql", "outbox"} <= consts
