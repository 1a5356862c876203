//! Log segments: what one push adds to the remote, as one object.
//!
//! ```text
//! segment := "HSG1" | version 1 | LZ4 block with its plaintext length prepended (u32 LE)
//! plain   := entry count (u32 LE) | count × entry | CRC-32 of the bytes before (u32 LE)
//! entry   := key length (u16 LE) | key | state
//! state   := 0 | deleted at (u64 LE, ns since the Unix epoch)           -- a tombstone
//!          | 1 | value header (ObjectStoreKv's, with size, SHA-256, times, content type)
//!            | manifest length (u32 LE) | dedup manifest (inline value or chunk list)
//! ```
//!
//! Segments are numbered from 1 (`log/00000000000000000001`, …) and written with a
//! conditional create, so two devices pushing at once cannot both write generation `n`: the
//! loser reads the winner's segment and tries `n + 1`. The remote's state is every segment
//! folded in order, later entries winning. Lengths are checked before anything is
//! allocated; a plaintext is at most [`MAX_SEGMENT_PLAIN_LEN`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use hybridstore_core::{Error, Key, MAX_KEY_LEN, ObjectMeta, Result, Sha256Digest};

use crate::object_kv::format::{HEADER_LEN, decode_header, encode_header, nanos};

const MAGIC: &[u8; 4] = b"HSG1";
const VERSION: u8 = 1;

/// The largest segment plaintext read back, in bytes: 1 GiB. A push writes segments of a
/// few MiB (its values are in packs; segments hold manifests and small values).
pub const MAX_SEGMENT_PLAIN_LEN: usize = 1 << 30;

/// The state of one key on the remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Deleted, at this time.
    Tombstone {
        /// When the push that carried the deletion ran.
        deleted_at: SystemTime,
    },
    /// A value: its metadata and its manifest (the value inline, or its chunks in packs).
    Value {
        /// Size, SHA-256, times, content type.
        meta: ObjectMeta,
        /// The encoded dedup manifest.
        manifest: Bytes,
    },
}

impl RemoteState {
    /// The value's SHA-256, `None` for a tombstone.
    pub fn checksum(&self) -> Option<Sha256Digest> {
        match self {
            RemoteState::Tombstone { .. } => None,
            RemoteState::Value { meta, .. } => Some(meta.checksum),
        }
    }
}

/// Appends the encoding of `state` (no key).
pub fn put_state(out: &mut BytesMut, state: &RemoteState) {
    match state {
        RemoteState::Tombstone { deleted_at } => {
            out.put_u8(0);
            out.put_u64_le(nanos(*deleted_at));
        }
        RemoteState::Value { meta, manifest } => {
            out.put_u8(1);
            out.put_slice(&encode_header(meta));
            out.put_u32_le(manifest.len() as u32);
            out.put_slice(manifest);
        }
    }
}

/// A reader of bounded fields over a byte buffer.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
    end: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>> {
        if n > self.end - self.at {
            return Err(Error::corrupted("sync segment: a length runs past the end"));
        }
        self.at += n;
        Ok(self.at - n..self.at)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes[self.take(1)?.start])
    }
    fn u16(&mut self) -> Result<u16> {
        let r = self.take(2)?;
        Ok(u16::from_le_bytes([
            self.bytes[r.start],
            self.bytes[r.start + 1],
        ]))
    }
    fn u32(&mut self) -> Result<u32> {
        let r = self.take(4)?;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[r]);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64> {
        let r = self.take(8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[r]);
        Ok(u64::from_le_bytes(b))
    }
    fn state(&mut self) -> Result<RemoteState> {
        match self.u8()? {
            0 => Ok(RemoteState::Tombstone {
                deleted_at: UNIX_EPOCH + Duration::from_nanos(self.u64()?),
            }),
            1 => {
                let r = self.take(HEADER_LEN)?;
                let meta = decode_header(&self.bytes[r])?;
                let len = self.u32()? as usize;
                let manifest = self.bytes.slice(self.take(len)?);
                Ok(RemoteState::Value { meta, manifest })
            }
            _ => Err(Error::corrupted("sync segment: unknown entry kind")),
        }
    }
}

