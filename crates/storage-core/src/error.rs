//! The one error type every hybridstore crate returns, and the rules for building it.
//!
//! Modelled on Apache OpenDAL's `Error` (<https://docs.rs/opendal/latest/opendal/struct.Error.html>):
//! an [`ErrorKind`] that callers match on, the operations that failed, context added by the
//! code that knows it, an optional source, and a retryable flag that retry logic reads instead
//! of guessing from the message. The rules are written here, as rustic writes its own at the
//! top of `crates/core/src/error.rs` (<https://github.com/rustic-rs/rustic_core>):
//!
//! 1. **Build an error where the failure is understood**, with the [`ErrorKind`] a caller can
//!    act on and a message in the caller's words ("chunk 3f… is missing from every pack"),
//!    not the engine's.
//! 2. **Classify engine errors by their types**, in one function per engine: `std::io` by
//!    [`std::io::ErrorKind`] (the `From` impl below), sqlx by its `Error` variants and the
//!    database's error code (`hybridstore_sql`), LanceDB by `lancedb::Error` and
//!    `lance::Error` variants (`hybridstore_vector`), DuckDB by its exception type
//!    (`hybridstore_analytics`). Message text is read only where the engine exposes nothing
//!    typed, the function says so, and a test pins the messages it reads.
//! 3. **Operation, key and backend come from one place**: [`ErrorContext`](crate::ErrorContext),
//!    the layer the facade's stack puts over every store, adds them to every error that
//!    passes it. Backends and layers do not add them by hand; they add only what that layer
//!    cannot know (a file path, a pack, a chunk id, a SQL table) with
//!    [`with_context`](Error::with_context).
//! 4. **Keep what is already there**: [`with_operation`](Error::with_operation) keeps earlier
//!    operations (a `get` that failed while reading a chunk shows both), the source is
//!    attached with [`with_source`](Error::with_source), never flattened into the message.
//! 5. **Retryable is decided once**, by the kind's default or the classifier that knows
//!    better (a LanceDB commit conflict is retryable, a SQLite constraint is not); layers
//!    above do not change it.
//! 6. **No panics for errors**: a failure of the input or the medium is an `Err`, never an
//!    `unwrap` or an index out of bounds.

use std::fmt;

/// What went wrong, independent of the backend that reported it.
///
/// Callers match on this; the message and context are for people.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The key, collection or object does not exist (only for operations where absence is an
    /// error; `get` and `head` return `Ok(None)` instead).
    NotFound,
    /// The caller passed something the store can never accept: an empty or over-long key, an
    /// oversized value, a malformed tenant name. Retrying the same call fails the same way.
    InvalidInput,
    /// A precondition did not hold: a `WriteBatch` check failed, or another writer won a race.
    Conflict,
    /// The backend cannot be reached or is shutting down. Usually worth retrying.
    Unavailable,
    /// The store or data directory is owned by another process (it holds the exclusive lock
    /// on it). Not worth retrying until that process has exited.
    Locked,
    /// Stored bytes do not match their checksum, or a file is structurally damaged.
    /// The store never returns wrong bytes in place of this error.
    Corrupted,
    /// A tenant or store quota (bytes, objects, vectors) would be exceeded.
    QuotaExceeded,
    /// The operation did not finish within its deadline. Usually worth retrying.
    Timeout,
    /// The backend does not implement this operation.
    Unsupported,
    /// Any other failure reported by the underlying engine (I/O, SQL, network).
    Backend,
}

