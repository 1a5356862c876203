//! Keys and key ranges.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;

use crate::error::{Error, Result};

/// The longest key any store accepts, in bytes: 1,024, the object-key limit of Amazon S3
/// ("The object key name is a sequence of Unicode characters with UTF-8 encoding of up to
/// 1,024 bytes long"), so that every key can also be stored as an S3 object.
///
/// A layer may accept less (a tenant namespace spends some bytes on its prefix); each store
/// reports its own limit in [`Capabilities::max_key_len`](crate::Capabilities::max_key_len).
pub const MAX_KEY_LEN: usize = 1024;

/// A validated key: between 1 and [`MAX_KEY_LEN`] arbitrary bytes (NUL and 0xFF included).
///
/// Keys order bytewise, which is the order of every scan. Construction is the only place keys
/// are validated, so a `Key` in hand is always acceptable to every backend:
///
/// ```
/// use hybridstore_core::{ErrorKind, Key};
/// let key = Key::new("docs/index.html")?;
/// assert_eq!(key.as_bytes(), b"docs/index.html");
/// assert_eq!(Key::new("").unwrap_err().kind(), ErrorKind::InvalidInput);
/// assert_eq!(Key::new(vec![b'x'; 1025]).unwrap_err().kind(), ErrorKind::InvalidInput);
/// # Ok::<(), hybridstore_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Bytes);

impl Key {
    /// Validates `bytes` as a key.
    ///
    /// # Errors
    /// `InvalidInput` if the key is empty or longer than [`MAX_KEY_LEN`] bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Key> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(Error::invalid_input("key is empty"));
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(Error::invalid_input(format!(
                "key is {} bytes long; the maximum is {MAX_KEY_LEN}",
                bytes.len()
            )));
        }
        Ok(Key(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's bytes as a cheaply clonable `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The key's bytes, consuming the key.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes (always at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a key is never empty. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key as UTF-8, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(value: &str) -> Result<Key> {
        Key::new(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(value: String) -> Result<Key> {
        Key::new(value)
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = Error;
    fn try_from(value: &[u8]) -> Result<Key> {
        Key::new(Bytes::copy_from_slice(value))
    }
}

impl TryFrom<Vec<u8>> for Key {
    type Error = Error;
    fn try_from(value: Vec<u8>) -> Result<Key> {
        Key::new(value)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

/// UTF-8 keys print as themselves; any other key prints as `hex:` followed by its bytes in
/// lowercase hex, so the output is always printable and unambiguous for binary keys.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) if !s.starts_with("hex:") && !s.chars().any(char::is_control) => f.write_str(s),
            _ => write!(f, "hex:{}", hex::encode(&self.0)),
        }
    }
}

/// A contiguous range of keys, in bytewise order: everything, a prefix, or explicit bounds.
///
/// ```
/// use hybridstore_core::KeyRange;
/// let r = KeyRange::prefix("docs/");
/// assert!(r.contains(b"docs/a.html"));
/// assert!(!r.contains(b"docs0"));
/// assert!(KeyRange::all().contains(&[0xFF, 0xFF]));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRange {
    start: Bound<Bytes>,
    end: Bound<Bytes>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix` (every key if `prefix` is empty).
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Self::all();
        }
        let end = match prefix_successor(&prefix) {
            Some(s) => Bound::Excluded(s),
            None => Bound::Unbounded,
        };
        KeyRange {
            start: Bound::Included(prefix),
            end,
        }
    }

    /// Keys within explicit bounds, e.g. `KeyRange::new(Bound::Included(a), Bound::Excluded(b))`.
    pub fn new(start: Bound<Bytes>, end: Bound<Bytes>) -> Self {
        KeyRange { start, end }
    }

    /// Keys `k` with `start <= k < end`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
        }
    }

    /// The lower bound.
    pub fn start(&self) -> Bound<&[u8]> {
        as_slice_bound(&self.start)
    }

    /// The upper bound.
    pub fn end(&self) -> Bound<&[u8]> {
        as_slice_bound(&self.end)
    }

    /// The bounds, owned.
    pub fn into_bounds(self) -> (Bound<Bytes>, Bound<Bytes>) {
        (self.start, self.end)
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above_start = match &self.start {
            Bound::Unbounded => true,
            Bound::Included(s) => key >= s.as_ref(),
            Bound::Excluded(s) => key > s.as_ref(),
        };
        above_start && !self.is_past_end(key)
    }

    /// Whether `key` lies beyond the upper bound (so an ordered scan can stop).
    pub fn is_past_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Unbounded => false,
            Bound::Included(e) => key > e.as_ref(),
            Bound::Excluded(e) => key >= e.as_ref(),
        }
    }

    /// Whether no key can lie in the range (the start is at or beyond the end).
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e))
            | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        }
    }

    /// The same range with its lower bound moved just past `key`: the resumption point of a
    /// paged scan whose last returned key was `key`.
    pub fn resume_after(&self, key: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Excluded(Bytes::copy_from_slice(key)),
            end: self.end.clone(),
        }
    }
}

impl Default for KeyRange {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRange")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

fn as_slice_bound(b: &Bound<Bytes>) -> Bound<&[u8]> {
    match b {
        Bound::Included(x) => Bound::Included(x.as_ref()),
        Bound::Excluded(x) => Bound::Excluded(x.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` if
/// there is none (the prefix is all 0xFF bytes).
pub fn prefix_successor(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_handles_ff_bytes() {
        assert_eq!(prefix_successor(b"ab").as_deref(), Some(&b"ac"[..]));
        assert_eq!(prefix_successor(&[b'a', 0xFF]).as_deref(), Some(&b"b"[..]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn prefix_range_is_exact() {
        let r = KeyRange::prefix(vec![b'a', 0xFF]);
        assert!(r.contains(&[b'a', 0xFF]));
        assert!(r.contains(&[b'a', 0xFF, 0x00]));
        assert!(!r.contains(b"b"));
        assert!(!r.contains(&[b'a', 0xFE, 0xFF]));
    }

    #[test]
    fn display_is_unambiguous() {
        assert_eq!(Key::new("a/b").unwrap().to_string(), "a/b");
        assert_eq!(Key::new(vec![0u8, 0xFF]).unwrap().to_string(), "hex:00ff");
        assert_eq!(Key::new("hex:00").unwrap().to_string(), "hex:6865783a3030");
    }
}
