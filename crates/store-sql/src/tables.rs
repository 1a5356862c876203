//! Typed operational stores on the store's database: documents, sessions, settings. Each
//! is a small handle borrowed from [`SqlStore`]; every call is one statement (autocommit),
//! so each is atomic on its own.

use std::time::{Duration, SystemTime};

use hybridstore_core::{Error, Key, Result};
use serde::{Deserialize, Serialize};

use crate::SqlStore;

/// Longest `doc_id`, `session_id` or setting key, in bytes.
pub const MAX_ID_LEN: usize = 512;
/// Longest document filename, in bytes (Linux's `PATH_MAX`).
pub const MAX_FILENAME_LEN: usize = 4096;
/// Largest JSON payload (document metadata, session data, setting value), in bytes of its
/// serialized form.
pub const MAX_JSON_LEN: usize = 1024 * 1024;
/// Most rows one listing call returns; larger `limit`s are clamped to it.
pub const MAX_PAGE: usize = 10_000;
/// Ids one query of [`Documents::get_many`] asks for; longer lists take several.
pub const MAX_IDS_PER_QUERY: usize = 512;

/// A row of `documents`: what the system knows about one ingested document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Caller-chosen id, 1..=[`MAX_ID_LEN`] bytes.
    pub doc_id: String,
    /// Original file name or path, at most [`MAX_FILENAME_LEN`] bytes.
    pub filename: String,
    /// Size of the content, in bytes.
    pub size: u64,
    /// Hash of the content (usually SHA-256 hex), at most [`MAX_ID_LEN`] bytes; documents with
    /// equal hashes are duplicates.
    pub content_hash: String,
    /// When the document was first recorded (stored in milliseconds; kept on update).
    pub created_at: SystemTime,
    /// Free-form JSON, at most [`MAX_JSON_LEN`] bytes serialized.
    pub metadata: serde_json::Value,
}

/// A row of `sessions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Session id, 1..=[`MAX_ID_LEN`] bytes.
    pub session_id: String,
    /// Free-form JSON, at most [`MAX_JSON_LEN`] bytes serialized.
    pub data: serde_json::Value,
    /// When the session was created (milliseconds precision).
    pub created_at: SystemTime,
    /// Last [`Sessions::put`] or [`Sessions::touch`].
    pub last_accessed: SystemTime,
    /// After this instant the session reads as absent and [`Sessions::delete_expired`]
    /// removes it.
    pub expires_at: SystemTime,
}

