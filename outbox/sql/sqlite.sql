-- The outbox table for SQLite (liberate's default names).
--
-- id, aggregatetype, aggregateid, type and payload are Debezium's outbox columns. headers (a
-- JSON object of extra record headers) is liberate's addition. seq gives the polling relay its
-- order (AUTOINCREMENT: never reused, even after deletes), created_at becomes the record
-- timestamp (UTC text), and relayed_at marks rows the polling relay has delivered while it
-- keeps them for its retention period. Copy this into your migrations.
CREATE TABLE IF NOT EXISTS outbox (
    seq           INTEGER   PRIMARY KEY AUTOINCREMENT,
    id            TEXT      NOT NULL UNIQUE,
    aggregatetype TEXT      NOT NULL,
    aggregateid   TEXT      NOT NULL,
    type          TEXT      NOT NULL,
    payload       TEXT,
    headers       TEXT,
    created_at    TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    relayed_at    TIMESTAMP
);
CREATE INDEX IF NOT EXISTS outbox_unrelayed ON outbox (seq) WHERE relayed_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_relayed_at ON outbox (relayed_at) WHERE relayed_at IS NOT NULL;
