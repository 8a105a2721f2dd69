-- The outbox table for PostgreSQL (liberate's default names).
--
-- id, aggregatetype, aggregateid, type and payload are Debezium's outbox columns, so the
-- table also works with Debezium's outbox event router. headers (a JSON object of extra record
-- headers) is liberate's addition. seq gives the polling relay its order (never reused),
-- created_at becomes the record timestamp, and relayed_at marks rows the polling relay has
-- delivered while it keeps them for its retention period. Copy this into your migrations.
CREATE TABLE IF NOT EXISTS outbox (
    seq           BIGINT       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            UUID         NOT NULL UNIQUE,
    aggregatetype VARCHAR(255) NOT NULL,
    aggregateid   VARCHAR(255) NOT NULL,
    type          VARCHAR(255) NOT NULL,
    payload       JSONB,
    headers       JSONB,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    relayed_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unrelayed ON outbox (seq) WHERE relayed_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_relayed_at ON outbox (relayed_at) WHERE relayed_at IS NOT NULL;
