//! Reads inside one read transaction: a consistent point in time of the whole database.

use super::*;

/// One read transaction, held on a reader connection until it is finished or dropped.
pub(crate) struct SnapshotTx<D: Dialect> {
    pub(crate) tx: Transaction<'static, D::Db>,
    pub(crate) verify_reads: bool,
}

impl<D: Dialect> Engine<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    /// A read transaction whose snapshot is taken before this returns: SQLite's deferred
    /// transaction takes it at its first read, PostgreSQL's `REPEATABLE READ` at its first
    /// statement after `SET TRANSACTION`.
    pub(crate) async fn begin_snapshot(&self) -> Result<SnapshotTx<D>> {
        let mut tx = self.reader.begin().await.map_err(map_sqlx)?;
        if D::BACKEND == SqlBackend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
        }
        sqlx::query("SELECT 1 FROM kv_objects LIMIT 1")
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        Ok(SnapshotTx {
            tx,
            verify_reads: self.verify_reads,
        })
    }
}

#[async_trait]
impl<D: Dialect> SnapshotEngine for SnapshotTx<D>
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
    for<'q> Json<serde_json::Value>: Decode<'q, D::Db> + Type<D::Db>,
{
    async fn get(&mut self, key: &Key) -> Result<Option<Bytes>> {
        value_by_key(&mut *self.tx, key, self.verify_reads).await
    }

    async fn key_count(&mut self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kv_objects")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_sqlx)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn document(&mut self, doc_id: &str) -> Result<Option<Document>> {
        // The rows of no tenant, as `SqlStore::documents` sees them.
        let row = sqlx::query(DOCUMENT_BY_ID)
            .bind(doc_id)
            .bind("")
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| tables::document_row(&r)).transpose()
    }

    async fn count_documents(&mut self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(COUNT_DOCUMENTS)
            .bind("")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_sqlx)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        self.tx.rollback().await.map_err(map_sqlx)
    }
}
