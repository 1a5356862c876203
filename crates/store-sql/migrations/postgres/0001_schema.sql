-- hybridstore-sql schema v1 (PostgreSQL). Mirrors migrations/sqlite/0001_schema.sql; keep both
-- in step. Times: kv_objects in Unix nanoseconds, operational tables in Unix milliseconds.
-- Text keys use COLLATE "C" so ordering and prefix ranges are bytewise, as on SQLite.

-- The key/value table: one row per key, carrying the value and seed 001's
-- `storage_metadata` columns.
CREATE TABLE kv_objects (
    key          BYTEA   NOT NULL PRIMARY KEY,
    value        BYTEA   NOT NULL,
    size         BIGINT  NOT NULL CHECK (size >= 0),
    created      BIGINT  NOT NULL,
    modified     BIGINT  NOT NULL,
    checksum     TEXT    COLLATE "C" NOT NULL CHECK (length(checksum) = 64),
    content_type TEXT,
    dedup_hash   BYTEA
);
-- Values are already hashed and mostly incompressible or small: skip TOAST compression.
ALTER TABLE kv_objects ALTER COLUMN value SET STORAGE EXTERNAL;
CREATE INDEX kv_objects_checksum ON kv_objects (checksum);
CREATE INDEX kv_objects_dedup_hash ON kv_objects (dedup_hash);

-- Operational tables (seed 002).
CREATE TABLE documents (
    doc_id       TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    filename     TEXT   COLLATE "C" NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    content_hash TEXT   COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    metadata     JSONB  NOT NULL DEFAULT '{}'
);
CREATE INDEX documents_content_hash ON documents (content_hash);
CREATE INDEX documents_filename ON documents (filename, doc_id);

CREATE TABLE sessions (
    session_id    TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    data          JSONB  NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    last_accessed BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE settings (
    key        TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    value      JSONB  NOT NULL,
    updated_at BIGINT NOT NULL
);
