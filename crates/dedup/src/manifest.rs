//! Manifests: what the manifest store keeps under a key instead of the value.
//!
//! ```text
//! manifest := 0xD5 | kind
//! kind 0 (inline)  := value bytes
//! kind 1 (chunked) := total length (LEB128) | chunk count n (LEB128)
//!                     | n × (chunk id (32) | chunk length (LEB128))
//!                     | whole-value SHA-256 (32)      -- only when n > 1; for n = 1 the
//!                                                        chunk id is the value's SHA-256
//! ```
//!
//! A manifest is a pure function of the value and the chunker settings, so the same value
//! always gives the same manifest bytes.

use hybridstore_core::{Error, Result, Sha256Digest};

use crate::chunk::ChunkId;

const MAGIC: u8 = 0xD5;
const KIND_INLINE: u8 = 0;
const KIND_CHUNKED: u8 = 1;

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    /// A small value kept in the manifest itself.
    Inline(bytes::Bytes),
    /// A value made of chunks.
    Chunked(ChunkList),
}

/// The chunks of a value, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkList {
    /// Length of the whole value, in bytes.
    pub total_len: u64,
    /// `(id, length in bytes)` of each chunk, in value order.
    pub chunks: Vec<(ChunkId, u32)>,
    /// SHA-256 of the whole value.
    pub checksum: Sha256Digest,
}

/// The longest value whose manifest is sure to fit in `max_manifest_len` bytes when no chunk
/// but the last is shorter than `min_chunk` bytes: the chunk entries that fit (32-byte id
/// plus a length of at most 5 LEB128 bytes each, after a header of at most 22 bytes and
/// before the 32-byte checksum) times `min_chunk`.
pub fn max_value_len(max_manifest_len: u64, min_chunk: usize) -> u64 {
    const HEADER_MAX: u64 = 2 + 10 + 10;
    const ENTRY_MAX: u64 = 32 + 5;
    let entries = max_manifest_len.saturating_sub(HEADER_MAX + 32) / ENTRY_MAX;
    entries.saturating_mul(min_chunk as u64)
}

impl Manifest {
    /// Length of the value, in bytes.
    pub fn value_len(&self) -> u64 {
        match self {
            Manifest::Inline(v) => v.len() as u64,
            Manifest::Chunked(list) => list.total_len,
        }
    }

    /// Encodes an inline manifest straight from the value.
    pub fn encode_inline(value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + value.len());
        out.extend_from_slice(&[MAGIC, KIND_INLINE]);
        out.extend_from_slice(value);
        out
    }

    /// Encodes a chunked manifest.
    pub fn encode_chunked(list: &ChunkList) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + list.chunks.len() * 36 + 32);
        out.extend_from_slice(&[MAGIC, KIND_CHUNKED]);
        put_varint(&mut out, list.total_len);
        put_varint(&mut out, list.chunks.len() as u64);
        for (id, len) in &list.chunks {
            out.extend_from_slice(id.as_bytes());
            put_varint(&mut out, u64::from(*len));
        }
        if list.chunks.len() != 1 {
            out.extend_from_slice(list.checksum.as_bytes());
        }
        out
    }

    /// Decodes manifest bytes. `Inline` shares `bytes` (no copy).
    ///
    /// # Errors
    /// `Corrupted` if the bytes are not a manifest of this format or are inconsistent (chunk
    /// lengths that do not add up to the total, trailing bytes).
    pub fn decode(bytes: &bytes::Bytes) -> Result<Manifest> {
        let bad = |what: &str| Error::corrupted(format!("dedup manifest: {what}"));
        if bytes.len() < 2 || bytes[0] != MAGIC {
            return Err(bad("not a manifest (bad magic byte)"));
        }
        match bytes[1] {
            KIND_INLINE => Ok(Manifest::Inline(bytes.slice(2..))),
            KIND_CHUNKED => {
                let mut at = 2;
                let total_len = get_varint(bytes, &mut at).ok_or_else(|| bad("truncated"))?;
                let count = get_varint(bytes, &mut at).ok_or_else(|| bad("truncated"))?;
                // Each entry takes at least 33 bytes, which bounds the allocation.
                if count > (bytes.len() as u64) / 33 {
                    return Err(bad("more chunks than the manifest can hold"));
                }
                let mut chunks = Vec::with_capacity(count as usize);
                let mut sum = 0u64;
                for _ in 0..count {
                    let id = take_digest(bytes, &mut at).ok_or_else(|| bad("truncated"))?;
                    let len = get_varint(bytes, &mut at)
                        .and_then(|l| u32::try_from(l).ok())
                        .filter(|&l| l <= crate::chunk::MAX_CHUNK_LEN)
                        .ok_or_else(|| bad("bad chunk length"))?;
                    sum = sum.saturating_add(u64::from(len));
                    chunks.push((id, len));
                }
                if sum != total_len {
                    return Err(bad("chunk lengths do not add up to the value length"));
                }
                let checksum = if chunks.len() == 1 {
                    chunks[0].0
                } else {
                    take_digest(bytes, &mut at).ok_or_else(|| bad("truncated"))?
                };
                if at != bytes.len() {
                    return Err(bad("trailing bytes"));
                }
                Ok(Manifest::Chunked(ChunkList {
                    total_len,
                    chunks,
                    checksum,
                }))
            }
            other => Err(bad(&format!("unknown kind {other}"))),
        }
    }
}

