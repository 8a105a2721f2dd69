"""Reading a large bulk table with several processes, delivered in key order.

One Python thread fetches and Avro-encodes ~100,000 rows/s at best (~10 µs a row: driver rows,
JSON, encoding). To use the other cores, the key space of a cycle is cut into *chunks* of
``batch_size`` rows: the source's process finds each chunk's last key with an index-only
query (``BulkCursor.boundary_statement``: ``ORDER BY key OFFSET batch_size - 1 LIMIT 1``) and
hands the ranges to worker processes (``_bulk_worker``), which read and encode them on their
own connections. The source's process takes the encoded chunks back **in key order** and
makes them records whose key and value are Avro bodies (``EncodedRecord``: the serializer adds
the wire header), one chunk per ``poll()``. It also reads a share of the chunks itself
(``HERE_EVERY``): taking an encoded row to the stream costs it a third of what reading and
encoding one costs a worker, so with one worker it would otherwise wait most of the time.
``parallelism: N`` is N processes reading: the source's own and N - 1 workers.

Delivering in key order is what keeps offsets and restarts exactly as in the single-process
path: the offset of a record is still ``{cycle, complete, key.<k>}`` and means "every row up to
this key is durable"; a crash replays nothing twice and skips nothing, and a restart resumes
after the last stored key with or without workers.

Used for bulk mode on tables of a server database (not SQLite: one file, one writer's worth of
reading; not a custom query; not the Debezium envelope) whose cycle still has at least
``MIN_CHUNKS`` chunks to read, so that starting the workers (~1 s) pays. A worker that cannot
encode a chunk sends it back failed and the source reads that range itself (the same errors as
without workers); a worker that cannot serve at all, or dies, makes the source read on in its
own process, from where delivery stopped.

Threading: everything here runs in the polling thread; ``stop`` only sets an event it watches.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

import sqlalchemy as sa

from connectors.query._bulk_worker import ChunkTask, EncodedChunk, WorkerFailed, serve
from connectors.query._cursors import BulkCursor
from connectors.query._readers import Reader
from connectors.query.config import QuerySourceConfig
from liberate.records import SourceRecord
from liberate.serde import EncodedRecord

log = logging.getLogger("liberate.query")

#: a cycle must have at least this many chunks left for the workers to be used
MIN_CHUNKS = 4
#: chunks handed out ahead of the one delivered next, per worker (bounds memory: ~2 MB each)
CHUNKS_AHEAD_PER_WORKER = 2
#: with this many workers, the source's own process reads one chunk in this many itself.
#: Measured per row on the benchmark table: a worker reads and encodes in ~9.5 µs CPU, the
#: source takes an encoded row to the stream in ~3.3 µs and reads one itself in ~12.7 µs;
#: these shares even out the processes (one worker: 1 in 3; two: 1 in 10; more: none).
HERE_EVERY = {1: 3, 2: 10}
_WAIT_S = 0.1
_JOIN_S = 5.0

#: runs a statement for the source (its cancellation and error mapping) and returns the rows
QueryRunner = Callable[[sa.Select[Any]], Sequence[Sequence[Any]]]


class _WorkersLost(Exception):
    """The workers cannot go on; the source reads in its own process."""


@dataclass
class _Plan:
    """The chunks of one reader's cycle: handed out, and waiting to be delivered."""

    plan_id: int
    reader: Reader
    cursor: BulkCursor
    batch: int
    fingerprints: tuple[str, str]
    next_after: tuple[Any, ...] | None
    boundaries: deque[tuple[Any, ...]]
    tail_sent: bool = False
    next_seq: int = 0
    deliver_seq: int = 0
    out: dict[int, ChunkTask] = field(default_factory=dict)
    done: dict[int, EncodedChunk] = field(default_factory=dict)
    #: chunks the source's own process reads (not handed to a worker)
    here: set[int] = field(default_factory=set)


class _Workers:
    """The worker processes of one source and their two queues."""

    def __init__(self, config: QuerySourceConfig, count: int) -> None:
        context = _context()
        self.tasks: multiprocessing.Queue[ChunkTask | None] = context.Queue()
        self.results: multiprocessing.Queue[EncodedChunk | WorkerFailed] = context.Queue()
        self.processes: list[BaseProcess] = [
            context.Process(  # type: ignore[attr-defined]
                target=serve,
                args=(config, self.tasks, self.results),
                name=f"liberate-bulk-{config.name}-{n}",
                daemon=True,
            )
            for n in range(count)
        ]
        for process in self.processes:
            process.start()

    def lost(self) -> str | None:
        """Why a worker is gone, if one is."""
        for process in self.processes:
            if not process.is_alive():
                return f"worker {process.name} ended with exit code {process.exitcode}"
        return None

    def close(self) -> None:
        for _ in self.processes:
            self.tasks.put(None)
        deadline = time.monotonic() + _JOIN_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(_JOIN_S)
        for channel in (self.tasks, self.results):
            channel.cancel_join_thread()
            channel.close()


