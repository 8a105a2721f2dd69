"""``liberate verify FILE [--json]``: prove every source table reached its sink tables.

Exit codes: 0 when every route is equal, 1 on a mismatch (the report names the keys) or a
runtime failure, 2 on bad usage. See ``liberate.verify.verifier`` for what is compared.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from liberate.config.loader import load_run_file
from liberate.verify import VerifyReport, verify_run
from liberate.verify.verifier import DEFAULT_MAX_KEYS, TableReport


def verify(
    path: str, *, as_json: bool = False, max_keys: int = DEFAULT_MAX_KEYS, out: TextIO = sys.stdout
) -> int:
    """Reconcile the run file's tables and print the report; the exit code."""
    report = verify_run(load_run_file(path), max_keys=max_keys)
    if as_json:
        json.dump(report.as_json(), out, indent=2, default=str)
        out.write("\n")
    else:
        _print(report, out)
    out.flush()
    if not report.ok:
        failed = sum(not t.ok for t in report.tables)
        print(f"liberate: verify found differences in {failed} table(s)", file=sys.stderr)
        return 1
    return 0


def _print(report: VerifyReport, out: TextIO) -> None:
    for table in report.tables:
        verdict = "equal" if table.ok else "DIFFERENT"
        print(
            f"{table.source}:{table.source_table} -> {table.sink}:{table.target_table}"
            f" ({table.topic}): {verdict}, {table.source_rows} source row(s),"
            f" {table.target_rows} target row(s)",
            file=out,
        )
        if table.note:
            print(f"  note: {table.note}", file=out)
        if not table.ok:
            _print_keys(table, out)
    for reason in report.skipped:
        print(f"skipped: {reason}", file=out)
    if not report.tables:
        print("nothing to verify: no source table reaches a sink table", file=out)


def _print_keys(table: TableReport, out: TextIO) -> None:
    kinds: list[tuple[str, int, list[dict[str, Any]]]] = [
        ("missing in the target", table.missing_count, table.missing),
        ("extra in the target", table.extra_count, table.extra),
        ("different", table.different_count, table.different),
    ]
    for what, count, keys in kinds:
        if not count:
            continue
        shown = ", ".join(_key_text(k) for k in keys)
        more = f" (and {count - len(keys)} more)" if count > len(keys) else ""
        print(f"  {count} key(s) {what}: {shown}{more}", file=out)
    print(f"  compared columns: {', '.join(table.columns)}", file=out)


def _key_text(key: dict[str, Any]) -> str:
    if len(key) == 1:
        return json.dumps(next(iter(key.values())), default=str)
    return "(" + ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in key.items()) + ")"
