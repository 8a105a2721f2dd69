"""The processes a process started, read from /proc (Linux): for tests and benchmarks that
watch a ``liberate run`` child and its worker processes."""

from __future__ import annotations

import os


def process_tree(root: int) -> set[int]:
    """``root`` and every live process descended from it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree = {root}
    while True:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        if not more:
            return tree
        tree |= more
