//! `object_store` errors as hybridstore errors, classified by their variants in one place
//! (rule 2 of `hybridstore_core::Error`'s module). No message text is read: a transport
//! failure is found as an `object_store::client::HttpError` in the source chain, by type.

use std::time::Duration;

use hybridstore_core::{Error, ErrorKind};

/// An `object_store` error as a hybridstore error: a missing object is `NotFound`; a failed
/// condition (`If-None-Match`, `If-Match`) is `Conflict`; a request that never got an answer
/// (refused connection, reset, timeout) is a retryable `Unavailable`; a bad path or option is
/// `InvalidInput`; the rest (denied access, a server error object_store already retried) is
/// `Backend`.
pub(crate) fn object_store_error(e: object_store::Error) -> Error {
    let (kind, retryable) = classify(&e);
    Error::new(kind, e.to_string())
        .with_retryable(retryable)
        .with_source(e)
}

fn classify(e: &object_store::Error) -> (ErrorKind, bool) {
    use object_store::Error as O;
    match e {
        O::NotFound { .. } => (ErrorKind::NotFound, false),
        O::AlreadyExists { .. } | O::Precondition { .. } | O::NotModified { .. } => {
            (ErrorKind::Conflict, false)
        }
        O::NotImplemented { .. } | O::NotSupported { .. } => (ErrorKind::Unsupported, false),
        O::InvalidPath { .. } | O::UnknownConfigurationKey { .. } => {
            (ErrorKind::InvalidInput, false)
        }
        O::Generic { source, .. } if transport_failure(source.as_ref()) => {
            (ErrorKind::Unavailable, true)
        }
        _ => (ErrorKind::Backend, false),
    }
}

/// Whether the source chain holds an HTTP transport failure (no response at all).
fn transport_failure(mut e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    loop {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
            );
        }
        match e.source() {
            Some(next) => e = next,
            None => return false,
        }
    }
}

/// The error of an operation that passed its deadline: retryable `Unavailable`.
pub(crate) fn deadline_passed(operation: &'static str, after: Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "the object store did not finish {operation} within {} ms",
            after.as_millis()
        ),
    )
    .with_retryable(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_classified() {
        let path = || "a/b".to_string();
        let boxed = || -> Box<dyn std::error::Error + Send + Sync> { "x".into() };
        let cases = [
            (
                object_store::Error::NotFound {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::NotFound,
                false,
            ),
            (
                object_store::Error::AlreadyExists {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::Conflict,
                false,
            ),
            (
                object_store::Error::Precondition {
                    path: path(),
                    source: boxed(),
                },
                ErrorKind::Conflict,
                false,
            ),
            (
                object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                },
                ErrorKind::Unavailable,
                true,
            ),
            (
                object_store::Error::Generic {
                    store: "S3",
                    source: boxed(),
                },
                ErrorKind::Backend,
                false,
            ),
        ];
        for (e, kind, retryable) in cases {
            let e = object_store_error(e);
            assert_eq!((e.kind(), e.is_retryable()), (kind, retryable), "{e}");
        }
        let e = deadline_passed("a get", Duration::from_secs(10));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
    }
}
