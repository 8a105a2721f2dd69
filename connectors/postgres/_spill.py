"""In-progress transactions streamed by the server (pgoutput protocol 2), kept on disk until
they commit.

With ``streaming 'on'`` the server sends a large transaction in blocks while it is still
running, instead of spilling it to its own disk and sending it whole at commit. Its changes
must not become events before it commits (it may roll back, whole or a subtransaction), so
liberate appends each block's messages to a temporary file and replays them, in order and
without those of aborted subtransactions, when the Stream Commit arrives: memory stays bounded
whatever the transaction's size.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from connectors.postgres import _pgoutput as pg

_ENTRY = struct.Struct("!QI")  # WAL position, message length
_XID = struct.Struct("!I")
#: the messages that carry their (sub)transaction's xid first inside a stream block
_WITH_XID = frozenset([b"R", b"Y", b"I", b"U", b"D", b"T", b"M"])
_READ_SIZE = 1 << 20


class SpilledTransaction:
    """The messages of one in-progress transaction, in a temporary file of ``directory``."""

    def __init__(self, xid: int, directory: Path) -> None:
        self.xid = xid
        handle, name = tempfile.mkstemp(prefix=f"txn-{xid}-", suffix=".spill", dir=directory)
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(handle, "w+b")
        self.aborted: set[int] = set()
        self.messages = 0

    def append(self, lsn: int, message: bytes) -> None:
        """Keep one pgoutput message of a stream block (with its xid field)."""
        self._file.write(_ENTRY.pack(lsn, len(message)))
        self._file.write(message)
        self.messages += 1

    def abort(self, subxid: int) -> None:
        """A subtransaction rolled back: its messages are left out of the replay."""
        self.aborted.add(subxid)

    def replay(self) -> Iterator[tuple[int, pg.PgOutputMessage]]:
        """The committed messages, in order, decoded, with their WAL positions."""
        for lsn, message in self.replay_raw():
            yield lsn, pg.decode_message(message, in_stream=True)

    def replay_raw(self) -> Iterator[tuple[int, bytes]]:
        """The committed messages, in order, as sent (xid field included), with their WAL
        positions: those of aborted subtransactions left out."""
        self._file.flush()
        self._file.seek(0)
        buffer = b""
        while True:
            chunk = self._file.read(_READ_SIZE)
            if not chunk and not buffer:
                return
            buffer += chunk
            position = 0
            while len(buffer) - position >= _ENTRY.size:
                lsn, length = _ENTRY.unpack_from(buffer, position)
                start = position + _ENTRY.size
                if len(buffer) - start < length:
                    break
                message = buffer[start:start + length]
                position = start + length
                if self.aborted and message[:1] in _WITH_XID and len(message) >= 5 and (
                    _XID.unpack_from(message, 1)[0] in self.aborted
                ):
                    continue
                yield lsn, message
            buffer = buffer[position:]
            if not chunk:
                if buffer:
                    raise pg.DecodeError(f"spill file {self.path} ends inside a message")
                return

    def close(self) -> None:
        """Remove the file; idempotent."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
