//! Conversions between core types and SQL column values, shared by both backends.

use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hybridstore_core::{Error, Key, KeyRange, ObjectMeta, Result, Sha256Digest};

/// Unix nanoseconds, the unit of `kv_objects.created` / `modified`. An `i64` of nanoseconds
/// covers 1677-09-21 to 2262-04-11; times outside are clamped.
pub(crate) fn to_unix_nanos(time: SystemTime) -> i64 {
    to_unix(time, Duration::as_nanos)
}

/// The inverse of [`to_unix_nanos`].
pub(crate) fn from_unix_nanos(nanos: i64) -> SystemTime {
    from_unix(nanos, Duration::from_nanos)
}

/// Unix milliseconds, the unit of the operational tables' `*_at` columns.
pub(crate) fn to_unix_millis(time: SystemTime) -> i64 {
    to_unix(time, Duration::as_millis)
}

/// The inverse of [`to_unix_millis`].
pub(crate) fn from_unix_millis(millis: i64) -> SystemTime {
    from_unix(millis, Duration::from_millis)
}

fn to_unix(time: SystemTime, units: fn(&Duration) -> u128) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(units(&d)).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(units(&e.duration())).map_or(i64::MIN, |n| -n),
    }
}

fn from_unix(count: i64, unit: fn(u64) -> Duration) -> SystemTime {
    if count >= 0 {
        UNIX_EPOCH + unit(count.unsigned_abs())
    } else {
        UNIX_EPOCH - unit(count.unsigned_abs())
    }
}

/// One `kv_objects` row without its value, as read from either backend.
pub(crate) struct MetaRow {
    pub(crate) key: Vec<u8>,
    pub(crate) size: i64,
    pub(crate) created: i64,
    pub(crate) modified: i64,
    pub(crate) checksum: String,
    pub(crate) content_type: Option<String>,
    pub(crate) dedup_hash: Option<Vec<u8>>,
}

impl MetaRow {
    /// Decodes the row; a row this crate could not have written is `Corrupted`.
    pub(crate) fn into_parts(self) -> Result<(Key, ObjectMeta)> {
        let key = Key::new(self.key)
            .map_err(|e| Error::corrupted(format!("stored key is invalid: {}", e.message())))?;
        let size = u64::try_from(self.size)
            .map_err(|_| corrupt_column(&key, "size", &self.size.to_string()))?;
        let checksum: Sha256Digest = self
            .checksum
            .parse()
            .map_err(|_| corrupt_column(&key, "checksum", &self.checksum))?;
        let dedup_hash = match self.dedup_hash {
            None => None,
            Some(bytes) => {
                let array: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt_column(&key, "dedup_hash", &hex::encode(&bytes)))?;
                Some(Sha256Digest(array))
            }
        };
        let meta = ObjectMeta {
            size,
            created: from_unix_nanos(self.created),
            modified: from_unix_nanos(self.modified),
            checksum,
            content_type: self.content_type,
            dedup_hash,
        };
        Ok((key, meta))
    }
}

fn corrupt_column(key: &Key, column: &str, value: &str) -> Error {
    Error::corrupted(format!(
        "kv_objects.{column} holds an impossible value {value:?}"
    ))
    .with_context("key", key)
}

/// Checks a value read back against the size and checksum stored beside it.
pub(crate) fn check_value(key: &Key, meta: &ObjectMeta, value: &[u8]) -> Result<()> {
    if value.len() as u64 != meta.size || Sha256Digest::of(value) != meta.checksum {
        return Err(Error::corrupted(format!(
            "value does not match its stored checksum ({} bytes stored, {} expected)",
            value.len(),
            meta.size
        ))
        .with_context("key", key));
    }
    Ok(())
}

/// A key range as the half-open byte interval `[start, end)` that SQL compares against
/// (`end = None`: no upper bound). BLOB/BYTEA comparison is `memcmp` order, the order of
/// [`Key`], on both backends.
///
/// An exclusive start `k` becomes the inclusive start `k ++ [0]`, the smallest byte string
/// after `k`; an inclusive end `k` becomes the exclusive end `k ++ [0]`.
#[derive(Clone, Debug)]
pub(crate) struct SqlRange {
    pub(crate) start: Vec<u8>,
    pub(crate) end: Option<Vec<u8>>,
}

impl SqlRange {
    pub(crate) fn new(range: &KeyRange) -> SqlRange {
        let start = match range.start() {
            Bound::Unbounded => Vec::new(),
            Bound::Included(k) => k.to_vec(),
            Bound::Excluded(k) => successor(k),
        };
        let end = match range.end() {
            Bound::Unbounded => None,
            Bound::Included(k) => Some(successor(k)),
            Bound::Excluded(k) => Some(k.to_vec()),
        };
        SqlRange { start, end }
    }

    /// The rest of the range after `key` (for paging).
    pub(crate) fn after(&self, key: &[u8]) -> SqlRange {
        SqlRange {
            start: successor(key),
            end: self.end.clone(),
        }
    }
}

fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// A value column as `Bytes` without copying.
pub(crate) fn bytes(value: Vec<u8>) -> Bytes {
    Bytes::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip_including_before_the_epoch() {
        for nanos in [0, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_123] {
            assert_eq!(to_unix_nanos(from_unix_nanos(nanos)), nanos);
        }
        let now = SystemTime::now();
        assert_eq!(from_unix_nanos(to_unix_nanos(now)), now);
    }

    #[test]
    fn exclusive_bounds_become_successors() {
        let range = KeyRange::new(
            Bound::Excluded(Bytes::from_static(b"a")),
            Bound::Included(Bytes::from_static(b"c")),
        );
        let sql = SqlRange::new(&range);
        assert_eq!(sql.start, b"a\0");
        assert_eq!(sql.end.as_deref(), Some(&b"c\0"[..]));
        let all = SqlRange::new(&KeyRange::all());
        assert!(all.start.is_empty() && all.end.is_none());
    }
}