/// A row of `settings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Setting name, 1..=[`MAX_ID_LEN`] bytes.
    pub key: String,
    /// Its JSON value, at most [`MAX_JSON_LEN`] bytes serialized.
    pub value: serde_json::Value,
    /// When it was last set (milliseconds precision).
    pub updated_at: SystemTime,
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(Error::invalid_input(format!(
            "{what} must be 1..={MAX_ID_LEN} bytes, got {}",
            id.len()
        )));
    }
    if id.contains('\0') {
        return Err(Error::invalid_input(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

fn check_json(what: &str, value: &serde_json::Value) -> Result<()> {
    let len = serde_json::to_vec(value)
        .map_err(|e| Error::invalid_input(format!("{what} is not serializable: {e}")))?
        .len();
    if len > MAX_JSON_LEN {
        return Err(Error::invalid_input(format!(
            "{what} is {len} bytes of JSON; the maximum is {MAX_JSON_LEN}"
        )));
    }
    Ok(())
}

fn page(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

/// The smallest string greater than every string starting with `prefix`, or `None` if there
/// is none (empty prefix, or only `char::MAX`). Used for prefix ranges in "C" collation.
pub(crate) fn string_prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // Skip the surrogate gap: the next scalar value after U+D7FF is U+E000.
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The `documents` table, seen by one tenant (or by no tenant). Obtained from
/// [`SqlStore::documents`] (the rows of no tenant) or [`SqlStore::tenant_documents`].
///
/// Rows are keyed by (tenant, `doc_id`): every call reads and writes only its tenant's rows,
/// and two tenants may hold the same `doc_id`.
#[derive(Clone, Copy, Debug)]
pub struct Documents<'a> {
    pub(crate) store: &'a SqlStore,
    /// The tenant's name, "" for the rows of no tenant.
    pub(crate) tenant: &'a str,
}

impl Documents<'_> {
    /// Inserts `doc`, or updates every field but `created_at` if `doc_id` exists.
    ///
    /// # Errors
    /// `InvalidInput` if an id, the filename or the metadata exceed their limits or contain
    /// NUL; `Unavailable`/`Timeout` when the database cannot be reached.
    pub async fn put(&self, doc: &Document) -> Result<()> {
        check_id("doc_id", &doc.doc_id)?;
        check_id("content_hash", &doc.content_hash)?;
        if doc.filename.len() > MAX_FILENAME_LEN || doc.filename.contains('\0') {
            return Err(Error::invalid_input(format!(
                "filename must be at most {MAX_FILENAME_LEN} bytes without NUL"
            )));
        }
        check_json("document metadata", &doc.metadata)?;
        self.store.engine.upsert_document(self.tenant, doc).await
    }

    /// The document `doc_id`, if recorded.
    pub async fn get(&self, doc_id: &str) -> Result<Option<Document>> {
        check_id("doc_id", doc_id)?;
        self.store.engine.document(self.tenant, doc_id).await
    }

    /// Removes the document; returns whether it existed.
    pub async fn delete(&self, doc_id: &str) -> Result<bool> {
        check_id("doc_id", doc_id)?;
        self.store.engine.delete_document(self.tenant, doc_id).await
    }

    /// Documents whose `content_hash` equals `content_hash` (duplicates of one content),
    /// ordered by `doc_id`, at most `limit` (clamped to 1..=[`MAX_PAGE`]).
    pub async fn by_content_hash(&self, content_hash: &str, limit: usize) -> Result<Vec<Document>> {
        check_id("content_hash", content_hash)?;
        self.store
            .engine
            .documents_by_content_hash(self.tenant, content_hash, page(limit))
            .await
    }

    /// Documents whose filename starts with `prefix` (byte-wise; no wildcards), ordered by
    /// `(filename, doc_id)`. Pass the last document of a page as `after` to get the next page.
    pub async fn by_filename_prefix(
        &self,
        prefix: &str,
        after: Option<&Document>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let after = after.map(|d| (d.filename.as_str(), d.doc_id.as_str()));
        self.store
            .engine
            .documents_by_filename_prefix(self.tenant, prefix, after, page(limit))
            .await
    }

    /// All documents ordered by `doc_id`, starting after `after_doc_id` (keyset paging: pass
    /// the last id of the previous page).
    pub async fn list(&self, after_doc_id: Option<&str>, limit: usize) -> Result<Vec<Document>> {
        self.store
            .engine
            .documents_page(self.tenant, after_doc_id, page(limit))
            .await
    }

    /// The documents of `ids` that are recorded, in any order (missing ones are left out),
    /// with one query per [`MAX_IDS_PER_QUERY`] ids.
    ///
    /// # Errors
    /// `InvalidInput` if an id is empty, over [`MAX_ID_LEN`] bytes or contains NUL;
    /// `Unavailable`/`Timeout` when the database cannot be reached.
    pub async fn get_many(&self, ids: &[&str]) -> Result<Vec<Document>> {
        let keys = ids
            .iter()
            .map(|id| {
                check_id("doc_id", id)?;
                Key::new(id.as_bytes().to_vec())
            })
            .collect::<Result<Vec<Key>>>()?;
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_IDS_PER_QUERY) {
            found.extend(self.store.engine.documents_in(self.tenant, chunk).await?);
        }
        Ok(found)
    }

    /// Number of documents.
    pub async fn count(&self) -> Result<u64> {
        self.store.engine.count_documents(self.tenant).await
    }
}

/// The `sessions` table, with expiry, seen by one tenant (or by no tenant). Obtained from
/// [`SqlStore::sessions`] (the sessions of no tenant) or [`SqlStore::tenant_sessions`].
///
/// Rows are keyed by (tenant, `session_id`), as in [`Documents`].
#[derive(Clone, Copy, Debug)]
pub struct Sessions<'a> {
    pub(crate) store: &'a SqlStore,
    /// The tenant's name, "" for the sessions of no tenant.
    pub(crate) tenant: &'a str,
}