def _context() -> BaseContext:
    # forkserver: workers are forked from a clean server process that imported the worker
    # module once (cheap starts, no inherited connections); spawn where it does not exist.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([serve.__module__])
        return context
    return multiprocessing.get_context("spawn")


class ParallelBulkReader:
    """Reads the bulk cycles of a source's large tables with worker processes.

    ``records`` returns the next batch of a reader, None when the reader is to be read in the
    source's own process (too small, not eligible, workers lost), or ``[]`` once the reader's
    cycle is read (or on ``stop``).
    """

    def __init__(self, config: QuerySourceConfig, processes: int, stop: threading.Event) -> None:
        """``processes`` read at once: the source's own and ``processes - 1`` workers."""
        if processes < 2:
            raise ValueError("a parallel bulk reader needs at least 2 processes")
        self.config = config
        self.workers = processes - 1
        self._stop = stop
        self._workers: _Workers | None = None
        self._plan: _Plan | None = None
        self._plan_ids = itertools.count(1)
        self._in_process: dict[int, int] = {}  # reader -> the cycle it reads without workers
        self._lost: str | None = None

    def handles(self, reader: Reader) -> bool:
        """Whether the workers are reading ``reader``'s cycle (no read-ahead for it then)."""
        return self._plan is not None and self._plan.reader is reader

    def records(self, reader: Reader, query: QueryRunner, batch: int) -> list[SourceRecord] | None:
        plan = self._plan
        if plan is None:
            plan = self._begin(reader, query, batch)
            if plan is None:
                return None
        elif plan.reader is not reader:
            return None  # the workers serve one table at a time; the others read in-process
        try:
            return self._next(plan, query)
        except _WorkersLost as exc:
            self._lose(str(exc))
            return None
        except BaseException:
            self._plan = None  # nothing delivered is lost: the cursor moved only on delivery
            raise

    def close(self) -> None:
        self._plan = None
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()

    # -- internals ------------------------------------------------------------------------

    def _begin(self, reader: Reader, query: QueryRunner, batch: int) -> _Plan | None:
        cursor = reader.cursor
        if self._lost is not None or not isinstance(cursor, BulkCursor):
            return None
        if self._in_process.get(id(reader)) == cursor.cycle:
            return None
        boundaries: deque[tuple[Any, ...]] = deque()
        after = cursor.after
        while len(boundaries) < MIN_CHUNKS:
            found = query(cursor.boundary_statement(after, batch - 1))
            if not found:
                self._in_process[id(reader)] = cursor.cycle  # small: not worth the workers
                return None
            after = tuple(found[0])
            boundaries.append(after)
        if self._workers is None:
            log.info(
                "source %s: reading %s with %d worker process(es)",
                self.config.name,
                reader.target.label,
                self.workers,
            )
            self._workers = _Workers(self.config, self.workers)
        schema = reader.target.schema
        self._plan = _Plan(
            next(self._plan_ids),
            reader,
            cursor,
            batch,
            (schema.key_schema.fingerprint, schema.value_schema.fingerprint),
            cursor.after,
            boundaries,
        )
        return self._plan

    def _next(self, plan: _Plan, query: QueryRunner) -> list[SourceRecord]:
        while True:
            self._hand_out(plan, query)
            received = self._receive(plan)
            if received is None:
                return []  # stopped
            task, chunk = received
            self._hand_out(plan, query)  # keep the workers busy while this chunk is delivered
            records = self._deliver(plan, task, chunk, query)
            if records or plan.cursor.cycle_done:
                if plan.cursor.cycle_done:
                    self._plan = None
                return records

    def _hand_out(self, plan: _Plan, query: QueryRunner) -> None:
        assert self._workers is not None
        ahead = CHUNKS_AHEAD_PER_WORKER * self.workers + 1
        here_every = HERE_EVERY.get(self.workers, 0)
        while len(plan.out) < ahead and not plan.tail_sent:
            if not plan.boundaries:
                found = query(plan.cursor.boundary_statement(plan.next_after, plan.batch - 1))
                if found:
                    plan.boundaries.append(tuple(found[0]))
            upto = plan.boundaries.popleft() if plan.boundaries else None
            task = ChunkTask(
                plan.plan_id,
                plan.next_seq,
                plan.reader.target.label,
                plan.fingerprints,
                plan.next_after,
                upto,
                None if upto is not None else plan.batch + 1,
            )
            if upto is None:
                plan.tail_sent = True
            plan.next_after = upto
            plan.out[task.seq] = task
            plan.next_seq += 1
            if here_every and task.seq % here_every == here_every - 1:
                plan.here.add(task.seq)
            else:
                self._workers.tasks.put(task)

    def _receive(self, plan: _Plan) -> tuple[ChunkTask, EncodedChunk | None] | None:
        """The next chunk in key order (None: to be read here), or None once stopped."""
        assert self._workers is not None
        if plan.deliver_seq in plan.here:
            plan.here.discard(plan.deliver_seq)
            plan.deliver_seq += 1
            return plan.out.pop(plan.deliver_seq - 1), None
        results = self._workers.results
        lost: str | None = None
        while plan.deliver_seq not in plan.done:
            if self._stop.is_set():
                return None
            try:
                item = results.get(timeout=_WAIT_S)
            except queue.Empty:
                if lost is not None:
                    raise _WorkersLost(lost) from None
                # Once more: what a worker sent before it ended may still be in the pipe.
                lost = self._workers.lost()
                continue
            if isinstance(item, WorkerFailed):
                raise _WorkersLost(item.reason)
            if item.plan == plan.plan_id:
                plan.done[item.seq] = item
        seq = plan.deliver_seq
        plan.deliver_seq += 1
        return plan.out.pop(seq), plan.done.pop(seq)

    def _deliver(
        self, plan: _Plan, task: ChunkTask, chunk: EncodedChunk | None, query: QueryRunner
    ) -> list[SourceRecord]:
        cursor, factory = plan.cursor, plan.reader.records
        if chunk is None:
            return self._read_here(plan, task, query)
        if chunk.failed is not None:
            log.debug("reading a chunk of %s in-process: %s", task.label, chunk.failed)
            return self._read_here(plan, task, query)
        if chunk.more:
            # The tail grew while the cycle ran: read on from the last key delivered.
            plan.tail_sent = False
            plan.next_after = chunk.last_key
        last_of_cycle = task.upto is None and not chunk.more
        if not chunk.count:
            cursor.advance_read([], (), last_of_cycle=last_of_cycle)
            return []
        assert chunk.last_key is not None
        offsets = cursor.advance_read(
            chunk.offset_keys, chunk.last_key, last_of_cycle=last_of_cycle
        )
        keys, values = chunk.keys, chunk.values
        key_ends, value_ends = chunk.key_ends, chunk.value_ends
        target = plan.reader.target
        topic, partition = target.topic, target.partition
        key_schema, value_schema = factory.key_schema, factory.value_schema
        ts_ms = time.time_ns() // 1_000_000
        return [
            SourceRecord(
                topic,
                EncodedRecord(keys[k0:k1], key_schema),
                EncodedRecord(values[v0:v1], value_schema),
                key_schema,
                value_schema,
                partition,
                offset,
                (),
                ts_ms,
            )
            for k0, k1, v0, v1, offset in zip(
                itertools.chain((0,), key_ends),
                key_ends,
                itertools.chain((0,), value_ends),
                value_ends,
                offsets,
                strict=False,
            )
        ]

    def _read_here(self, plan: _Plan, task: ChunkTask, query: QueryRunner) -> list[SourceRecord]:
        """A chunk a worker could not make, read and made as without workers."""
        cursor = plan.cursor
        rows = query(cursor.range_statement(task.after, task.upto, task.limit))
        more = task.limit is not None and len(rows) >= task.limit
        if more:
            rows = rows[: task.limit - 1] if task.limit is not None else rows
        last = tuple(rows[-1][i] for i in cursor.keys.positions) if rows else None
        if more:
            plan.tail_sent = False
            plan.next_after = last
        last_of_cycle = task.upto is None and not more
        keys = cursor.offset_keys(rows)
        offsets = cursor.advance_read(keys, last or (), last_of_cycle=last_of_cycle)
        if not rows:
            return []
        ts_ms = time.time_ns() // 1_000_000
        return plan.reader.records.records(rows, offsets, ts_ms=ts_ms, snapshot=True)

    def _lose(self, reason: str) -> None:
        plan, self._plan = self._plan, None
        label = plan.reader.target.label if plan is not None else "a table"
        log.warning(
            "source %s: reading %s in one process from now on: %s", self.config.name, label, reason
        )
        self._lost = reason
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()
