//! The key/value operations on `kv_objects`.

use super::*;

#[async_trait]
impl<D: Dialect> KvEngine for Engine<D>
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
    fn backend(&self) -> SqlBackend {
        D::BACKEND
    }

    /// The read-only connections first, the writer last: SQLite folds the write-ahead log
    /// into the database file and removes it when the last connection closes, unless that
    /// connection is read-only (<https://www.sqlite.org/wal.html#the_wal_file>).
    async fn copy_into(&self, path: &str) -> Result<()> {
        D::copy_into(&self.reader, path).await
    }

    async fn snapshot(&self) -> Result<Box<dyn SnapshotEngine>> {
        Ok(Box::new(self.begin_snapshot().await?))
    }

    async fn close(&self) {
        if let Some(inline) = &self.inline_reader {
            inline.close();
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        if let Some(reader) = &self.inline_reader
            && let crate::inline_reads::InlineRead::Done(value) = reader.get(key)?
        {
            return Ok(value);
        }
        value_by_key(&self.reader, key, self.verify_reads).await
    }

    /// `range` of the value of `key`, cut by the database (`substr` on a BLOB / `bytea`
    /// counts bytes, 1-based, in both dialects) so only the range travels.
    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
        // Values are at most MAX_VALUE_LEN (512 MiB) bytes, so valid offsets fit in i32, the
        // type PostgreSQL's substr takes.
        let (Ok(start), Ok(count)) = (
            i32::try_from(range.start.saturating_add(1)),
            i32::try_from(range.end.saturating_sub(range.start)),
        ) else {
            return Err(Error::invalid_input(format!(
                "byte range {}..{} is beyond any value this store holds",
                range.start, range.end
            )));
        };
        let row: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT CAST(length(value) AS BIGINT), substr(value, $2, $3) \
             FROM kv_objects WHERE key = $1",
        )
        .bind(key.as_bytes())
        .bind(start)
        .bind(count)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_sqlx)?;
        let Some((len, part)) = row else {
            return Ok(None);
        };
        hybridstore_core::raw::check_range(&range, u64::try_from(len).unwrap_or(0))?;
        Ok(Some(codec::bytes(part.unwrap_or_default())))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let row = sqlx::query(META_BY_KEY)
            .bind(key.as_bytes())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_sqlx)?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(meta_row(&row).map_err(map_sqlx)?.into_parts()?.1)),
        }
    }

    async fn put(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        let mut meta = ObjectMeta::for_value(&value, options, None);
        // An overwrite keeps the row's `created` unless the caller gave one.
        let statement = if options.created.is_some() {
            concat!(
                "INSERT INTO kv_objects \
                 (key, value, size, created, modified, checksum, content_type, dedup_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                upsert_on_conflict_with_created!(),
                " RETURNING created"
            )
        } else {
            concat!(
                "INSERT INTO kv_objects \
                 (key, value, size, created, modified, checksum, content_type, dedup_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                upsert_on_conflict!(),
                " RETURNING created"
            )
        };
        let created: i64 = sqlx::query_scalar(statement)
            .bind(key.as_bytes())
            .bind(value.as_ref())
            .bind(size_param(meta.size)?)
            .bind(codec::to_unix_nanos(meta.created))
            .bind(codec::to_unix_nanos(meta.modified))
            .bind(meta.checksum.to_hex())
            .bind(meta.content_type.clone())
            .bind(dedup_param(&meta))
            .fetch_one(&self.writer)
            .await
            .map_err(map_sqlx)?;
        meta.created = codec::from_unix_nanos(created);
        Ok(meta)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        sqlx::query("DELETE FROM kv_objects WHERE key = $1")
            .bind(key.as_bytes())
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    /// Keys and metadata in `range`, in key order, at most `limit`.
    async fn meta_page(&self, range: &SqlRange, limit: usize) -> Result<Vec<MetaEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match &range.end {
            Some(end) => sqlx::query(
                "SELECT key, size, created, modified, checksum, content_type, dedup_hash \
                 FROM kv_objects WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
            )
            .bind(range.start.clone())
            .bind(end.clone())
            .bind(limit),
            None => sqlx::query(
                "SELECT key, size, created, modified, checksum, content_type, dedup_hash \
                 FROM kv_objects WHERE key >= $1 ORDER BY key LIMIT $2",
            )
            .bind(range.start.clone())
            .bind(limit),
        };
        query
            .fetch(&self.reader)
            .map_err(map_sqlx)
            .and_then(|row| async move {
                let (key, meta) = meta_row(&row).map_err(map_sqlx)?.into_parts()?;
                Ok(MetaEntry { key, meta })
            })
            .try_collect()
            .await
    }

    /// Entries with values for keys in `[first, last]`, in key order.
    async fn entries_between(&self, first: &Key, last: &Key) -> Result<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT key, size, created, modified, checksum, content_type, dedup_hash, value \
             FROM kv_objects WHERE key >= $1 AND key <= $2 ORDER BY key",
        )
        .bind(first.as_bytes())
        .bind(last.as_bytes())
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|row| entry_row(row, self.verify_reads))
            .collect()
    }

    /// Values of up to [`KEYS_PER_STATEMENT`] keys in one statement, in the order asked.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        debug_assert!(keys.len() <= KEYS_PER_STATEMENT);
        let mut found: HashMap<Vec<u8>, Bytes> = HashMap::with_capacity(keys.len());
        if self.verify_reads {
            let rows = sqlx::query(D::SELECT_ENTRIES_IN_LIST)
                .bind(D::key_list_param(keys))
                .fetch_all(&self.reader)
                .await
                .map_err(map_sqlx)?;
            for row in &rows {
                let entry = entry_row(row, true)?;
                found.insert(entry.key.as_bytes().to_vec(), entry.value);
            }
        } else {
            let rows = sqlx::query(D::SELECT_VALUES_IN_LIST)
                .bind(D::key_list_param(keys))
                .fetch_all(&self.reader)
                .await
                .map_err(map_sqlx)?;
            for row in &rows {
                let key: Vec<u8> = row.try_get(0).map_err(map_sqlx)?;
                let value: Vec<u8> = row.try_get(1).map_err(map_sqlx)?;
                found.insert(key, codec::bytes(value));
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k.as_bytes()).cloned())
            .collect())
    }

    /// Applies `plan` in one transaction: checks, then deletes, then puts.
    async fn write_batch(&self, plan: BatchPlan) -> Result<()> {
        let mut tx = D::begin_write(&self.writer, !plan.checks.is_empty()).await?;
        for (key, expect) in &plan.checks {
            let row = sqlx::query(META_BY_KEY)
                .bind(key.as_bytes())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            let current = match row {
                None => None,
                Some(row) => Some(meta_row(&row).map_err(map_sqlx)?.into_parts()?.1),
            };
            if !expect.holds(current.as_ref()) {
                return Err(hybridstore_core::raw::conflict(key, expect));
            }
        }

        let now = SystemTime::now();
        let mut deletes = Vec::new();
        // Puts whose caller gave `created` replace an existing row's; the others keep it.
        let (mut keep_created, mut replace_created) = (Vec::new(), Vec::new());
        for (key, mutation) in plan.writes {
            match mutation {
                Mutation::Delete => deletes.push(key),
                Mutation::Put { value, options } => {
                    let meta = ObjectMeta::for_value(&value, &options, Some(now));
                    let meta = ObjectMeta {
                        modified: options.modified.unwrap_or(now),
                        ..meta
                    };
                    if options.created.is_some() {
                        replace_created.push((key, value, meta));
                    } else {
                        keep_created.push((key, value, meta));
                    }
                }
            }
        }
        for chunk in deletes.chunks(KEYS_PER_STATEMENT) {
            sqlx::query(D::DELETE_IN_LIST)
                .bind(D::key_list_param(chunk))
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
        }
        for (puts, replace) in [(keep_created, false), (replace_created, true)] {
            let mut rest = puts.as_slice();
            while !rest.is_empty() {
                // Statement sizes are powers of two so at most 2 × (log2(64) + 1) distinct
                // statements enter each connection's statement cache.
                let rows = prev_power_of_two(rest.len().min(INSERT_ROWS_PER_STATEMENT));
                let (chunk, tail) = rest.split_at(rows);
                let mut query = sqlx::query(AssertSqlSafe(multi_row_upsert(rows, replace)));
                for (key, value, meta) in chunk {
                    query = query
                        .bind(key.as_bytes())
                        .bind(value.as_ref())
                        .bind(size_param(meta.size)?)
                        .bind(codec::to_unix_nanos(meta.created))
                        .bind(codec::to_unix_nanos(meta.modified))
                        .bind(meta.checksum.to_hex())
                        .bind(meta.content_type.clone())
                        .bind(dedup_param(meta));
                }
                query.execute(&mut *tx).await.map_err(map_sqlx)?;
                rest = tail;
            }
        }
        tx.commit().await.map_err(map_sqlx)
    }

    async fn clear(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM kv_objects")
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let (keys, logical_bytes): (i64, i64) = sqlx::query_as(D::COUNT_AND_SUM_SIZES)
            .fetch_one(&self.reader)
            .await
            .map_err(map_sqlx)?;
        let stored: i64 = sqlx::query_scalar(D::STORED_BYTES)
            .fetch_one(&self.reader)
            .await
            .map_err(map_sqlx)?;
        Ok(StoreStats {
            keys: u64::try_from(keys).unwrap_or(0),
            logical_bytes: u64::try_from(logical_bytes).unwrap_or(0),
            stored_bytes: u64::try_from(stored).ok(),
            ..StoreStats::default()
        })
    }

    /// Keys whose value has this SHA-256 checksum (duplicates of one content), in key order.
    async fn keys_with_checksum(&self, checksum: &Sha256Digest, limit: usize) -> Result<Vec<Key>> {
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT key FROM kv_objects WHERE checksum = $1 ORDER BY key LIMIT $2",
        )
        .bind(checksum.to_hex())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        keys.into_iter()
            .map(|k| Key::new(k).map_err(|e| Error::corrupted(e.message().to_string())))
            .collect()
    }
}
