//! What an [`ObjectStoreKv`](super::ObjectStoreKv) writes: value objects (a fixed-size
//! header, then the value) and batch records (every write of a batch, as one object).
//!
//! ```text
//! value object := header (HEADER_LEN bytes) | value
//! header       := "HSO1" | version 1 | content-type length (1) | flags (2, LE)
//!               | size (u64 LE) | created (u64 LE, ns since the Unix epoch)
//!               | modified (u64 LE, ns) | SHA-256 of the value (32)
//!               | content type (255, zero-padded) | CRC-32 of the bytes before (u32 LE)
//! flags        := bit 0: a content type is present
//!
//! batch record := "HSB1" | version 1 | write count (u32 LE)
//!               | count × ( kind (1: put, 2: delete) | key length (u16 LE) | key
//!                           | put only: object length (u64 LE) | value object )
//!               | CRC-32 of the bytes before (u32 LE)
//! ```
//!
//! The header has a fixed size, so a range of a value is one ranged GET at a known offset,
//! and `head` is one ranged GET of the header. Object metadata (S3 user metadata) is not
//! used: `LocalFileSystem` refuses attributes, and the header keeps the checksum with the
//! bytes it covers. Every length read back is checked against the bytes that hold it
//! before anything is allocated.

pub(crate) use hybridstore_core::nanos_since_epoch as nanos;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use hybridstore_core::{
    Error, Key, MAX_CONTENT_TYPE_LEN, MAX_KEY_LEN, ObjectMeta, Result, Sha256Digest,
};

const OBJECT_MAGIC: &[u8; 4] = b"HSO1";
const BATCH_MAGIC: &[u8; 4] = b"HSB1";
const VERSION: u8 = 1;
const FLAG_CONTENT_TYPE: u16 = 1;
const CONTENT_TYPE_AT: usize = 64;
const CRC_AT: usize = CONTENT_TYPE_AT + MAX_CONTENT_TYPE_LEN;

/// Bytes of a value object's header: 323.
pub const HEADER_LEN: usize = CRC_AT + 4;

