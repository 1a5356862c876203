//! The one error type every hybridstore crate returns.
//!
//! Modelled on Apache OpenDAL's `Error`: a [`ErrorKind`] that callers match on, the operation
//! that failed, key/value context added by the code that knows it, an optional source, and a
//! retryable flag that retry logic reads instead of guessing from the message.

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
/// let err = Error::new(ErrorKind::InvalidInput, "key is empty")
///     .with_operation("put")
///     .with_context("backend", "file");
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert!(!err.is_retryable());
/// assert_eq!(err.to_string(), "invalid_input: key is empty (operation: put, backend: file)");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    operation: Option<&'static str>,
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
            operation: None,
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

    /// Records the operation that failed (`"get"`, `"put"`, `"scan"`, …) unless one is set.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation.get_or_insert(operation);
        self
    }

    /// Adds one piece of context, such as the key or the path involved.
    pub fn with_context(mut self, name: &'static str, value: impl fmt::Display) -> Self {
        self.context.push((name, value.to_string()));
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

    /// The operation that failed, if recorded.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
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
        if let Some(op) = self.operation {
            parts.push(format!("operation: {op}"));
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
        if let Some(op) = self.operation {
            d.field("operation", &op);
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
