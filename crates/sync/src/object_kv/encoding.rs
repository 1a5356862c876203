//! Keys as object paths: lowercase hex in segments, ending in `.v`.
//!
//! ```text
//! key bytes ──hex──▶ 2n hex digits ──split every SEGMENT_HEX──▶ d1/d2/…/dk ──+".v"──▶ path
//! ```
//!
//! - **Injective and reversible**: hex is, and `/` and `.v` sit at positions fixed by the
//!   length, so [`decode`] gives back the exact bytes (NUL, `/`, `..` and 0xFF included).
//! - **Cannot leave the prefix**: the encoded part holds only `0-9 a-f / . v`; no segment is
//!   empty, `.` or `..`.
//! - **Order-preserving**: for keys `a < b` (bytewise), `encode(a) < encode(b)` as strings.
//!   Hex maps each byte to two digits in the same order (`0-9` sort before `a-f` in ASCII);
//!   every `/` sits at the same offset in any two encodings that reach it; and the
//!   terminator `.` (0x2E) sorts before `/` (0x2F) and every digit, so a key sorts before
//!   the keys it is a prefix of. So S3's `start-after` listing skips exactly the keys before
//!   a range.
//! - **Fits file systems**: segments of at most [`SEGMENT_HEX`] characters (file names are
//!   limited to 255 bytes on ext4, XFS and APFS), and a file `x.v` never collides with the
//!   directory `x` of a longer key.

use hybridstore_core::{Error, Key, MAX_KEY_LEN, Result};

/// Hex digits per path segment: 128 (64 key bytes), under the 255-byte file-name limit of
/// common file systems with room to spare.
pub const SEGMENT_HEX: usize = 128;

/// The suffix that ends every value object's path.
pub const TERMINATOR: &str = ".v";

/// Amazon S3's limit on an object key, in bytes of UTF-8
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html>).
pub const S3_MAX_OBJECT_KEY_LEN: usize = 1024;

/// Length in bytes of the encoding of a key of `n` bytes (`n >= 1`).
pub fn encoded_len(n: usize) -> usize {
    let digits = 2 * n;
    digits + (digits - 1) / SEGMENT_HEX + TERMINATOR.len()
}

/// The longest key whose object path (`base` bytes before the encoding, the `/` after them
/// included) stays within [`S3_MAX_OBJECT_KEY_LEN`]; 0 if none does.
pub fn max_key_len(base: usize) -> usize {
    let budget = S3_MAX_OBJECT_KEY_LEN.saturating_sub(base);
    // encoded_len grows with n: the largest n with encoded_len(n) <= budget.
    let mut n = (budget / 2).min(MAX_KEY_LEN);
    while n > 0 && encoded_len(n) > budget {
        n -= 1;
    }
    n
}

/// The encoding of `key` (see the module docs).
pub fn encode(key: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(key.len().max(1)));
    push_digits(&mut out, key);
    out.push_str(TERMINATOR);
    out
}

/// The encoding of `key` without its terminator: a string that sorts after the encoding of
/// every key below `key` and before the encoding of `key` and every key above it (the
/// exclusive offset at which a listing of the keys from `key` on starts).
pub fn encode_lower_bound(key: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(key.len().max(1)));
    push_digits(&mut out, key);
    out
}

/// The directory (whole segments only) under which every key starting with `prefix` lies,
/// the prefix itself included, `""` if there is none. A prefix of exactly `k` segments
/// gives `k - 1`: the key equal to it is the file `<segment k>.v` beside the directory of
/// segment `k`, not inside it.
pub fn directory_of_prefix(prefix: &[u8]) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let whole = (2 * prefix.len() - 1) / SEGMENT_HEX;
    if whole == 0 {
        return String::new();
    }
    let mut out = String::new();
    push_digits(&mut out, &prefix[..whole * SEGMENT_HEX / 2]);
    out
}

fn push_digits(out: &mut String, key: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in key.iter().enumerate() {
        if i > 0 && (2 * i) % SEGMENT_HEX == 0 {
            out.push('/');
        }
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xF)] as char);
    }
}