/// Decodes a state written by [`put_state`] (the whole of `bytes`).
///
/// # Errors
/// `Corrupted` for anything else.
pub fn decode_state(bytes: &Bytes) -> Result<RemoteState> {
    let mut r = Reader {
        bytes,
        at: 0,
        end: bytes.len(),
    };
    let state = r.state()?;
    if r.at != r.end {
        return Err(Error::corrupted("sync state: trailing bytes"));
    }
    Ok(state)
}

/// The segment holding `entries`.
pub fn encode_segment(entries: &[(Key, RemoteState)]) -> Bytes {
    let mut plain = BytesMut::new();
    plain.put_u32_le(entries.len() as u32);
    for (key, state) in entries {
        plain.put_u16_le(key.len() as u16);
        plain.put_slice(key.as_bytes());
        put_state(&mut plain, state);
    }
    let crc = crc32fast::hash(&plain);
    plain.put_u32_le(crc);
    let compressed = lz4_flex::block::compress_prepend_size(&plain);
    let mut out = BytesMut::with_capacity(5 + compressed.len());
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_slice(&compressed);
    out.freeze()
}

/// The entries of a segment, in order.
///
/// # Errors
/// `Corrupted` for a wrong magic or version, a plaintext longer than
/// [`MAX_SEGMENT_PLAIN_LEN`], LZ4 data that does not decode, a CRC-32 mismatch, or a length
/// that runs past the end.
pub fn decode_segment(bytes: &[u8]) -> Result<Vec<(Key, RemoteState)>> {
    let bad = |what: &str| Error::corrupted(format!("sync segment: {what}"));
    if bytes.len() < 9 || &bytes[0..4] != MAGIC || bytes[4] != VERSION {
        return Err(bad("wrong magic or version"));
    }
    let body = &bytes[5..];
    let plain_len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    // Checked before lz4_flex allocates the plaintext it announces.
    if !(8..=MAX_SEGMENT_PLAIN_LEN).contains(&plain_len) {
        return Err(bad("plaintext length out of range"));
    }
    let plain = lz4_flex::block::decompress(&body[4..], plain_len)
        .map_err(|e| bad(&format!("LZ4 data does not decode: {e}")))?;
    if plain.len() != plain_len {
        return Err(bad("plaintext is shorter than announced"));
    }
    let crc_at = plain_len - 4;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&plain[crc_at..]);
    if crc32fast::hash(&plain[..crc_at]) != u32::from_le_bytes(crc) {
        return Err(bad("CRC-32 mismatch"));
    }
    let plain = Bytes::from(plain);
    let mut r = Reader {
        bytes: &plain,
        at: 0,
        end: crc_at,
    };
    let count = r.u32()? as usize;
    // Every entry takes at least 12 bytes: a larger count is damage, not an allocation.
    if count > crc_at / 12 {
        return Err(bad("entry count larger than the segment"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = usize::from(r.u16()?);
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(bad("key length out of range"));
        }
        let key = Key::new(plain.slice(r.take(key_len)?)).map_err(|_| bad("invalid key"))?;
        entries.push((key, r.state()?));
    }
    if r.at != r.end {
        return Err(bad("bytes after the last entry"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hybridstore_core::PutOptions;
    use hybridstore_dedup::Manifest;

    #[test]
    fn segments_round_trip_and_damage_is_caught() {
        let value = b"hello";
        let entries = vec![
            (
                Key::new("a").unwrap(),
                RemoteState::Value {
                    meta: ObjectMeta::for_value(value, &PutOptions::default(), None),
                    manifest: Bytes::from(Manifest::encode_inline(value)),
                },
            ),
            (
                Key::new(vec![0u8, 0xFF]).unwrap(),
                RemoteState::Tombstone {
                    deleted_at: UNIX_EPOCH + Duration::from_secs(5),
                },
            ),
        ];
        let segment = encode_segment(&entries);
        assert_eq!(decode_segment(&segment).unwrap(), entries);
        for at in [0, 4, 5, 9, segment.len() - 1] {
            let mut bad = segment.to_vec();
            bad[at] ^= 0x41;
            assert!(decode_segment(&bad).is_err(), "flip at {at}");
        }
        // An announced plaintext of 4 GiB is refused before anything is allocated.
        let mut huge = segment.to_vec();
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_segment(&huge).is_err());
        for (_, state) in &entries {
            let mut out = BytesMut::new();
            put_state(&mut out, state);
            assert_eq!(&decode_state(&out.freeze()).unwrap(), state);
        }
    }
}