/// The header of a value with metadata `meta`.
pub fn encode_header(meta: &ObjectMeta) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(OBJECT_MAGIC);
    h[4] = VERSION;
    let mut flags = 0u16;
    if let Some(ct) = &meta.content_type {
        // PutOptions::validate bounds it; a longer one never reaches here.
        let ct = &ct.as_bytes()[..ct.len().min(MAX_CONTENT_TYPE_LEN)];
        h[5] = ct.len() as u8;
        h[CONTENT_TYPE_AT..CONTENT_TYPE_AT + ct.len()].copy_from_slice(ct);
        flags |= FLAG_CONTENT_TYPE;
    }
    h[6..8].copy_from_slice(&flags.to_le_bytes());
    h[8..16].copy_from_slice(&meta.size.to_le_bytes());
    h[16..24].copy_from_slice(&nanos(meta.created).to_le_bytes());
    h[24..32].copy_from_slice(&nanos(meta.modified).to_le_bytes());
    h[32..64].copy_from_slice(meta.checksum.as_bytes());
    let crc = crc32fast::hash(&h[..CRC_AT]);
    h[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The value object for `value` with metadata `meta`.
pub fn encode_object(meta: &ObjectMeta, value: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + value.len());
    out.put_slice(&encode_header(meta));
    out.put_slice(value);
    out.freeze()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The metadata in a header (the first [`HEADER_LEN`] bytes of `bytes`).
///
/// # Errors
/// `Corrupted` if the bytes are too short, the magic, version or CRC-32 is wrong, or a field
/// is out of range.
pub fn decode_header(bytes: &[u8]) -> Result<ObjectMeta> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::corrupted(format!(
            "object is {} bytes, shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    let h = &bytes[..HEADER_LEN];
    if &h[0..4] != OBJECT_MAGIC || h[4] != VERSION {
        return Err(Error::corrupted("object header: wrong magic or version"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[CRC_AT..]);
    if crc32fast::hash(&h[..CRC_AT]) != u32::from_le_bytes(crc) {
        return Err(Error::corrupted("object header: CRC-32 mismatch"));
    }
    let flags = u16::from_le_bytes([h[6], h[7]]);
    let content_type = if flags & FLAG_CONTENT_TYPE != 0 {
        let len = usize::from(h[5]);
        let ct = std::str::from_utf8(&h[CONTENT_TYPE_AT..CONTENT_TYPE_AT + len])
            .map_err(|_| Error::corrupted("object header: content type is not UTF-8"))?;
        Some(ct.to_string())
    } else {
        None
    };
    let time = |at| UNIX_EPOCH + Duration::from_nanos(u64_at(h, at));
    let mut checksum = [0u8; 32];
    checksum.copy_from_slice(&h[32..64]);
    Ok(ObjectMeta {
        size: u64_at(h, 8),
        created: time(16),
        modified: time(24),
        checksum: Sha256Digest(checksum),
        content_type,
        dedup_hash: None,
    })
}

/// The metadata and value of a whole value object, the value checked against its size and
/// SHA-256.
///
/// # Errors
/// `Corrupted` for a damaged header, a value of the wrong length or checksum.
pub fn decode_object(bytes: Bytes) -> Result<(ObjectMeta, Bytes)> {
    let meta = decode_header(&bytes)?;
    let value = bytes.slice(HEADER_LEN..);
    if value.len() as u64 != meta.size {
        return Err(Error::corrupted(format!(
            "value is {} bytes; its header says {}",
            value.len(),
            meta.size
        )));
    }
    Ok((meta, value))
}

/// One write of a batch record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedWrite {
    /// Store the value object `object` under `key`.
    Put {
        /// The key.
        key: Key,
        /// The whole value object (header and value).
        object: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Key,
    },
}

/// A batch record holding `writes`.
pub fn encode_record(writes: &[RecordedWrite]) -> Bytes {
    let len: usize = writes
        .iter()
        .map(|w| match w {
            RecordedWrite::Put { key, object } => 11 + key.len() + object.len(),
            RecordedWrite::Delete { key } => 3 + key.len(),
        })
        .sum();
    let mut out = BytesMut::with_capacity(13 + len);
    out.put_slice(BATCH_MAGIC);
    out.put_u8(VERSION);
    out.put_u32_le(writes.len() as u32);
    for w in writes {
        match w {
            RecordedWrite::Put { key, object } => {
                out.put_u8(1);
                out.put_u16_le(key.len() as u16);
                out.put_slice(key.as_bytes());
                out.put_u64_le(object.len() as u64);
                out.put_slice(object);
            }
            RecordedWrite::Delete { key } => {
                out.put_u8(2);
                out.put_u16_le(key.len() as u16);
                out.put_slice(key.as_bytes());
            }
        }
    }
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out.freeze()
}

/// The writes of a batch record (value objects are slices of `bytes`, not copies).
///
/// # Errors
/// `Corrupted` if the magic, version or CRC-32 is wrong or a length runs past the record.
pub fn decode_record(bytes: &Bytes) -> Result<Vec<RecordedWrite>> {
    let bad = |what: &str| Error::corrupted(format!("batch record: {what}"));
    if bytes.len() < 13 || &bytes[0..4] != BATCH_MAGIC || bytes[4] != VERSION {
        return Err(bad("wrong magic or version"));
    }
    let body_end = bytes.len() - 4;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[body_end..]);
    if crc32fast::hash(&bytes[..body_end]) != u32::from_le_bytes(crc) {
        return Err(bad("CRC-32 mismatch"));
    }
    let count = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let mut at = 9;
    let mut take = |n: usize| -> Result<std::ops::Range<usize>> {
        if n > body_end - at {
            return Err(bad("a length runs past the end"));
        }
        at += n;
        Ok(at - n..at)
    };
    // Each write takes at least 4 bytes: a count beyond that is damage, not an allocation.
    if count > body_end / 4 {
        return Err(bad("write count larger than the record"));
    }
    let mut writes = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = bytes[take(1)?.start];
        let r = take(2)?;
        let key_len = usize::from(u16::from_le_bytes([bytes[r.start], bytes[r.start + 1]]));
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(bad("key length out of range"));
        }
        let key = Key::new(bytes.slice(take(key_len)?)).map_err(|_| bad("invalid key"))?;
        match kind {
            1 => {
                let r = take(8)?;
                let len = usize::try_from(u64_at(bytes, r.start))
                    .map_err(|_| bad("object length out of range"))?;
                let object = bytes.slice(take(len)?);
                writes.push(RecordedWrite::Put { key, object });
            }
            2 => writes.push(RecordedWrite::Delete { key }),
            _ => return Err(bad("unknown write kind")),
        }
    }
    if at != body_end {
        return Err(bad("bytes after the last write"));
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hybridstore_core::PutOptions;

    fn meta(value: &[u8], ct: Option<&str>) -> ObjectMeta {
        let mut options = PutOptions::default();
        options.content_type = ct.map(str::to_string);
        ObjectMeta::for_value(value, &options, None)
    }

    #[test]
    fn objects_round_trip_and_damage_is_caught() {
        for ct in [None, Some(""), Some("text/html; charset=utf-8")] {
            let m = meta(b"hello", ct);
            let object = encode_object(&m, b"hello");
            let (back, value) = decode_object(object.clone()).unwrap();
            assert_eq!(back, m);
            assert_eq!(&value[..], b"hello");
            for at in [0, 5, 9, 40, HEADER_LEN - 1] {
                let mut bad = object.to_vec();
                bad[at] ^= 1;
                assert!(decode_object(Bytes::from(bad)).is_err(), "flip at {at}");
            }
            assert!(decode_object(object.slice(..object.len() - 1)).is_err());
            assert!(decode_object(object.slice(..10)).is_err());
        }
    }

    #[test]
    fn records_round_trip_and_hostile_lengths_are_refused() {
        let k = |s: &str| Key::new(s.to_string()).unwrap();
        let writes = vec![
            RecordedWrite::Put {
                key: k("a"),
                object: encode_object(&meta(b"x", None), b"x"),
            },
            RecordedWrite::Delete { key: k("b") },
        ];
        let record = encode_record(&writes);
        assert_eq!(decode_record(&record).unwrap(), writes);
        for cut in [0, 4, 12, record.len() - 1] {
            assert!(decode_record(&record.slice(..cut)).is_err());
        }
        // A huge count or object length with a valid CRC is refused without allocating.
        let mut forged = BytesMut::new();
        forged.put_slice(BATCH_MAGIC);
        forged.put_u8(VERSION);
        forged.put_u32_le(u32::MAX);
        forged.put_u8(1);
        forged.put_u16_le(1);
        forged.put_u8(b'a');
        forged.put_u64_le(u64::MAX);
        let crc = crc32fast::hash(&forged);
        forged.put_u32_le(crc);
        assert!(decode_record(&forged.freeze()).is_err());
    }
}
