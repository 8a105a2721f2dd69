"""YAML reading that remembers where each value came from, and ``${VAR}`` interpolation.

Interpolation happens on scalar strings after parsing, so an environment value can never add
YAML structure. ``${VAR}`` must be set; ``${VAR:-default}`` falls back; ``$${`` is a literal
``${``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from liberate.errors import ConfigIssue

Path = tuple[str | int, ...]

_VARIABLE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (a silent override is a classic config bug)."""


def parse_yaml(text: str) -> tuple[Any, dict[Path, int], list[ConfigIssue]]:
    """Parse ``text``: the data, the line (1-based) of every path, and structural issues."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines: dict[Path, int] = {}
        issues: list[ConfigIssue] = []
        _index(node, (), lines, issues)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        return None, {}, [ConfigIssue("", f"YAML syntax error: {problem}", line)]
    except yaml.YAMLError as exc:
        return None, {}, [ConfigIssue("", f"YAML error: {exc}")]
    finally:
        loader.dispose()
    return data, lines, issues


def _index(node: yaml.Node, path: Path, lines: dict[Path, int], issues: list[ConfigIssue]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                issues.append(
                    ConfigIssue(
                        format_path((*path, key)),
                        "duplicate key: the later value would silently win",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            _index(value_node, (*path, key), lines, issues)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), lines, issues)


def interpolate(
    data: Any,
    lines: Mapping[Path, int],
    environ: Mapping[str, str] | None = None,
    path: Path = (),
) -> tuple[Any, list[ConfigIssue]]:
    """Replace ``${VAR}`` in every string of ``data``; report unset variables with their path."""
    env = os.environ if environ is None else environ
    issues: list[ConfigIssue] = []
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            out[key], found = interpolate(value, lines, env, (*path, str(key)))
            issues.extend(found)
        return out, issues
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, found = interpolate(value, lines, env, (*path, index))
            items.append(item)
            issues.extend(found)
        return items, issues
    if isinstance(data, str) and "${" in data:

        def substitute(match: re.Match[str]) -> str:
            if match.group(1):
                return match.group(0)[1:]
            name, default = match.group(2), match.group(3)
            if name in env:
                return env[name]
            if default is not None:
                return default
            issues.append(
                ConfigIssue(
                    format_path(path),
                    f"environment variable {name} is not set",
                    line_of(lines, path),
                )
            )
            return ""

        return _VARIABLE.sub(substitute, data), issues
    return data, issues


def format_path(path: Path) -> str:
    """``("sources", 0, "mode")`` -> ``sources[0].mode``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def line_of(lines: Mapping[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest ancestor present in the file."""
    probe = tuple(path)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get(())
