-- hybridstore-sql schema v2 (PostgreSQL): tenants. Mirrors migrations/sqlite/0002_tenants.sql.
--
-- `documents` and `sessions` gain a `tenant` column (the empty string for rows of no tenant:
-- tenant names are never empty) and become keyed by (tenant, id), so two tenants may use the
-- same id and every statement selects one tenant's rows by the key's first column.

ALTER TABLE documents ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE documents DROP CONSTRAINT documents_pkey;
ALTER TABLE documents ADD PRIMARY KEY (tenant, doc_id);
DROP INDEX documents_content_hash;
DROP INDEX documents_filename;
CREATE INDEX documents_content_hash ON documents (tenant, content_hash);
CREATE INDEX documents_filename ON documents (tenant, filename, doc_id);

ALTER TABLE sessions ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE sessions DROP CONSTRAINT sessions_pkey;
ALTER TABLE sessions ADD PRIMARY KEY (tenant, session_id);
