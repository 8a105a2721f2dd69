"""Loading a run file: parse, interpolate, validate the whole file, report every issue at once.

Nothing connects before this has passed. Each issue carries its YAML path and line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from liberate import plugins
from liberate.config._yaml import Path as YamlPath
from liberate.config._yaml import format_path, interpolate, line_of, parse_yaml
from liberate.config.base import SinkConfig, SourceConfig
from liberate.config.models import RunConfig, StreamsConfig
from liberate.errors import ConfigError, ConfigIssue
from liberate.logs import protect_secrets

TOP_LEVEL_KEYS = ("streams", "sources", "sinks")


def load_run_file(path: str | Path, environ: Mapping[str, str] | None = None) -> RunConfig:
    """Read and validate ``path``; raise ``ConfigError`` listing every problem found."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"run file {file} not found", hint="pass the path of a YAML run file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read run file {file}: {exc}") from exc
    config = parse_run_file(text, file, environ)
    protect_secrets(config)  # no log line of this process shows them from now on
    return config


def parse_run_file(
    text: str, file: Path, environ: Mapping[str, str] | None = None
) -> RunConfig:
    """Validate run-file ``text`` (``file`` names it in messages)."""
    data, lines, issues = parse_yaml(text)
    if data is None and not issues:
        issues.append(ConfigIssue("", "the run file is empty; it needs sources: and/or sinks:"))
    if issues and data is None:
        raise _error(file, issues)
    if not isinstance(data, dict):
        shape = ConfigIssue("", "the run file must be a mapping of streams/sources/sinks", 1)
        raise _error(file, [shape])
    data, env_issues = interpolate(data, lines, os.environ if environ is None else environ)
    issues.extend(env_issues)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            issues.append(
                ConfigIssue(
                    str(key),
                    f"unknown top-level key; expected one of {', '.join(TOP_LEVEL_KEYS)}",
                    line_of(lines, (str(key),)),
                )
            )
    streams = _validate(StreamsConfig, data.get("streams") or {}, ("streams",), lines, issues)
    sources = _validate_entries(data.get("sources"), "sources", lines, issues)
    sinks = _validate_entries(data.get("sinks"), "sinks", lines, issues)
    if not sources and not sinks and not issues:
        issues.append(ConfigIssue("", "nothing to run: add an entry under sources: or sinks:"))
    _check_unique_names(sources, "sources", lines, issues)
    _check_unique_names(sinks, "sinks", lines, issues)
    if issues:
        raise _error(file, issues)
    assert isinstance(streams, StreamsConfig)
    return RunConfig(
        path=file,
        streams=streams,
        sources=tuple(s for s in sources if isinstance(s, SourceConfig)),
        sinks=tuple(s for s in sinks if isinstance(s, SinkConfig)),
    )


def _error(file: Path, issues: list[ConfigIssue]) -> ConfigError:
    count = len(issues)
    noun = "problem" if count == 1 else "problems"
    return ConfigError(
        f"{file}: {count} {noun} in the run file",
        issues=sorted(issues, key=lambda i: (i.line or 0, i.path)),
        hint="fix these and run `liberate check FILE` again",
    )


def _validate(
    model: type[BaseModel],
    data: Any,
    path: YamlPath,
    lines: Mapping[YamlPath, int],
    issues: list[ConfigIssue],
) -> BaseModel | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            location: YamlPath = (*path, *error["loc"])
            # A model validator reports on the entry itself; point at the entry.
            location = tuple(part for part in location if part != "__root__")
            issues.append(
                ConfigIssue(
                    format_path(location),
                    _message(error),
                    line_of(lines, location),
                )
            )
        return None


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    message = str(error.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config/liberate.schema.json)"
    if kind == "missing":
        return "required key is missing"
    return message.removeprefix("Value error, ")


def _validate_entries(
    entries: Any, section: str, lines: Mapping[YamlPath, int], issues: list[ConfigIssue]
) -> list[BaseModel]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        issues.append(
            ConfigIssue(section, "must be a list of entries (each starting with -)",
                        line_of(lines, (section,)))
        )
        return []
    group = plugins.SOURCES_GROUP if section == "sources" else plugins.SINKS_GROUP
    known = plugins.available(group)
    validated: list[BaseModel] = []
    for index, entry in enumerate(entries):
        path: YamlPath = (section, index)
        if not isinstance(entry, dict):
            issues.append(ConfigIssue(format_path(path), "must be a mapping", line_of(lines, path)))
            continue
        connector = entry.get("connector")
        if connector is None:
            issues.append(
                ConfigIssue(
                    format_path((*path, "connector")),
                    f"required key is missing; one of: {', '.join(sorted(known))}",
                    line_of(lines, path),
                )
            )
            continue
        if connector not in known:
            issues.append(
                ConfigIssue(
                    format_path((*path, "connector")),
                    f"unknown connector {connector!r}; available: {', '.join(sorted(known))}",
                    line_of(lines, (*path, "connector")),
                )
            )
            continue
        cls = plugins.source_class(connector) if section == "sources" else plugins.sink_class(
            connector
        )
        model = _validate(cls.config_model, entry, path, lines, issues)
        if model is not None:
            validated.append(model)
    return validated


def _check_unique_names(
    entries: list[BaseModel], section: str, lines: Mapping[YamlPath, int], issues: list[ConfigIssue]
) -> None:
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = getattr(entry, "name", None)
        if name in seen:
            path: YamlPath = (section, index, "name")
            issues.append(
                ConfigIssue(format_path(path), f"name {name!r} is used twice in {section}",
                            line_of(lines, path))
            )
        if isinstance(name, str):
            seen.add(name)
