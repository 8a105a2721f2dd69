"""The ``parallelism`` setting of the query source: validated, and ``auto`` resolved to cores."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from connectors.query.config import AUTO_PARALLELISM, QuerySourceConfig


def _config(**settings: object) -> QuerySourceConfig:
    values = {"name": "shop", "connector": "query", "database": "sqlite:///shop.db",
              "tables": ["orders"], **settings}
    return QuerySourceConfig.model_validate(values)


def test_auto_parallelism_is_one_process_per_core_up_to_the_cap() -> None:
    expected = max(1, min(os.cpu_count() or 1, AUTO_PARALLELISM))
    assert _config().bulk_processes() == expected
    assert _config(parallelism="auto").bulk_processes() == expected


def test_a_number_of_processes_is_taken_as_given() -> None:
    assert _config(parallelism=1).bulk_processes() == 1
    assert _config(parallelism=3).bulk_processes() == 3


@pytest.mark.parametrize("value", [0, -1, 33, "many"])
def test_parallelism_outside_auto_or_1_to_32_is_rejected_naming_the_range(value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        _config(parallelism=value)
    assert "parallelism" in str(raised.value)
