-- hybridstore-sql schema v2 (SQLite): tenants. Mirrors migrations/postgres/0002_tenants.sql.
--
-- `documents` and `sessions` gain a `tenant` column (the empty string for rows of no tenant:
-- tenant names are never empty) and become keyed by (tenant, id), so two tenants may use the
-- same id and every statement selects one tenant's rows by the key's first column. SQLite
-- cannot change a primary key in place: each table is rebuilt and its rows copied
-- (https://www.sqlite.org/lang_altertable.html#otheralter). The migration runs in one
-- transaction, so a crash leaves version 1 or version 2, never a mix.

CREATE TABLE documents_v2 (
    tenant       TEXT    NOT NULL DEFAULT '',
    doc_id       TEXT    NOT NULL,
    filename     TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    content_hash TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    metadata     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    PRIMARY KEY (tenant, doc_id)
);
INSERT INTO documents_v2 (tenant, doc_id, filename, size, content_hash, created_at, metadata)
    SELECT '', doc_id, filename, size, content_hash, created_at, metadata FROM documents;
DROP TABLE documents;
ALTER TABLE documents_v2 RENAME TO documents;
CREATE INDEX documents_content_hash ON documents (tenant, content_hash);
CREATE INDEX documents_filename ON documents (tenant, filename, doc_id);

CREATE TABLE sessions_v2 (
    tenant        TEXT    NOT NULL DEFAULT '',
    session_id    TEXT    NOT NULL,
    data          TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
    created_at    INTEGER NOT NULL,
    last_accessed INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, session_id)
);
INSERT INTO sessions_v2 (tenant, session_id, data, created_at, last_accessed, expires_at)
    SELECT '', session_id, data, created_at, last_accessed, expires_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v2 RENAME TO sessions;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
