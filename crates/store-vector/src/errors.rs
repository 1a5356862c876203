//! LanceDB errors as hybridstore errors, classified by their variants in one place (rule 2
//! of `hybridstore_core::Error`'s module): `lancedb::Error`, the `lance::Error` inside its
//! `Lance` variant (lance-core's type, which lancedb does not re-export), and the
//! `object_store::Error` inside either. No message text is read.

use hybridstore_core::{Error, ErrorKind};

/// A LanceDB error as a hybridstore error: missing tables, datasets, versions and files
/// (another process dropped the table under an open handle) are `NotFound`; commit
/// conflicts and write contention are retryable `Conflict`s (lance retries some itself and
/// reports the rest); malformed input, schemas and expressions are `InvalidInput`; a corrupt
/// file is `Corrupted`; timeouts and backpressure are retryable; the rest is `Backend`.
pub(crate) fn lance_error(e: lancedb::Error) -> Error {
    let (kind, retryable) = classify(&e);
    Error::new(kind, e.to_string())
        .with_retryable(retryable)
        .with_source(e)
}

fn classify(e: &lancedb::Error) -> (ErrorKind, bool) {
    use lancedb::Error as L;
    let kind = match e {
        L::TableNotFound { .. }
        | L::IndexNotFound { .. }
        | L::DatabaseNotFound { .. }
        | L::JobNotFound { .. } => ErrorKind::NotFound,
        L::TableAlreadyExists { .. } | L::DatabaseAlreadyExists { .. } => ErrorKind::Conflict,
        L::InvalidInput { .. }
        | L::InvalidTableName { .. }
        | L::Schema { .. }
        | L::InvalidExpression { .. }
        | L::ColumnNotFound { .. } => ErrorKind::InvalidInput,
        L::Timeout { .. } => return (ErrorKind::Timeout, true),
        L::NotSupported { .. } => ErrorKind::Unsupported,
        L::Lance { source } => return classify_lance(source),
        L::ObjectStore { source } => return classify_object_store(source),
        _ => ErrorKind::Backend,
    };
    (kind, kind.default_retryable())
}

fn classify_lance(e: &lance_core::Error) -> (ErrorKind, bool) {
    use lance_core::Error as E;
    match e {
        E::DatasetNotFound { .. }
        | E::NotFound { .. }
        | E::IndexNotFound { .. }
        | E::VersionNotFound { .. }
        | E::RefNotFound { .. } => (ErrorKind::NotFound, false),
        E::CommitConflict { .. }
        | E::RetryableCommitConflict { .. }
        | E::TooMuchWriteContention { .. }
        | E::IncompatibleTransaction { .. }
        | E::VersionConflict { .. }
        | E::RefConflict { .. } => (ErrorKind::Conflict, true),
        E::DatasetAlreadyExists { .. } => (ErrorKind::Conflict, false),
        E::InvalidInput { .. }
        | E::SchemaMismatch { .. }
        | E::Schema { .. }
        | E::FieldNotFound { .. }
        | E::InvalidRef { .. }
        | E::InvalidTableLocation { .. } => (ErrorKind::InvalidInput, false),
        E::CorruptFile { .. } => (ErrorKind::Corrupted, false),
        E::NotSupported { .. } => (ErrorKind::Unsupported, false),
        E::Timeout { .. } => (ErrorKind::Timeout, true),
        E::Backpressure { .. } => (ErrorKind::Unavailable, true),
        E::DiskCapExceeded { .. } => (ErrorKind::QuotaExceeded, false),
        E::Shared { source } => classify_lance(source),
        E::IO { source, .. } => match source.downcast_ref::<object_store::Error>() {
            Some(os) => classify_object_store(os),
            None => match source.downcast_ref::<std::io::Error>() {
                Some(io) => {
                    let kind = Error::from(std::io::Error::from(io.kind())).kind();
                    (kind, kind.default_retryable())
                }
                None => (ErrorKind::Backend, false),
            },
        },
        _ => (ErrorKind::Backend, false),
    }
}

fn classify_object_store(e: &object_store::Error) -> (ErrorKind, bool) {
    use object_store::Error as O;
    match e {
        O::NotFound { .. } => (ErrorKind::NotFound, false),
        O::AlreadyExists { .. } | O::Precondition { .. } => (ErrorKind::Conflict, false),
        O::NotModified { .. } => (ErrorKind::Conflict, false),
        O::NotImplemented { .. } | O::NotSupported { .. } => (ErrorKind::Unsupported, false),
        O::PermissionDenied { .. } | O::Unauthenticated { .. } => (ErrorKind::Backend, false),
        O::InvalidPath { .. } | O::UnknownConfigurationKey { .. } => {
            (ErrorKind::InvalidInput, false)
        }
        _ => (ErrorKind::Backend, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(message: &str) -> Box<dyn std::error::Error + Send + Sync> {
        message.to_string().into()
    }

    #[test]
    fn lance_errors_are_classified_by_variant() {
        let cases: Vec<(lancedb::Error, ErrorKind, bool)> = vec![
            (
                lancedb::Error::TableNotFound {
                    name: "docs".into(),
                    source: boxed("gone"),
                },
                ErrorKind::NotFound,
                false,
            ),
            (
                lance_core::Error::not_found("s3://b/docs.lance/_versions/3.manifest").into(),
                ErrorKind::NotFound,
                false,
            ),
            (
                lance_core::Error::dataset_not_found("docs.lance", boxed("gone")).into(),
                ErrorKind::NotFound,
                false,
            ),
            (
                lance_core::Error::commit_conflict_source(3, boxed("concurrent append")).into(),
                ErrorKind::Conflict,
                true,
            ),
            (
                lance_core::Error::retryable_commit_conflict_source(3, boxed("again")).into(),
                ErrorKind::Conflict,
                true,
            ),
            (
                lance_core::Error::too_much_write_contention("writers").into(),
                ErrorKind::Conflict,
                true,
            ),
            (
                lance_core::Error::corrupt_file_named("data/0.lance", "bad footer").into(),
                ErrorKind::Corrupted,
                false,
            ),
            (
                lance_core::Error::timeout("slow").into(),
                ErrorKind::Timeout,
                true,
            ),
            (
                lance_core::Error::io_source(Box::new(object_store::Error::NotFound {
                    path: "docs.lance/data/1.lance".into(),
                    source: boxed("404"),
                }))
                .into(),
                ErrorKind::NotFound,
                false,
            ),
            (
                lance_core::Error::internal("a bug").into(),
                ErrorKind::Backend,
                false,
            ),
        ];
        for (e, kind, retryable) in cases {
            let shown = e.to_string();
            let ours = lance_error(e);
            assert_eq!(ours.kind(), kind, "{shown}");
            assert_eq!(ours.is_retryable(), retryable, "{shown}");
            assert!(
                std::error::Error::source(&ours).is_some(),
                "{shown}: source kept"
            );
        }
    }

    #[test]
    fn invalid_input_is_invalid_input_whether_lancedb_or_lance_reports_it() {
        // lancedb turns lance's InvalidInput into its own variant.
        let e: lancedb::Error = lance_core::Error::invalid_input("dimension 3, expected 4").into();
        assert_eq!(lance_error(e).kind(), ErrorKind::InvalidInput);
        let e = lancedb::Error::InvalidTableName {
            name: "../x".into(),
            reason: "not allowed".into(),
        };
        assert_eq!(lance_error(e).kind(), ErrorKind::InvalidInput);
    }
}
