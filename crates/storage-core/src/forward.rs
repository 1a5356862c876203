//! [`kv_store_impl!`](crate::kv_store_impl): a wrapper's `impl KvStore` in which every
//! method of the trait is decided.

/// Implements [`KvStore`](crate::KvStore) for a wrapper (a layer, a test probe) from three
/// lists that together must name every method of the trait:
///
/// - the methods written out in the body (what the wrapper changes);
/// - `forward(field)`: methods passed unchanged to `self.field` (any `KvStore`), which keeps
///   the inner store's own implementation — its batched `get_many`, its ranged reads;
/// - `provided`: methods given the trait's default body from
///   [`raw::provided`](crate::raw::provided), for a wrapper whose semantics need it (a tenant
///   scope's `stats` counts the tenant's keys, not the inner store's).
///
/// The generated impl denies clippy's `missing_trait_methods` (as object_store's wrappers in
/// `prefix.rs`, `limit.rs` and `throttle.rs` do), so a method added to the trait, or one left
/// out of all three lists, fails `cargo clippy` instead of silently taking the default. The
/// body is an ordinary `#[async_trait]` impl body.
///
/// ```
/// use hybridstore_core::{Key, KvStore, MemoryStore, ObjectMeta, PutOptions, Result};
/// use hybridstore_core::Bytes;
///
/// /// Counts puts; everything else is the inner store's.
/// #[derive(Debug, Default)]
/// struct CountingPuts {
///     inner: MemoryStore,
///     puts: std::sync::atomic::AtomicU64,
/// }
///
/// hybridstore_core::kv_store_impl! {
///     impl[] KvStore for CountingPuts;
///     forward(inner): [capabilities, get, head, delete, scan, scan_meta, write_batch,
///         get_range, exists, list_keys, get_many, clear, stats];
///     provided: [put];
///     {
///         async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions)
///             -> Result<ObjectMeta>
///         {
///             self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///             self.inner.put_with(key, value, options).await
///         }
///     }
/// }
/// # futures::executor::block_on(async {
/// let store = CountingPuts::default();
/// store.put(&Key::new("a")?, "1".into()).await?; // `put` reaches `put_with`
/// assert_eq!(store.puts.load(std::sync::atomic::Ordering::Relaxed), 1);
/// # Ok::<(), hybridstore_core::Error>(())
/// # }).unwrap();
/// ```
#[macro_export]
macro_rules! kv_store_impl {
    (
        impl[$($gen:tt)*] KvStore for $ty:ty $(where [$($bound:tt)*])?;
        forward($inner:ident): [$($fwd:ident),* $(,)?];
        provided: [$($def:ident),* $(,)?];
        { $($body:tt)* }
    ) => {
        $crate::kv_store_impl!(@munch
            [$($gen)*] [$ty] [$($($bound)*)?] $inner
            [$($fwd)*] [$($def)*] [$($body)*]
        );
    };

    // Forwarded methods, one at a time.
    (@munch $g:tt $t:tt $w:tt $inner:ident [capabilities $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            fn capabilities(&self) -> $crate::Capabilities { self.$inner.capabilities() }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [get $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn get(&self, key: &$crate::Key) -> $crate::Result<Option<$crate::Bytes>> {
                self.$inner.get(key).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [head $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn head(&self, key: &$crate::Key) -> $crate::Result<Option<$crate::ObjectMeta>> {
                self.$inner.head(key).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [put_with $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn put_with(
                &self,
                key: &$crate::Key,
                value: $crate::Bytes,
                options: &$crate::PutOptions,
            ) -> $crate::Result<$crate::ObjectMeta> {
                self.$inner.put_with(key, value, options).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [delete $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn delete(&self, key: &$crate::Key) -> $crate::Result<()> {
                self.$inner.delete(key).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [scan $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            fn scan(&self, range: $crate::KeyRange, limit: Option<usize>) -> $crate::EntryStream<'_> {
                self.$inner.scan(range, limit)
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [scan_meta $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            fn scan_meta(&self, range: $crate::KeyRange, limit: Option<usize>) -> $crate::MetaStream<'_> {
                self.$inner.scan_meta(range, limit)
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [write_batch $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn write_batch(&self, batch: $crate::WriteBatch) -> $crate::Result<()> {
                self.$inner.write_batch(batch).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [put $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn put(&self, key: &$crate::Key, value: $crate::Bytes) -> $crate::Result<$crate::ObjectMeta> {
                self.$inner.put(key, value).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [get_range $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn get_range(
                &self,
                key: &$crate::Key,
                range: ::std::ops::Range<u64>,
            ) -> $crate::Result<Option<$crate::Bytes>> {
                self.$inner.get_range(key, range).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [exists $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn exists(&self, key: &$crate::Key) -> $crate::Result<bool> {
                self.$inner.exists(key).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [list_keys $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn list_keys(
                &self,
                range: $crate::KeyRange,
                limit: Option<usize>,
            ) -> $crate::Result<Vec<$crate::Key>> {
                self.$inner.list_keys(range, limit).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [get_stream $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn get_stream(
                &self,
                key: &$crate::Key,
                range: Option<::std::ops::Range<u64>>,
            ) -> $crate::Result<Option<$crate::ValueStream<'_>>> {
                self.$inner.get_stream(key, range).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [put_stream $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn put_stream(
                &self,
                key: &$crate::Key,
                reader: $crate::ValueReader<'_>,
                options: &$crate::PutOptions,
            ) -> $crate::Result<$crate::ObjectMeta> {
                self.$inner.put_stream(key, reader, options).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [get_many $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn get_many(&self, keys: &[$crate::Key]) -> $crate::Result<Vec<Option<$crate::Bytes>>> {
                self.$inner.get_many(keys).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [clear $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn clear(&self) -> $crate::Result<u64> {
                self.$inner.clear().await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [stats $($fwd:ident)*] $def:tt [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [$($fwd)*] $def [$($acc)*
            async fn stats(&self) -> $crate::Result<$crate::StoreStats> {
                self.$inner.stats().await
            }
        ]);
    };

    // Provided methods, one at a time (the trait's own defaults, named).
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [scan_meta $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            fn scan_meta(&self, range: $crate::KeyRange, limit: Option<usize>) -> $crate::MetaStream<'_> {
                $crate::raw::provided::scan_meta(self, range, limit)
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [put $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn put(&self, key: &$crate::Key, value: $crate::Bytes) -> $crate::Result<$crate::ObjectMeta> {
                $crate::raw::provided::put(self, key, value).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [get_range $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn get_range(
                &self,
                key: &$crate::Key,
                range: ::std::ops::Range<u64>,
            ) -> $crate::Result<Option<$crate::Bytes>> {
                $crate::raw::provided::get_range(self, key, range).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [exists $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn exists(&self, key: &$crate::Key) -> $crate::Result<bool> {
                $crate::raw::provided::exists(self, key).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [list_keys $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn list_keys(
                &self,
                range: $crate::KeyRange,
                limit: Option<usize>,
            ) -> $crate::Result<Vec<$crate::Key>> {
                $crate::raw::provided::list_keys(self, range, limit).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [get_stream $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn get_stream(
                &self,
                key: &$crate::Key,
                range: Option<::std::ops::Range<u64>>,
            ) -> $crate::Result<Option<$crate::ValueStream<'_>>> {
                $crate::raw::provided::get_stream(self, key, range).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [put_stream $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn put_stream(
                &self,
                key: &$crate::Key,
                reader: $crate::ValueReader<'_>,
                options: &$crate::PutOptions,
            ) -> $crate::Result<$crate::ObjectMeta> {
                $crate::raw::provided::put_stream(self, key, reader, options).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [get_many $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn get_many(&self, keys: &[$crate::Key]) -> $crate::Result<Vec<Option<$crate::Bytes>>> {
                $crate::raw::provided::get_many(self, keys).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [clear $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn clear(&self) -> $crate::Result<u64> {
                $crate::raw::provided::clear(self).await
            }
        ]);
    };
    (@munch $g:tt $t:tt $w:tt $inner:ident [] [stats $($def:ident)*] [$($acc:tt)*]) => {
        $crate::kv_store_impl!(@munch $g $t $w $inner [] [$($def)*] [$($acc)*
            async fn stats(&self) -> $crate::Result<$crate::StoreStats> {
                $crate::raw::provided::stats(self).await
            }
        ]);
    };

    // Everything decided: the impl itself.
    (@munch [$($gen:tt)*] [$ty:ty] [$($bound:tt)*] $inner:ident [] [] [$($acc:tt)*]) => {
        #[$crate::raw::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::KvStore for $ty where $($bound)* {
            $($acc)*
        }
    };
}
