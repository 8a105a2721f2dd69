"""The query source's read-ahead: one query at a time, handed over or released, never lost."""

from __future__ import annotations

import gc
import threading

import pytest

from connectors.query._read_ahead import ReadAhead
from liberate.runtime.pipeline import GC_YOUNG_THRESHOLD, _fewer_collections


class Released(list[str]):
    def __call__(self, result: str) -> None:
        self.append(result)


def test_the_result_goes_to_the_reader_it_was_started_for() -> None:
    released = Released()
    ahead: ReadAhead[str] = ReadAhead("s", released)
    reader = object()
    ahead.start(reader, lambda: "rows")
    assert ahead.take(reader) == "rows"
    assert ahead.take(reader) is None  # taken once
    ahead.close()
    assert released == []


def test_a_result_for_another_reader_or_discarded_is_released() -> None:
    released = Released()
    ahead: ReadAhead[str] = ReadAhead("s", released)
    first, second = object(), object()
    ahead.start(first, lambda: "first")
    assert ahead.take(second) is None
    ahead.start(first, lambda: "again")
    ahead.discard()
    ahead.start(first, lambda: "replaced")
    ahead.start(second, lambda: "last")  # starting another drops the one pending
    ahead.close()
    assert released == ["first", "again", "replaced", "last"]


def test_an_error_is_raised_to_the_taker_and_ignored_when_discarded() -> None:
    released = Released()
    ahead: ReadAhead[str] = ReadAhead("s", released)
    reader = object()

    def fail() -> str:
        raise RuntimeError("connection lost")

    ahead.start(reader, fail)
    with pytest.raises(RuntimeError, match="connection lost"):
        ahead.take(reader)
    ahead.start(reader, fail)
    ahead.discard()
    ahead.close()
    assert released == []


def test_the_query_runs_in_another_thread_and_close_waits_for_it() -> None:
    released = Released()
    ahead: ReadAhead[str] = ReadAhead("s", released)
    started, finish = threading.Event(), threading.Event()
    threads: list[str] = []

    def slow() -> str:
        threads.append(threading.current_thread().name)
        started.set()
        finish.wait(5)
        return "late"

    ahead.start(object(), slow)
    assert started.wait(5)
    finish.set()
    ahead.close()
    assert threads == ["read-ahead:s_0"]
    assert released == ["late"]


def test_a_pipeline_collects_garbage_less_often_and_restores_the_setting() -> None:
    before = gc.get_threshold()
    with _fewer_collections():
        assert gc.get_threshold() == (max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
    assert gc.get_threshold() == before
