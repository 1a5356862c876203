//! `FaultyStore`: a real object store (InMemory, or any other) whose writes under one prefix
//! start failing, as a dropped connection makes them fail, after a given number succeed.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Which writes fail: those under `prefix`, once `allowed` of them have succeeded.
#[derive(Debug, Default)]
struct Rule {
    prefix: Option<String>,
    allowed: u64,
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rule: Mutex<Rule>,
    /// Successful writes (puts, multipart starts, copies) per path prefix `packs/`, `log/`, …
    pub writes: Mutex<Vec<String>>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            rule: Mutex::new(Rule::default()),
            writes: Mutex::new(Vec::new()),
        })
    }

    pub fn in_memory() -> Arc<FaultyStore> {
        FaultyStore::new(Arc::new(object_store::memory::InMemory::new()))
    }

    /// From now on, writes of paths containing `/prefix` or starting with `prefix` fail once
    /// `allowed` more of them have succeeded.
    pub fn fail_puts_under(&self, prefix: &str, allowed: u64) {
        *self.rule.lock().unwrap() = Rule {
            prefix: Some(prefix.to_string()),
            allowed,
        };
    }

    /// Writes succeed again.
    pub fn heal(&self) {
        *self.rule.lock().unwrap() = Rule::default();
    }

    /// The successful writes whose path contains `part`.
    pub fn writes_containing(&self, part: &str) -> usize {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.contains(part))
            .count()
    }

    fn admit(&self, location: &Path) -> object_store::Result<()> {
        let mut rule = self.rule.lock().unwrap();
        let path = location.as_ref();
        let matches = rule
            .prefix
            .as_deref()
            .is_some_and(|p| path.starts_with(p) || path.contains(&format!("/{p}")));
        if matches {
            if rule.allowed == 0 {
                return Err(object_store::Error::Generic {
                    store: "FaultyStore",
                    source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                });
            }
            rule.allowed -= 1;
        }
        self.writes.lock().unwrap().push(path.to_string());
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.admit(location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.admit(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.admit(to)?;
        self.inner.copy_opts(from, to, options).await
    }
}
