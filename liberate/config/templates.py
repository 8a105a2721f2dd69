"""Name templates in run files (``topic: "{source}.{schema}.{table}"``): checked when the file
is loaded, so a misspelt variable is a config error, not a strange topic at 3 a.m."""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter

from pydantic import AfterValidator


def check_template(value: str, variables: Sequence[str]) -> str:
    """``value`` if it parses as a ``str.format`` template using only ``variables``.

    Raises ValueError naming the unknown variables and the allowed ones.
    """
    try:
        names = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"is not a valid template: {exc}") from exc
    unknown = sorted(names - set(variables))
    if unknown:
        raise ValueError(
            f"unknown variable(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"use {', '.join('{' + v + '}' for v in variables)}"
        )
    return value


def template_over(*variables: str) -> AfterValidator:
    """``check_template`` as a field's validator: ``Annotated[str, template_over("source")]``."""
    return AfterValidator(lambda value: check_template(value, variables))