impl ErrorKind {
    /// Whether errors of this kind are worth retrying when nothing else is known.
    pub fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// A short lower-case name, stable for logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Locked => "locked",
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Backend => "backend",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of every hybridstore operation.
///
/// Build it where the failure is understood and add context there:
///
/// ```
/// use hybridstore_core::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::Corrupted, "chunk checksum mismatch")
///     .with_operation("read chunk")
///     .with_operation("get")
///     .with_context("backend", "file");
/// assert_eq!(err.kind(), ErrorKind::Corrupted);
/// assert!(!err.is_retryable());
/// assert_eq!(err.operation(), Some("get"));
/// assert_eq!(err.operations(), ["get", "read chunk"]);
/// assert_eq!(
///     err.to_string(),
///     "corrupted: chunk checksum mismatch (operation: get > read chunk, backend: file)"
/// );
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Innermost first: the operation that failed first, then each one that contained it.
    operations: Vec<&'static str>,
    context: Vec<(&'static str, String)>,
    retryable: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; retryable if the kind is by default
    /// (see [`ErrorKind::default_retryable`]).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            operations: Vec::new(),
            context: Vec::new(),
            retryable: kind.default_retryable(),
            source: None,
        }
    }

    /// Shorthand for `Error::new(ErrorKind::InvalidInput, message)`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for `Error::new(ErrorKind::Corrupted, message)`.
    pub fn corrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupted, message)
    }

    /// Shorthand for `Error::new(ErrorKind::NotFound, message)`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for `Error::new(ErrorKind::Conflict, message)`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for `Error::new(ErrorKind::Backend, message)`.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// Records the operation that failed (`"get"`, `"put"`, `"scan"`, …) as the outermost
    /// one, keeping those recorded before it (after OpenDAL's `Error::with_operation`). The
    /// same operation twice in a row (two context layers) is kept once.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        if self.operations.last() != Some(&operation) {
            self.operations.push(operation);
        }
        self
    }

    /// Adds one piece of context, such as the key or the path involved. A pair already
    /// present (same name and value) is not added again.
    pub fn with_context(mut self, name: &'static str, value: impl fmt::Display) -> Self {
        let value = value.to_string();
        if !self.context.iter().any(|(n, v)| *n == name && *v == value) {
            self.context.push((name, value));
        }
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides the retryable flag.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The outermost operation that failed, if any was recorded.
    pub fn operation(&self) -> Option<&'static str> {
        self.operations.last().copied()
    }

    /// Every recorded operation, outermost first (`["get", "read chunk"]`).
    pub fn operations(&self) -> Vec<&'static str> {
        self.operations.iter().rev().copied().collect()
    }

    /// A copy for a second receiver (a cache load shared by several readers): kind, message,
    /// operations, context and retryability; the source, which cannot be cloned, is kept as
    /// its text under the context name `"source"`.
    pub fn duplicate(&self) -> Error {
        let mut copy = Error {
            kind: self.kind,
            message: self.message.clone(),
            operations: self.operations.clone(),
            context: self.context.clone(),
            retryable: self.retryable,
            source: None,
        };
        if let Some(source) = &self.source {
            copy = copy.with_context("source", source);
        }
        copy
    }

    /// The context pairs, in the order they were added.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }

    /// Whether the same call may succeed if retried.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        let mut parts = Vec::new();
        if !self.operations.is_empty() {
            parts.push(format!("operation: {}", self.operations().join(" > ")));
        }
        for (name, value) in &self.context {
            parts.push(format!("{name}: {value}"));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if !self.operations.is_empty() {
            d.field("operations", &self.operations());
        }
        if !self.context.is_empty() {
            d.field("context", &self.context);
        }
        d.field("retryable", &self.retryable);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    /// Maps an I/O error onto a kind: `NotFound`, `TimedOut` and `InvalidData` keep their
    /// meaning, transient kinds (`Interrupted`, `WouldBlock`, connection resets) become
    /// retryable `Unavailable`, everything else is a non-retryable `Backend` error.
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::TimedOut => ErrorKind::Timeout,
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Corrupted,
            Io::Interrupted
            | Io::WouldBlock
            | Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe => ErrorKind::Unavailable,
            Io::InvalidInput | Io::InvalidFilename => ErrorKind::InvalidInput,
            _ => ErrorKind::Backend,
        };
        Error::new(kind, format!("I/O error ({})", err.kind())).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds_and_retryability() {
        let e: Error = std::io::Error::from(std::io::ErrorKind::Interrupted).into();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        let e: Error = std::io::Error::from(std::io::ErrorKind::PermissionDenied).into();
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(!e.is_retryable());
    }

    #[test]
    fn operations_accumulate_outermost_first_and_repeats_are_kept_once() {
        let e = Error::corrupted("bad chunk")
            .with_operation("read chunk")
            .with_operation("get")
            .with_operation("get")
            .with_context("key", "a")
            .with_context("key", "a");
        assert_eq!(e.operations(), ["get", "read chunk"]);
        assert_eq!(e.operation(), Some("get"));
        assert_eq!(e.context(), [("key", "a".to_string())]);
        assert_eq!(
            e.to_string(),
            "corrupted: bad chunk (operation: get > read chunk, key: a)"
        );
    }

    #[test]
    fn a_duplicate_keeps_everything_but_the_source_object() {
        let e = Error::backend("write failed")
            .with_operation("put")
            .with_context("key", "k")
            .with_retryable(true)
            .with_source(std::io::Error::other("disk on fire"));
        let d = e.duplicate();
        assert_eq!(d.kind(), e.kind());
        assert_eq!(d.operations(), e.operations());
        assert!(d.is_retryable());
        assert_eq!(
            d.context(),
            [("key", "k".into()), ("source", "disk on fire".into())]
        );
        assert!(std::error::Error::source(&d).is_none());
    }

    #[test]
    fn display_includes_context_and_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::backend("write failed")
            .with_operation("put")
            .with_context("key", "a/b")
            .with_source(io);
        assert_eq!(
            e.to_string(),
            "backend: write failed (operation: put, key: a/b): disk on fire"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