/// Unsigned LEB128 (DWARF, WebAssembly), by the `leb128` crate.
fn put_varint(out: &mut Vec<u8>, v: u64) {
    // Writing to a Vec cannot fail.
    let _ = leb128::write::unsigned(out, v);
}

/// Reads an unsigned LEB128 at `*at`, advancing it; `None` if truncated or over 64 bits.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut rest = bytes.get(*at..)?;
    let before = rest.len();
    let v = leb128::read::unsigned(&mut rest).ok()?;
    *at += before - rest.len();
    Some(v)
}

fn take_digest(bytes: &[u8], at: &mut usize) -> Option<Sha256Digest> {
    let raw = bytes.get(*at..*at + 32)?;
    *at += 32;
    let mut d = [0u8; 32];
    d.copy_from_slice(raw);
    Some(Sha256Digest(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A value of exactly the limit, cut into chunks of the smallest size with the longest
    /// length encoding, has a manifest within the manifest limit; one chunk more does not fit.
    #[test]
    fn the_value_limit_keeps_the_manifest_within_its_store() {
        let (max_manifest, min_chunk) = (100_000u64, 1 << 30);
        let limit = max_value_len(max_manifest, min_chunk);
        let n = limit / min_chunk as u64;
        let list = |n: u64| ChunkList {
            total_len: n * min_chunk as u64,
            chunks: (0..n)
                .map(|i| (Sha256Digest::of(&i.to_le_bytes()), u32::MAX))
                .collect(),
            checksum: Sha256Digest::of(b""),
        };
        assert!(Manifest::encode_chunked(&list(n)).len() as u64 <= max_manifest);
        assert!(Manifest::encode_chunked(&list(n + 2)).len() as u64 > max_manifest);
        assert_eq!(max_value_len(10, 4096), 0);
    }

    #[test]
    fn round_trips() {
        let one = ChunkList {
            total_len: 10,
            chunks: vec![(Sha256Digest::of(b"x"), 10)],
            checksum: Sha256Digest::of(b"x"),
        };
        let two = ChunkList {
            total_len: 70_000,
            chunks: vec![
                (Sha256Digest::of(b"a"), 65_536),
                (Sha256Digest::of(b"b"), 4_464),
            ],
            checksum: Sha256Digest::of(b"whole"),
        };
        for list in [one, two] {
            let bytes = Bytes::from(Manifest::encode_chunked(&list));
            assert_eq!(Manifest::decode(&bytes).unwrap(), Manifest::Chunked(list));
        }
        let inline = Bytes::from(Manifest::encode_inline(b"tiny"));
        assert_eq!(
            Manifest::decode(&inline).unwrap(),
            Manifest::Inline(Bytes::from_static(b"tiny"))
        );
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for bad in [
            &b""[..],
            b"\xd5",
            b"\x00\x00",
            b"\xd5\x07",
            b"\xd5\x01\xff",
            b"\xd5\x01\x05\x01",
        ] {
            assert!(
                Manifest::decode(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
