//! Mapping keys to file names, injectively and inside the root.
//!
//! A key lives in `objects/<xx>/<name>` where `xx` is the first key byte in lowercase hex
//! (the two-level hex layout: at most 256 directories, and directory order is key order).
//! `name` is
//! - `k` followed by the remaining key bytes in lowercase hex, for keys of at most
//!   [`MAX_DIRECT_KEY_LEN`] bytes (`1 + 2 × 119 = 239` characters, under the 255-byte
//!   `NAME_MAX` of Linux file systems), so the key can be read back from the name alone;
//! - `h` followed by the SHA-256 of the whole key in hex, for longer keys; the full key is
//!   then read from the record header.
//!
//! Names use only `[0-9a-fkh]`, so no key can produce `/`, `..`, NUL, a drive letter or a
//! name differing only in case: every key maps to exactly one path, and every path under
//! `objects/` that a key maps to stays under it. Temporary files start with `.tmp.` and can
//! never collide with a record name.

use std::path::{Path, PathBuf};

use hybridstore_core::{Key, Sha256Digest};

/// Longest key whose bytes are spelled out in its file name.
pub const MAX_DIRECT_KEY_LEN: usize = 120;

/// Prefix of every temporary file (record being written, journal being written).
pub const TEMP_PREFIX: &str = ".tmp.";

/// The directory name for keys starting with `first`.
pub fn dir_name(first: u8) -> String {
    hex::encode([first])
}

/// The file name of `key` inside its directory.
pub fn file_name(key: &Key) -> String {
    let bytes = key.as_bytes();
    if bytes.len() <= MAX_DIRECT_KEY_LEN {
        format!("k{}", hex::encode(&bytes[1..]))
    } else {
        format!("h{}", Sha256Digest::of(bytes).to_hex())
    }
}

/// The path of `key` under `objects`.
pub fn record_path(objects: &Path, key: &Key) -> PathBuf {
    objects
        .join(dir_name(key.as_bytes()[0]))
        .join(file_name(key))
}

/// What a directory entry is.
#[derive(Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A record whose key is fully known from its name.
    Direct(Vec<u8>),
    /// A record of a long key; the key is in its header.
    Hashed,
    /// A temporary file.
    Temp,
    /// Anything else (ignored).
    Foreign,
}

/// Classifies a file name found in the directory of first byte `first`.
pub fn parse_name(first: u8, name: &str) -> NameKind {
    if name.starts_with(TEMP_PREFIX) {
        return NameKind::Temp;
    }
    let is_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if let Some(rest) = name.strip_prefix('k') {
        if is_hex(rest)
            && let Ok(tail) = hex::decode(rest)
            && tail.len() < MAX_DIRECT_KEY_LEN
        {
            let mut key = Vec::with_capacity(1 + tail.len());
            key.push(first);
            key.extend_from_slice(&tail);
            return NameKind::Direct(key);
        }
        return NameKind::Foreign;
    }
    if let Some(rest) = name.strip_prefix('h')
        && rest.len() == 64
        && is_hex(rest)
    {
        return NameKind::Hashed;
    }
    NameKind::Foreign
}

/// Parses a directory name back to its first byte.
pub fn parse_dir_name(name: &str) -> Option<u8> {
    if name.len() != 2 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u8::from_str_radix(name, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every key maps to a name that parses back to the key (or to `Hashed` for long
        /// keys), made only of safe characters and at most 255 bytes long.
        #[test]
        fn names_are_injective_and_safe(bytes in proptest::collection::vec(any::<u8>(), 1..1025)) {
            let key = Key::new(bytes.clone()).unwrap();
            let name = file_name(&key);
            prop_assert!(name.len() <= 255);
            prop_assert!(name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'k' | b'h')));
            let dir = dir_name(bytes[0]);
            prop_assert_eq!(parse_dir_name(&dir), Some(bytes[0]));
            match parse_name(bytes[0], &name) {
                NameKind::Direct(k) => prop_assert_eq!(k, bytes),
                NameKind::Hashed => prop_assert!(bytes.len() > MAX_DIRECT_KEY_LEN),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn hostile_keys_stay_under_objects() {
        let objects = Path::new("/root/objects");
        for k in [
            &b"../../etc/passwd"[..],
            b"/abs",
            b"..",
            b"a\0b",
            b"C:\\x",
            b"%2e%2e",
        ] {
            let p = record_path(objects, &Key::new(k.to_vec()).unwrap());
            assert_eq!(p.parent().and_then(Path::parent), Some(objects), "{p:?}");
        }
    }
}
