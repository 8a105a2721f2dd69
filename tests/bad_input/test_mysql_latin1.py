"""A latin1 MySQL column holds bytes that are not valid UTF-8 (0xE9 alone, 0x80). They are not
bad data in their column's charset: the snapshot and the binlog both decode them as MySQL does
(MySQL's latin1 is cp1252), so the stream equals what MySQL itself returns as UTF-8, never
replacement characters, never a dropped row."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_input._support import liberate, topic_records, write_run_file
from tests.faults._harness import mysql_connect

pytestmark = pytest.mark.integration

#: 'café', '€ 5' and 'Ÿ…' written as raw latin1 bytes (each invalid as UTF-8)
RAW = {1: "636166E9", 2: "802035", 3: "9F85"}


def insert_raw(url: str, ids: list[int]) -> None:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            for i in ids:
                cur.execute("INSERT INTO items (id, label) VALUES (%s, UNHEX(%s))", (i, RAW[i]))
    finally:
        conn.close()


def mysql_view(url: str) -> dict[int, str]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, CONVERT(label USING utf8mb4) FROM items")
            return {int(r[0]): str(r[1]) for r in cur.fetchall()}
    finally:
        conn.close()


def test_latin1_bytes_invalid_as_utf8_arrive_as_mysql_decodes_them(
    tmp_path: Path, mysql_url: str
) -> None:
    conn = mysql_connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE items (id INT PRIMARY KEY, "
                        "label VARCHAR(20) CHARACTER SET latin1 NOT NULL)")
    finally:
        conn.close()
    insert_raw(mysql_url, [1])  # read by the snapshot
    database = mysql_url.rsplit("/", 1)[1]
    source = {"name": "shop", "connector": "mysql", "database": mysql_url, "tables": ["items"]}
    path = write_run_file(tmp_path, [source])
    first = liberate("run", str(path), "--once")
    assert first.returncode == 0, first.stderr
    insert_raw(mysql_url, [2, 3])  # read from the binlog
    second = liberate("run", str(path), "--once")
    assert second.returncode == 0, second.stderr

    expected = mysql_view(mysql_url)
    assert expected == {1: "café", 2: "€ 5", 3: "Ÿ…"}
    events = topic_records(path, f"shop.{database}.items")
    after = {int(v["after"]["id"]): v["after"]["label"]
             for r in events if (v := r.value) is not None and v["after"] is not None}
    assert after == expected
    assert [r.value["op"] for r in events if r.value is not None] == ["r", "c", "c"]