/// The key an encoded path stands for, or `None` if `encoded` is not exactly what
/// [`encode`] produces for some key (a foreign object under the prefix, which scans skip).
pub fn decode(encoded: &str) -> Option<Key> {
    let digits = encoded.strip_suffix(TERMINATOR)?;
    let hex: Vec<u8> = digits.bytes().filter(|&c| c != b'/').collect();
    if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 2 * MAX_KEY_LEN {
        return None;
    }
    let mut bytes = vec![0u8; hex.len() / 2];
    hex::decode_to_slice(&hex, &mut bytes).ok()?;
    let key = Key::new(bytes).ok()?;
    // The canonical form only: anything else is not ours.
    (encode(key.as_bytes()) == encoded).then_some(key)
}

/// `InvalidInput` for a key whose path would pass `max` key bytes.
pub fn check_key(key: &Key, max: usize) -> Result<()> {
    if key.len() > max {
        return Err(Error::invalid_input(format!(
            "key is {} bytes; an object store under this prefix takes keys of at most {max} \
             bytes (hex-encoded object paths stay within S3's 1,024-byte key limit)",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn key(bytes: &[u8]) -> Key {
        Key::new(bytes.to_vec()).unwrap()
    }

    #[test]
    fn round_trips_and_names_segments() {
        assert_eq!(encode(b"a/b"), "612f62.v");
        let long = vec![0xABu8; 65];
        let encoded = encode(&long);
        assert_eq!(encoded.len(), encoded_len(65));
        assert_eq!(encoded.matches('/').count(), 1);
        assert_eq!(decode(&encoded).unwrap().as_bytes(), &long[..]);
        for bad in [
            "", ".v", "6.v", "6g.v", "61", "61/62.v", "/61.v", "61.v.v", "AB.v",
        ] {
            assert!(decode(bad).is_none(), "{bad:?} decoded");
        }
    }

    #[test]
    fn a_prefix_of_whole_segments_lists_the_key_equal_to_it() {
        for len in [64, 65, 128, 129] {
            let prefix = vec![7u8; len];
            let dir = directory_of_prefix(&prefix);
            for key in [prefix.clone(), [prefix.clone(), vec![1]].concat()] {
                let encoded = encode(&key);
                assert!(
                    dir.is_empty() || encoded.starts_with(&format!("{dir}/")),
                    "{len}: {encoded} is not under {dir}"
                );
            }
        }
    }

    #[test]
    fn max_key_len_keeps_paths_within_s3s_limit() {
        for base in [0, 1, 15, 100, 500, 1000, 1023, 1024, 2000] {
            let n = max_key_len(base);
            if n > 0 {
                assert!(base + encoded_len(n) <= S3_MAX_OBJECT_KEY_LEN);
            }
            assert!(n == MAX_KEY_LEN || base + encoded_len(n + 1) > S3_MAX_OBJECT_KEY_LEN);
        }
        assert!(max_key_len(20) >= 490);
    }

    proptest! {
        #[test]
        fn order_and_injectivity(a in proptest::collection::vec(any::<u8>(), 1..200),
                                 b in proptest::collection::vec(any::<u8>(), 1..200)) {
            let (ea, eb) = (encode(&a), encode(&b));
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            prop_assert_eq!(decode(&ea).unwrap(), key(&a));
            // The lower bound of b sorts after every key below b and before b itself.
            let lb = encode_lower_bound(&b);
            prop_assert!(lb < eb);
            prop_assert_eq!(a < b, ea < lb);
            for segment in ea.split('/') {
                prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
                prop_assert!(segment.len() <= SEGMENT_HEX + TERMINATOR.len());
            }
        }

        #[test]
        fn prefix_directories_hold_their_keys(p in proptest::collection::vec(any::<u8>(), 1..200),
                                              rest in proptest::collection::vec(any::<u8>(), 0..100)) {
            let dir = directory_of_prefix(&p);
            let mut k = p.clone();
            k.extend_from_slice(&rest);
            let encoded = encode(&k);
            if !dir.is_empty() {
                let expected = format!("{dir}/");
                prop_assert!(encoded.starts_with(&expected));
            }
        }
    }
}
