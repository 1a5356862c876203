//! [`VectorStore`] for [`LanceVectorStore`]: collections, writes, reads and k-NN search.

use super::*;

#[async_trait]
impl VectorStore for LanceVectorStore {
    /// Durable (Lance files), text-only collections (full-text search), expiry (searches
    /// filter on `expires_at`), IVF vector indexes.
    fn capabilities(&self) -> VectorCapabilities {
        VectorCapabilities::new()
            .with_durable(true)
            .with_text_only_collections(true)
            .with_expiry(true)
            .with_vector_indexes(true)
    }

    async fn create_collection(&self, spec: &CollectionSpec) -> Result<CollectionInfo> {
        spec.validate()?;
        let arrow = schema::arrow_schema(spec)?;
        match self
            .db
            .create_empty_table(&spec.name, arrow)
            .execute()
            .await
        {
            Ok(_) => {}
            Err(lancedb::Error::TableAlreadyExists { .. }) => {
                let (_, existing, _) = self.table(&spec.name).await?;
                if *existing != *spec {
                    return Err(Error::conflict(format!(
                        "collection {:?} exists with another spec: {existing:?}",
                        spec.name
                    )));
                }
            }
            Err(e) => return Err(lance_error(e)),
        }
        self.describe_collection(&spec.name).await
    }

    /// LanceDB lists the `<name>.lance` directories under the root. An S3-compatible server
    /// with real directories (SeaweedFS's filer) keeps a dropped table's empty directory, so
    /// each listed name is kept only if its table opens.
    async fn list_collections(&self) -> Result<Vec<String>> {
        let listed = self.db.table_names().execute().await.map_err(lance_error)?;
        let mut names = Vec::with_capacity(listed.len());
        for name in listed {
            match self.table(&name).await {
                Ok(_) => names.push(name),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        names.sort();
        Ok(names)
    }

    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo> {
        let (table, spec, _) = self.table(name).await?;
        let rows = match self.count_in(&table, &spec, None).await {
            Ok(rows) => rows,
            Err(e) => {
                if e.kind() == ErrorKind::NotFound {
                    // Dropped elsewhere: forget the handle so a re-created table is found.
                    self.tables
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(name);
                }
                return Err(e.with_context("collection", name));
            }
        };
        let mut indexes: Vec<String> = table
            .list_indices()
            .await
            .map_err(lance_error)?
            .into_iter()
            .map(|i| i.name)
            .collect();
        indexes.sort();
        Ok(CollectionInfo {
            spec: (*spec).clone(),
            rows,
            indexes,
        })
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        validate_collection_name(name)?;
        // LanceDB drops a missing table without complaint on object stores (deleting nothing
        // succeeds there): the contract's `NotFound` comes from opening it first.
        self.table(name).await?;
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        self.db
            .drop_table(name, &[])
            .await
            .map_err(|e| lance_error(e).with_context("collection", name))
    }

    async fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let (table, spec, _) = self.table(collection).await?;
        self.count_in(&table, &spec, filter).await
    }

    async fn add(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()> {
        let (table, spec, schema) = self.table(collection).await?;
        self.validate_records(&spec, &records)?;
        if records.is_empty() {
            return Ok(());
        }
        let _quota = self.quota_guard(collection).await;
        self.check_quota(&table, &spec, records.len() as u64)
            .await?;
        let batch = self.batch(schema, &spec, &records)?;
        table.add(batch).execute().await.map_err(lance_error)?;
        Ok(())
    }

    async fn upsert(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()> {
        let (table, spec, schema) = self.table(collection).await?;
        self.validate_records(&spec, &records)?;
        if records.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::with_capacity(records.len());
        if let Some(twice) = records.iter().find(|r| !seen.insert(r.id.as_str())) {
            return Err(Error::invalid_input(format!(
                "upsert names id {:?} twice; which record should win is ambiguous",
                twice.id
            )));
        }
        let quota = self.quota_guard(collection).await;
        if quota.is_some() {
            let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
            let existing = self
                .count_in(&table, &spec, Some(&Filter::is_in("id", ids)))
                .await?;
            let new_rows = (records.len() as u64).saturating_sub(existing);
            self.check_quota(&table, &spec, new_rows).await?;
        }
        let batch = self.batch(schema.clone(), &spec, &records)?;
        let on: &[&str] = if self.scope.is_some() {
            &["tenant", "id"]
        } else {
            &["id"]
        };
        let mut merge = table.merge_insert(on);
        merge
            .when_matched_update_all(None)
            .when_not_matched_insert_all();
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
        merge.execute(Box::new(reader)).await.map_err(lance_error)?;
        Ok(())
    }

    async fn delete_ids(&self, collection: &str, ids: &[String]) -> Result<u64> {
        let (table, spec, _) = self.table(collection).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let filter = Filter::is_in("id", ids.iter().cloned());
        let Some(expr) = self.predicate(&spec, Some(&filter), false)? else {
            return Ok(0);
        };
        self.delete_in(&table, expr).await
    }

    async fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let (table, spec, _) = self.table(collection).await?;
        let Some(expr) = self.predicate(&spec, Some(filter), false)? else {
            return Ok(0);
        };
        self.delete_in(&table, expr).await
    }

    async fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let (table, spec, _) = self.table(collection).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = Filter::is_in("id", ids.iter().cloned());
        let mut q = table.query();
        if let Some(expr) = self.predicate(&spec, Some(&filter), false)? {
            q = q.only_if_expr(expr);
        }
        let batches = self
            .collect(q.execute().await.map_err(lance_error)?)
            .await?;
        let mut out = Vec::new();
        for batch in &batches {
            let columns = schema::Columns::new(batch);
            out.extend((0..batch.num_rows()).filter_map(|row| columns.record(&spec, row)));
        }
        Ok(out)
    }

    async fn search(&self, collection: &str, query: &VectorQuery) -> Result<Vec<SearchHit>> {
        check_k(query.k)?;
        let (table, spec, schema) = self.table(collection).await?;
        check_vector(&query.vector, spec.dimension, spec.distance)?;
        // Every column but the vectors, which hits do not carry (k × dimension floats less
        // to read and copy per query).
        let returned: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| *name != "vector")
            .collect();
        let mut q = table
            .query()
            .select(Select::columns(&returned))
            .nearest_to(query.vector.as_slice())
            .map_err(lance_error)?
            .column("vector")
            .distance_type(distance_type(spec.distance))
            .limit(query.k);
        if let Some(expr) = self.predicate(&spec, query.filter.as_ref(), true)? {
            q = q.only_if_expr(expr);
        }
        if query.postfilter {
            q = q.postfilter();
        }
        if query.exact {
            q = q.bypass_vector_index();
        }
        if let Some(n) = query.nprobes {
            q = q.nprobes(n).map_err(lance_error)?;
        }
        if let Some(ef) = query.ef {
            q = q.ef(ef);
        }
        if let Some(r) = query.refine_factor {
            q = q.refine_factor(r);
        }
        let batches = self
            .collect(q.execute().await.map_err(lance_error)?)
            .await?;
        Ok(hits(&spec, &batches, "_distance"))
    }
}
