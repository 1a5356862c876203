-- hybridstore-sql schema v1 (SQLite). Mirrors migrations/postgres/0001_schema.sql; keep both
-- in step. Times: kv_objects in Unix nanoseconds, operational tables in Unix milliseconds.

-- The key/value table: one row per key, carrying the value and seed 001's
-- `storage_metadata` columns. A rowid table (not WITHOUT ROWID): values may be large, and the
-- SQLite docs advise WITHOUT ROWID only for rows smaller than ~1/20 of a page.
CREATE TABLE kv_objects (
    key          BLOB    NOT NULL PRIMARY KEY,
    value        BLOB    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL,
    checksum     TEXT    NOT NULL CHECK (length(checksum) = 64),
    content_type TEXT,
    dedup_hash   BLOB
);
CREATE INDEX kv_objects_checksum ON kv_objects (checksum);
CREATE INDEX kv_objects_dedup_hash ON kv_objects (dedup_hash);

-- Operational tables (seed 002).
CREATE TABLE documents (
    doc_id       TEXT    NOT NULL PRIMARY KEY,
    filename     TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    content_hash TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    metadata     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
);
CREATE INDEX documents_content_hash ON documents (content_hash);
CREATE INDEX documents_filename ON documents (filename, doc_id);

CREATE TABLE sessions (
    session_id    TEXT    NOT NULL PRIMARY KEY,
    data          TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
    created_at    INTEGER NOT NULL,
    last_accessed INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE settings (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL CHECK (json_valid(value)),
    updated_at INTEGER NOT NULL
);
