"""The JSON Schema of the run file, generated from the config models, for editors.

``python -m liberate.config.jsonschema > config/liberate.schema.json`` regenerates the committed
copy; a test fails when it is out of date.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from liberate import plugins
from liberate.config.models import StreamsConfig


def run_file_schema() -> dict[str, Any]:
    """The JSON Schema of a whole run file, with one branch per installed connector."""
    sources = {
        name: plugins.source_class(name).config_model
        for name in plugins.available(plugins.SOURCES_GROUP)
    }
    sinks = {
        name: plugins.sink_class(name).config_model
        for name in plugins.available(plugins.SINKS_GROUP)
    }
    models: list[type[BaseModel]] = [StreamsConfig, *sources.values(), *sinks.values()]
    refs, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = top.get("$defs", {})

    def branch(name: str, model: Any) -> dict[str, Any]:
        ref = refs[(model, "validation")]["$ref"]
        definition = defs[ref.rsplit("/", 1)[-1]]
        definition.setdefault("properties", {})["connector"] = {"const": name}
        return {"$ref": ref}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "liberate run file",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "streams": refs[(StreamsConfig, "validation")],
            "sources": {
                "type": "array",
                "items": {"oneOf": [branch(n, m) for n, m in sorted(sources.items())]},
            },
            "sinks": {
                "type": "array",
                "items": {"oneOf": [branch(n, m) for n, m in sorted(sinks.items())]},
            },
        },
        "$defs": defs,
    }


def main() -> None:
    json.dump(run_file_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
