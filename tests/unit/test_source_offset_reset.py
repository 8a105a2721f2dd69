"""``reset_source_offsets`` on the embedded backend replaces or forgets one source's offsets."""

from __future__ import annotations

from pathlib import Path

from liberate.streams.base import SourceOffset
from liberate.streams.embedded import EmbeddedBackend


def test_a_reset_replaces_or_forgets_the_stored_offsets_of_one_source(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "streams.db")
    backend.open()
    try:
        backend.append([], [SourceOffset("s", {"table": "a"}, {"n": 5}),
                            SourceOffset("s", {"table": "b"}, {"n": 7}),
                            SourceOffset("other", {"table": "a"}, {"n": 1})])
        backend.reset_source_offsets("s", {'{"table":"a"}': {"n": 2}})
        assert backend.source_offsets("s") == {'{"table":"a"}': {"n": 2}}
        backend.reset_source_offsets("s", None)
        assert backend.source_offsets("s") == {}
        assert backend.source_offsets("other") == {'{"table":"a"}': {"n": 1}}
    finally:
        backend.close()
