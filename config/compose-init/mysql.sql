-- Run once by the mysql image when its volume is empty (docker-entrypoint-initdb.d), in the
-- database `inventory` (MYSQL_DATABASE).
CREATE TABLE products (
    id          bigint PRIMARY KEY AUTO_INCREMENT,
    name        varchar(200) NOT NULL,
    stock       int NOT NULL,
    updated_at  timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
);
INSERT INTO products (name, stock) VALUES ('kettle', 12), ('teapot', 3);

-- The CDC user `liberate` (MYSQL_USER, created by the image with all privileges on
-- `inventory`) gets the global privileges the binlog source needs (docs/security.md).
-- RELOAD: MySQL's snapshot holds FLUSH TABLES WITH READ LOCK for milliseconds to pin its
-- binlog position (MariaDB needs no lock).
GRANT RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'liberate'@'%';
