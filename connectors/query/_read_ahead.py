"""Running the next batch's query while the runtime delivers the last batch.

A query source's ``poll()`` knows, once a batch is read, the exact query the next ``poll()``
will run (the cursor has moved past the batch and the cycle's bound is fixed). That query is
started in a background thread, which waits for the database with the GIL released; the next
``poll()`` turns its result into rows. Only the execution runs ahead, not the making of Python
rows: two threads both building Python objects fight over the GIL and cost more CPU than the
overlap saves (measured: +15% CPU, no gain in wall time), while the execution alone is most
of the database's time (on the benchmark, ~1.3 us of wall time per row for ~0.3 us of CPU).
At most one query runs ahead, so a source holds at most two batches.

Threading: ``start``, ``take``, ``discard`` and ``close`` are called from the polling thread;
``begin`` runs in the read-ahead thread, ``release`` in the polling thread. The source runs one
query at a time: the polling thread takes or discards what runs ahead before it runs another.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """At most one started query (``begin()``'s result) for a given reader.

    ``release`` frees a result nobody took (closes its connection).
    """

    def __init__(self, name: str, release: Callable[[T], None]) -> None:
        self._name = name
        self._release = release
        self._executor: ThreadPoolExecutor | None = None
        self._pending: tuple[object, Future[T]] | None = None

    def start(self, reader: object, begin: Callable[[], T]) -> None:
        """Run ``begin()`` (the next query of ``reader``) in the background."""
        self.discard()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"read-ahead:{self._name}")
        self._pending = (reader, self._executor.submit(begin))

    def take(self, reader: object) -> T | None:
        """What ``begin()`` returned for ``reader`` (its error raised here), or None."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        owner, future = pending
        if owner is not reader:
            self._forget(future)
            return None
        return future.result()

    def discard(self) -> None:
        """Drop the query running ahead, once it has ended (its error ignored)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._forget(pending[1])

    def close(self) -> None:
        """Discard and stop the background thread."""
        self.discard()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _forget(self, future: Future[T]) -> None:
        # Not wanted: neither the result nor the error (the next query reports a lasting
        # problem again, in the polling thread).
        try:
            result = future.result()
        except Exception:
            return
        self._release(result)