impl Sessions<'_> {
    /// Creates or replaces session `session_id` with `data`, expiring `ttl` from now.
    /// Replacing keeps the original `created_at`.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid id, oversized data or a `ttl` beyond year 2262.
    pub async fn put(
        &self,
        session_id: &str,
        data: &serde_json::Value,
        ttl: Duration,
    ) -> Result<Session> {
        check_id("session_id", session_id)?;
        check_json("session data", data)?;
        let now = SystemTime::now();
        let expires_at = now
            .checked_add(ttl)
            .ok_or_else(|| Error::invalid_input("session ttl overflows the clock"))?;
        let session = Session {
            session_id: session_id.to_string(),
            data: data.clone(),
            created_at: now,
            last_accessed: now,
            expires_at,
        };
        self.store
            .engine
            .upsert_session(self.tenant, &session)
            .await?;
        self.get(session_id)
            .await?
            .ok_or_else(|| Error::conflict("session was deleted or expired while being written"))
    }

    /// The session, if it exists and has not expired.
    pub async fn get(&self, session_id: &str) -> Result<Option<Session>> {
        check_id("session_id", session_id)?;
        self.store
            .engine
            .session(self.tenant, session_id, SystemTime::now())
            .await
    }

    /// Extends a live session to expire `ttl` from now; returns false if there is no live
    /// session (an expired one is not revived).
    pub async fn touch(&self, session_id: &str, ttl: Duration) -> Result<bool> {
        check_id("session_id", session_id)?;
        let now = SystemTime::now();
        let expires_at = now
            .checked_add(ttl)
            .ok_or_else(|| Error::invalid_input("session ttl overflows the clock"))?;
        self.store
            .engine
            .touch_session(self.tenant, session_id, now, expires_at)
            .await
    }

    /// Removes the session; returns whether it existed (expired or not).
    pub async fn delete(&self, session_id: &str) -> Result<bool> {
        check_id("session_id", session_id)?;
        self.store
            .engine
            .delete_session(self.tenant, session_id)
            .await
    }

    /// Number of live (unexpired) sessions.
    ///
    /// # Errors
    /// Errors of the database.
    pub async fn count(&self) -> Result<u64> {
        self.store
            .engine
            .count_sessions(self.tenant, SystemTime::now())
            .await
    }

    /// Removes every session whose expiry has passed, of every tenant; returns how many.
    /// Call it periodically (expired sessions already read as absent, so this only reclaims
    /// space).
    pub async fn delete_expired(&self) -> Result<u64> {
        self.store
            .engine
            .delete_expired_sessions(SystemTime::now())
            .await
    }
}

/// The `settings` table: named JSON values. Obtained from [`SqlStore::settings`].
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    pub(crate) store: &'a SqlStore,
}

impl Settings<'_> {
    /// Sets `key` to `value` and `updated_at` to now.
    pub async fn set(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        check_id("setting key", key)?;
        check_json("setting value", value)?;
        self.store
            .engine
            .set_setting(key, value, SystemTime::now())
            .await
    }

    /// The setting, if set.
    pub async fn get(&self, key: &str) -> Result<Option<Setting>> {
        check_id("setting key", key)?;
        self.store.engine.setting(key).await
    }

    /// Removes the setting; returns whether it was set.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        check_id("setting key", key)?;
        self.store.engine.delete_setting(key).await
    }

    /// Every setting, ordered by key.
    pub async fn list(&self) -> Result<Vec<Setting>> {
        self.store.engine.all_settings().await
    }
}

#[cfg(test)]
mod tests {
    use super::string_prefix_successor;

    #[test]
    fn prefix_successor_orders_after_every_extension() {
        assert_eq!(string_prefix_successor("docs/").as_deref(), Some("docs0"));
        assert_eq!(string_prefix_successor(""), None);
        assert_eq!(
            string_prefix_successor("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(string_prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        for s in ["docs/", "docs/zzz", "docs/\u{10FFFF}"] {
            assert!(s < string_prefix_successor("docs/").unwrap().as_str());
        }
    }
}
