//! The operational tables: `documents`, `sessions`, `settings`.

use super::*;

#[async_trait]
impl<D: Dialect> TablesEngine for Engine<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i32: Encode<'q, D::Db> + Type<D::Db>,
    for<'q, 'a> Json<&'a serde_json::Value>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Json<serde_json::Value>: Decode<'q, D::Db> + Type<D::Db>,
{
    // ---- documents -------------------------------------------------------------------

    async fn upsert_document(&self, tenant: &str, doc: &Document) -> Result<()> {
        sqlx::query(
            "INSERT INTO documents \
             (doc_id, filename, size, content_hash, created_at, metadata, tenant) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant, doc_id) DO UPDATE SET filename = excluded.filename, \
             size = excluded.size, content_hash = excluded.content_hash, \
             metadata = excluded.metadata",
        )
        .bind(doc.doc_id.as_str())
        .bind(doc.filename.as_str())
        .bind(size_param(doc.size)?)
        .bind(doc.content_hash.as_str())
        .bind(codec::to_unix_millis(doc.created_at))
        .bind(Json(&doc.metadata))
        .bind(tenant)
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn document(&self, tenant: &str, doc_id: &str) -> Result<Option<Document>> {
        let row = sqlx::query(DOCUMENT_BY_ID)
            .bind(doc_id)
            .bind(tenant)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| document_row(&r)).transpose()
    }

    async fn delete_document(&self, tenant: &str, doc_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM documents WHERE doc_id = $1 AND tenant = $2")
            .bind(doc_id)
            .bind(tenant)
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn documents_by_content_hash(
        &self,
        tenant: &str,
        content_hash: &str,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata \
             FROM documents WHERE content_hash = $1 AND tenant = $3 ORDER BY doc_id LIMIT $2",
        )
        .bind(content_hash)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    /// Documents whose filename starts with `prefix`, ordered by (filename, doc_id), after
    /// the position `after` (keyset paging).
    async fn documents_by_filename_prefix(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let (after_name, after_id) = after.unwrap_or(("", ""));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A prefix range `[prefix, successor)` instead of LIKE: no wildcard escaping, and it
        // uses the (filename, doc_id) index on both backends (bytewise "C" collation).
        let upper = crate::tables::string_prefix_successor(prefix);
        let rows = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata FROM documents \
             WHERE filename >= $1 AND ($2 IS NULL OR filename < $2) \
             AND (filename > $3 OR (filename = $3 AND doc_id > $4)) AND tenant = $6 \
             ORDER BY filename, doc_id LIMIT $5",
        )
        .bind(prefix)
        .bind(upper)
        .bind(after_name)
        .bind(after_id)
        .bind(limit)
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    /// All documents ordered by `doc_id`, after `after` (keyset paging).
    async fn documents_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata FROM documents \
             WHERE tenant = $3 AND doc_id > $1 ORDER BY doc_id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    async fn count_documents(&self, tenant: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(COUNT_DOCUMENTS)
            .bind(tenant)
            .fetch_one(&self.reader)
            .await
            .map_err(map_sqlx)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn documents_in(&self, tenant: &str, ids: &[Key]) -> Result<Vec<Document>> {
        let rows = sqlx::query(D::SELECT_DOCUMENTS_IN_LIST)
            .bind(D::key_list_param(ids))
            .bind(tenant)
            .fetch_all(&self.reader)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    // ---- sessions --------------------------------------------------------------------

    async fn upsert_session(&self, tenant: &str, session: &Session) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions \
             (session_id, data, created_at, last_accessed, expires_at, tenant) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, session_id) DO UPDATE SET data = excluded.data, \
             last_accessed = excluded.last_accessed, expires_at = excluded.expires_at",
        )
        .bind(session.session_id.as_str())
        .bind(Json(&session.data))
        .bind(codec::to_unix_millis(session.created_at))
        .bind(codec::to_unix_millis(session.last_accessed))
        .bind(codec::to_unix_millis(session.expires_at))
        .bind(tenant)
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    /// The session if it exists and has not expired at `now`.
    async fn session(
        &self,
        tenant: &str,
        session_id: &str,
        now: SystemTime,
    ) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT session_id, data, created_at, last_accessed, expires_at FROM sessions \
             WHERE session_id = $1 AND tenant = $3 AND expires_at > $2",
        )
        .bind(session_id)
        .bind(codec::to_unix_millis(now))
        .bind(tenant)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_sqlx)?;
        row.map(|r| session_row(&r)).transpose()
    }

    /// Sets `last_accessed = now` and `expires_at` of a live session; false if there is none.
    async fn touch_session(
        &self,
        tenant: &str,
        session_id: &str,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET last_accessed = $2, expires_at = $3 \
             WHERE session_id = $1 AND tenant = $4 AND expires_at > $2",
        )
        .bind(session_id)
        .bind(codec::to_unix_millis(now))
        .bind(codec::to_unix_millis(expires_at))
        .bind(tenant)
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn delete_session(&self, tenant: &str, session_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE session_id = $1 AND tenant = $2")
            .bind(session_id)
            .bind(tenant)
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn delete_expired_sessions(&self, now: SystemTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(codec::to_unix_millis(now))
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done))
    }

    async fn delete_tenant_rows(&self, tenant: &str) -> Result<(u64, u64)> {
        // One transaction: a tenant's rows go together or not at all.
        let mut tx = D::begin_write(&self.writer, false).await?;
        let documents = sqlx::query("DELETE FROM documents WHERE tenant = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE tenant = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        Ok((D::rows_affected(&documents), D::rows_affected(&sessions)))
    }

    async fn count_sessions(&self, tenant: &str, now: SystemTime) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE tenant = $1 AND expires_at > $2",
        )
        .bind(tenant)
        .bind(codec::to_unix_millis(now))
        .fetch_one(&self.reader)
        .await
        .map_err(map_sqlx)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- settings --------------------------------------------------------------------

    async fn set_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: SystemTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(Json(value))
        .bind(codec::to_unix_millis(now))
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<Setting>> {
        let row = sqlx::query("SELECT key, value, updated_at FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| setting_row(&r)).transpose()
    }

    async fn delete_setting(&self, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn all_settings(&self) -> Result<Vec<Setting>> {
        let rows = sqlx::query("SELECT key, value, updated_at FROM settings ORDER BY key")
            .fetch_all(&self.reader)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(setting_row).collect()
    }
}

pub(super) fn document_row<R: Row>(row: &R) -> Result<Document>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let size: i64 = row.try_get(2).map_err(map_sqlx)?;
    let created_at: i64 = row.try_get(4).map_err(map_sqlx)?;
    let metadata: Json<serde_json::Value> = row.try_get(5).map_err(map_sqlx)?;
    Ok(Document {
        doc_id: row.try_get(0).map_err(map_sqlx)?,
        filename: row.try_get(1).map_err(map_sqlx)?,
        size: u64::try_from(size)
            .map_err(|_| Error::corrupted(format!("documents.size is negative: {size}")))?,
        content_hash: row.try_get(3).map_err(map_sqlx)?,
        created_at: codec::from_unix_millis(created_at),
        metadata: metadata.0,
    })
}

fn session_row<R: Row>(row: &R) -> Result<Session>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let data: Json<serde_json::Value> = row.try_get(1).map_err(map_sqlx)?;
    let created_at: i64 = row.try_get(2).map_err(map_sqlx)?;
    let last_accessed: i64 = row.try_get(3).map_err(map_sqlx)?;
    let expires_at: i64 = row.try_get(4).map_err(map_sqlx)?;
    Ok(Session {
        session_id: row.try_get(0).map_err(map_sqlx)?,
        data: data.0,
        created_at: codec::from_unix_millis(created_at),
        last_accessed: codec::from_unix_millis(last_accessed),
        expires_at: codec::from_unix_millis(expires_at),
    })
}

fn setting_row<R: Row>(row: &R) -> Result<Setting>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let value: Json<serde_json::Value> = row.try_get(1).map_err(map_sqlx)?;
    let updated_at: i64 = row.try_get(2).map_err(map_sqlx)?;
    Ok(Setting {
        key: row.try_get(0).map_err(map_sqlx)?,
        value: value.0,
        updated_at: codec::from_unix_millis(updated_at),
    })
}
