-- The outbox table for MySQL and MariaDB (liberate's default names).
--
-- id, aggregatetype, aggregateid, type and payload are Debezium's outbox columns, so the
-- table also works with Debezium's outbox event router. headers (a JSON object of extra record
-- headers) is liberate's addition. seq gives the polling relay its order (InnoDB keeps the
-- auto-increment counter across restarts: MySQL 8.0+, MariaDB 10.2.4+), created_at becomes
-- the record timestamp (TIMESTAMP: an instant, whatever the session time zone), and
-- relayed_at marks rows the polling relay has delivered while it keeps them for its retention
-- period. Copy this into your migrations.
CREATE TABLE IF NOT EXISTS outbox (
    seq           BIGINT       NOT NULL AUTO_INCREMENT,
    id            CHAR(36)     NOT NULL,
    aggregatetype VARCHAR(255) NOT NULL,
    aggregateid   VARCHAR(255) NOT NULL,
    type          VARCHAR(255) NOT NULL,
    payload       JSON,
    headers       JSON,
    created_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    relayed_at    TIMESTAMP(6) NULL DEFAULT NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY outbox_id (id),
    KEY outbox_relayed_at (relayed_at, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
