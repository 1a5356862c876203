//! `Namespaced`: tenant isolation as a layer.

use std::ops::Bound;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::key::{Key, KeyRange, prefix_successor};
use crate::meta::{ObjectMeta, PutOptions};
use crate::store::{
    Capabilities, Entry, EntryStream, KvStore, MetaEntry, MetaStream, ValueReader, ValueStream,
};

/// Longest tenant name, in bytes.
pub const MAX_TENANT_LEN: usize = 64;

/// A tenant name: 1 to [`MAX_TENANT_LEN`] ASCII letters, digits, `_`, `-` or `.`.
///
/// The restricted alphabet is what makes isolation hold: the namespace prefix is
/// `t/<name>/` and `/` cannot occur in a name, so no tenant's prefix is a prefix of another's
/// (tenant `a` can never reach tenant `a/b` or `ab`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant name.
    ///
    /// # Errors
    /// `InvalidInput` if the name is empty, too long, or has a character outside
    /// `[A-Za-z0-9_.-]`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        Self::validate(&name)?;
        Ok(TenantId(name))
    }

    fn validate(name: &str) -> Result<()> {
        if name.is_empty() || name.len() > MAX_TENANT_LEN {
            return Err(Error::invalid_input(format!(
                "tenant name must be 1 to {MAX_TENANT_LEN} bytes, got {}",
                name.len()
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(Error::invalid_input(format!(
                "tenant name {name:?} contains {bad:?}; allowed are ASCII letters, digits, '_', '-', '.'"
            )));
        }
        Ok(())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant whose namespace holds `key` in an inner store under [`Namespaced`]
    /// (`t/<tenant>/…`), or `None` for a key outside every tenant's namespace.
    pub fn of_key(key: &Key) -> Option<TenantId> {
        Self::name_in_key(key).map(|name| TenantId(name.to_string()))
    }

    /// The name [`of_key`](Self::of_key) finds, borrowed from `key` (nothing allocated:
    /// what a per-operation caller such as the metrics layer needs).
    pub fn name_in_key(key: &Key) -> Option<&str> {
        let rest = key.as_bytes().strip_prefix(TENANT_KEY_PREFIX.as_bytes())?;
        let end = rest.iter().position(|&b| b == b'/')?;
        let name = std::str::from_utf8(&rest[..end]).ok()?;
        Self::validate(name).is_ok().then_some(name)
    }
}

/// What every tenant's keys start with in the inner store of [`Namespaced`]: a tenant's
/// prefix is `t/<tenant>/`.
pub const TENANT_KEY_PREFIX: &str = "t/";

/// A layer that confines every operation to one tenant's keys.
///
/// Keys are stored in the inner store as `t/<tenant>/<key>`. The layer prefixes every key
/// and every scan bound on the way in and strips the prefix on the way out; a scan range is
/// clamped to the tenant's prefix, so neither a crafted key nor a crafted range can read,
/// list or delete another tenant's data. Keys longer than
/// `inner max_key_len - prefix length` are `InvalidInput`.
///
/// ```
/// # futures::executor::block_on(async {
/// use hybridstore_core::{Key, KvStore, MemoryStore, Namespaced, TenantId};
/// let shared = MemoryStore::new();
/// let acme = Namespaced::new(shared.clone(), TenantId::new("acme")?);
/// let globex = Namespaced::new(shared.clone(), TenantId::new("globex")?);
/// acme.put(&Key::new("plan")?, "secret".into()).await?;
/// assert_eq!(globex.get(&Key::new("plan")?).await?, None);
/// assert!(shared.exists(&Key::new("t/acme/plan")?).await?);
/// # Ok::<(), hybridstore_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Namespaced<S> {
    inner: S,
    tenant: TenantId,
    prefix: Bytes,
}

impl<S: KvStore> Namespaced<S> {
    /// Confines `inner` to `tenant`.
    pub fn new(inner: S, tenant: TenantId) -> Self {
        let prefix = Bytes::from(format!("{TENANT_KEY_PREFIX}{}/", tenant.as_str()));
        Namespaced {
            inner,
            tenant,
            prefix,
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The inner store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn outer_key(&self, key: &Key) -> Result<Key> {
        let mut buf = BytesMut::with_capacity(self.prefix.len() + key.len());
        buf.extend_from_slice(&self.prefix);
        buf.extend_from_slice(key.as_bytes());
        let max = self.capabilities().max_key_len;
        if key.len() > max {
            return Err(Error::invalid_input(format!(
                "key is {} bytes long; tenant {:?} keys may be at most {max}",
                key.len(),
                self.tenant.as_str()
            ))
            .with_context("key", key));
        }
        Key::new(buf.freeze())
    }

    fn inner_key(&self, outer: Key) -> Result<Key> {
        let bytes = outer.into_bytes();
        if !bytes.starts_with(&self.prefix) {
            // The inner store returned a key outside the range it was asked for.
            return Err(Error::backend(
                "inner store returned a key outside the tenant's namespace",
            ));
        }
        Key::new(bytes.slice(self.prefix.len()..))
    }

    fn outer_range(&self, range: KeyRange) -> KeyRange {
        let with_prefix = |b: Bytes| {
            let mut buf = BytesMut::with_capacity(self.prefix.len() + b.len());
            buf.extend_from_slice(&self.prefix);
            buf.extend_from_slice(&b);
            buf.freeze()
        };
        let (start, end) = range.into_bounds();
        let start = match start {
            Bound::Included(s) => Bound::Included(with_prefix(s)),
            Bound::Excluded(s) => Bound::Excluded(with_prefix(s)),
            Bound::Unbounded => Bound::Included(self.prefix.clone()),
        };
        let end = match end {
            Bound::Included(e) => Bound::Included(with_prefix(e)),
            Bound::Excluded(e) => Bound::Excluded(with_prefix(e)),
            // The prefix ends in '/', so it always has a successor.
            Bound::Unbounded => match prefix_successor(&self.prefix) {
                Some(s) => Bound::Excluded(s),
                None => Bound::Unbounded,
            },
        };
        KeyRange::new(start, end)
    }
}

crate::kv_store_impl! {
    impl[S: KvStore] KvStore for Namespaced<S>;
    forward(inner): [];
    // Both scan this tenant's keys through the methods above (the inner store's figures
    // would count every tenant).
    provided: [clear, stats];
    {
        fn capabilities(&self) -> Capabilities {
            let inner = self.inner.capabilities();
            inner.with_max_key_len(inner.max_key_len.saturating_sub(self.prefix.len()))
        }

        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            self.inner.get(&self.outer_key(key)?).await
        }

        async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
            let outer = keys
                .iter()
                .map(|k| self.outer_key(k))
                .collect::<Result<Vec<_>>>()?;
            self.inner.get_many(&outer).await
        }

        async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
            self.inner.head(&self.outer_key(key)?).await
        }

        async fn exists(&self, key: &Key) -> Result<bool> {
            self.inner.exists(&self.outer_key(key)?).await
        }

        async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
            self.inner.get_range(&self.outer_key(key)?, range).await
        }

        async fn put_with(
            &self,
            key: &Key,
            value: Bytes,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.inner
                .put_with(&self.outer_key(key)?, value, options)
                .await
        }

        async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
            self.inner.put(&self.outer_key(key)?, value).await
        }

        async fn delete(&self, key: &Key) -> Result<()> {
            self.inner.delete(&self.outer_key(key)?).await
        }

        async fn get_stream(
            &self,
            key: &Key,
            range: Option<std::ops::Range<u64>>,
        ) -> Result<Option<ValueStream<'_>>> {
            self.inner.get_stream(&self.outer_key(key)?, range).await
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.inner
                .put_stream(&self.outer_key(key)?, reader, options)
                .await
        }

        fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
            self.inner
                .scan(self.outer_range(range), limit)
                .map(move |item| {
                    let e = item?;
                    Ok(Entry {
                        key: self.inner_key(e.key)?,
                        value: e.value,
                        meta: e.meta,
                    })
                })
                .boxed()
        }

        fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
            self.inner
                .scan_meta(self.outer_range(range), limit)
                .map(move |item| {
                    let e = item?;
                    Ok(MetaEntry {
                        key: self.inner_key(e.key)?,
                        meta: e.meta,
                    })
                })
                .boxed()
        }

        async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
            self.inner
                .list_keys(self.outer_range(range), limit)
                .await?
                .into_iter()
                .map(|k| self.inner_key(k))
                .collect()
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            let batch = batch.try_map_keys(|k| self.outer_key(k))?;
            self.inner.write_batch(batch).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn tenant_names_are_restricted() {
        for bad in ["", "a/b", "a\0", "ä", &"x".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TenantId::new("acme-corp_1.eu").is_ok());
    }

    #[test]
    fn a_namespaced_key_names_its_tenant() {
        let of = |k: &str| TenantId::of_key(&Key::new(k.to_string()).unwrap()).map(|t| t.0);
        assert_eq!(of("t/acme/a/b").as_deref(), Some("acme"));
        assert_eq!(of("t/acme/").as_deref(), Some("acme"));
        for outside in ["t/acme", "t//x", "t/a b/x", "x/acme/y", "tt/acme/y"] {
            assert_eq!(of(outside), None, "{outside}");
        }
    }

    #[tokio::test]
    async fn crafted_ranges_stay_inside_the_tenant() {
        let shared = MemoryStore::new();
        let a = Namespaced::new(shared.clone(), TenantId::new("a").unwrap());
        let ab = Namespaced::new(shared.clone(), TenantId::new("ab").unwrap());
        ab.put(&Key::new("x").unwrap(), "theirs".into())
            .await
            .unwrap();
        shared
            .put(&Key::new("t/a0").unwrap(), "outside".into())
            .await
            .unwrap();
        // Ranges whose bounds try to reach past the prefix.
        let ranges = [
            KeyRange::all(),
            KeyRange::new(
                Bound::Unbounded,
                Bound::Included(Bytes::from(vec![0xFF; 64])),
            ),
            KeyRange::between(Bytes::from_static(b"\0"), Bytes::from(vec![0xFF; 8])),
            KeyRange::prefix("../"),
        ];
        for r in ranges {
            assert!(
                a.list_keys(r.clone(), None).await.unwrap().is_empty(),
                "{r:?}"
            );
        }
        assert_eq!(a.clear().await.unwrap(), 0);
        assert_eq!(
            shared.list_keys(KeyRange::all(), None).await.unwrap().len(),
            2
        );
    }
}
