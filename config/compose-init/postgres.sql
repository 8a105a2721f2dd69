-- Run once by the postgres image when its volume is empty (docker-entrypoint-initdb.d).
-- The source database is `shop` (POSTGRES_DB); the SQL sink writes into `warehouse`.
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer    text NOT NULL,
    total       numeric(12, 2) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (customer, total) VALUES ('ada', 12.50), ('grace', 99.95);

CREATE DATABASE warehouse;
