"""Capture the binlog fixtures of tests/unit/test_binlog*.py from a throwaway MariaDB.

Run once (it starts its own server) and commit the ``*.events`` files it writes next to it:

    python tests/unit/data/binlog/capture.py

Each ``<scenario>.events`` file holds the events a replica receives for the scenario's
statements (checksums stripped), each as a 4-byte little-endian length and the event bytes,
starting with the dump's ROTATE and FORMAT_DESCRIPTION events.
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import pymysql

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[3]))

from connectors.mysql._replica import BinlogConnection, DumpRequest  # noqa: E402
from tests.servers import MariaDBServer  # noqa: E402

ALL_TYPES = [
    "CREATE TABLE all_types ("
    " id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,"
    " mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT,"
    " bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec1 DECIMAL(10,3), dec2 DECIMAL(65,30),"
    " dec3 DECIMAL(5,0), dt0 DATETIME, dt3 DATETIME(3), dt6 DATETIME(6),"
    " ts0 TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL, ts6 TIMESTAMP(6) NULL, tm0 TIME, tm1 TIME(1),"
    " tm4 TIME(4), tm6 TIME(6), dd DATE, y YEAR, ch CHAR(5), chl CHAR(100),"
    " vc VARCHAR(300), vl VARCHAR(20) CHARACTER SET latin1, tx TEXT, lt LONGTEXT,"
    " bin BINARY(4), vb VARBINARY(10), bl BLOB, en ENUM('small','medium','large'),"
    " st SET('a','b','c','d'), bt BIT(10), js JSON)",
    "INSERT INTO all_types VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215,"
    " -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, -2.25,"
    " -1234567.891, -12345678901234567890123456789012345.123456789012345678901234567890,"
    " 99999, '2024-02-29 23:59:59', '1999-12-31 23:59:59.123', '2038-01-19 03:14:07.999999',"
    " '1970-01-01 00:00:01', '2001-02-03 04:05:06.07', '2038-01-19 03:14:07.999999',"
    " '00:00:00', '23:59:59.9', '12:34:56.7891', '01:02:03.000004', '9999-12-31', 2155,"
    " 'ab', REPEAT('é', 100), REPEAT('x', 300), 'café', 'text ☃', 'long text',"
    " 'ab', x'00ff', x'deadbeef', 'medium', 'a,d', b'1000000001', '{\"k\": [1, 2.5, null]}')",
    "INSERT INTO all_types (id) VALUES (2)",
    "UPDATE all_types SET i = 7, vc = 'changed', ts0 = '2020-01-01 00:00:00' WHERE id = 1",
    "DELETE FROM all_types WHERE id = 2",
]

TRANSACTIONS = [
    "CREATE TABLE orders (id INT PRIMARY KEY, qty INT NOT NULL, note VARCHAR(20))",
    "BEGIN",
    "INSERT INTO orders VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, NULL)",
    "UPDATE orders SET qty = qty + 1",
    "UPDATE orders SET id = 30 WHERE id = 3",
    "DELETE FROM orders WHERE id = 1",
    "COMMIT",
    "CREATE TABLE other (id INT PRIMARY KEY)",
    "INSERT INTO other VALUES (1)",
    "ALTER TABLE orders ADD COLUMN status VARCHAR(10) DEFAULT 'new'",
    "INSERT INTO orders (id, qty) VALUES (4, 40)",
    "ALTER TABLE orders DROP COLUMN note",
    "INSERT INTO orders (id, qty) VALUES (5, 50)",
    "TRUNCATE TABLE orders",
    "RENAME TABLE orders TO orders_old",
]


def capture(server: MariaDBServer, name: str, statements: list[str]) -> None:
    admin = server.connect()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS cap_{name}")
        cur.execute(f"CREATE DATABASE cap_{name} CHARACTER SET utf8mb4")
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
    conn = server.connect(f"cap_{name}")
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        for statement in statements:
            cur.execute(statement)
    conn.close()
    with admin.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        end = cur.fetchone()[1]
    admin.close()

    def connect() -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)

    binlog = BinlogConnection.open(connect, DumpRequest(server_id=4242, file=file, pos=pos))
    events: list[bytes] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for received in binlog.events(0.5):
            events.append(bytes(received))
            log_pos = struct.unpack_from("<I", received, 13)[0]
            if log_pos >= end:
                deadline = 0
    binlog.close()
    with (HERE / f"{name}.events").open("wb") as out:
        for event in events:
            out.write(struct.pack("<I", len(event)) + event)
    print(f"{name}: {len(events)} events")


def main() -> None:
    server = MariaDBServer().start()
    try:
        capture(server, "all_types", ALL_TYPES)
        capture(server, "transactions", TRANSACTIONS)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
