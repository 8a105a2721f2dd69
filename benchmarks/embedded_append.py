"""Append throughput of the embedded stream backend.

Appends N records of ~160 bytes (a 12-byte key, a 148-byte value) in batches, each batch with
one source offset, as the runtime does, and prints records/s and µs/record. Also times reading
everything back through a consumer. Run:

    python benchmarks/embedded_append.py [--records 1000000] [--batch 5000] [--synchronous NORMAL]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from liberate.records import StreamRecord
from liberate.streams.base import SourceOffset
from liberate.streams.embedded import EmbeddedBackend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    args = parser.parse_args()

    value = os.urandom(148)
    records = [
        StreamRecord("bench.rows", b"\x00\x00\x00\x00\x01" + i.to_bytes(7, "big"), value)
        for i in range(args.records)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        backend = EmbeddedBackend(Path(tmp) / "streams.db", synchronous=args.synchronous)
        backend.open()
        backend.ensure_topic("bench.rows", partitions=args.partitions)
        started = time.perf_counter()
        for start in range(0, args.records, args.batch):
            batch = records[start : start + args.batch]
            offset = SourceOffset("bench", {"table": "rows"}, {"id": start + len(batch)})
            backend.append(batch, [offset])
        elapsed = time.perf_counter() - started
        size = (Path(tmp) / "streams.db").stat().st_size
        print(
            f"append: {args.records:,} records in {elapsed:.2f}s = "
            f"{args.records / elapsed:,.0f} records/s"
            f" ({elapsed / args.records * 1e6:.2f} µs/record)"
            f", batch {args.batch}, synchronous={args.synchronous}, file {size / 1e6:.0f} MB"
        )

        consumer = backend.consumer("bench", topics=["bench.rows"])
        started = time.perf_counter()
        read = 0
        while read < args.records:
            got = consumer.poll(10_000, 1.0)
            if not got:
                break
            read += len(got)
        elapsed = time.perf_counter() - started
        print(f"read:   {read:,} records in {elapsed:.2f}s = {read / elapsed:,.0f} records/s")
        consumer.close()
        backend.close()


if __name__ == "__main__":
    main()
