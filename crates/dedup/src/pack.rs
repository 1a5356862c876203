//! Pack files: many chunk blobs in one value of the backing store, with their index at the end,
//! the layout restic and borg use so that tens of thousands of small chunks cost a few large
//! writes (and one `fsync` each) instead of one file each.
//!
//! ```text
//! pack    := blob* index footer
//! index   := entry*                      (48 bytes each, in blob order)
//! entry   := chunk id (32) | offset (u64 LE) | blob length (u32 LE) | raw length (u32 LE)
//! footer  := entry count (u32 LE) | CRC-32 of index (u32 LE) | magic "HSP1"
//! ```
//!
//! A pack is written once, whole, by one `put` (durable when it returns) and never changed;
//! garbage collection writes live chunks into a new pack before it deletes an old one.

use hybridstore_core::{Error, Result};

use crate::chunk::ChunkId;

/// Bytes of one index entry.
pub const ENTRY_LEN: usize = 48;
/// Bytes of the footer.
pub const FOOTER_LEN: usize = 12;
const MAGIC: &[u8; 4] = b"HSP1";

/// Where a chunk's blob sits in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The chunk id.
    pub id: ChunkId,
    /// Offset of the blob from the start of the pack, in bytes.
    pub offset: u64,
    /// Blob length (header included), in bytes.
    pub blob_len: u32,
    /// Plaintext length, in bytes.
    pub raw_len: u32,
}

impl PackEntry {
    /// The byte range of the blob in its pack.
    pub fn blob_range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + u64::from(self.blob_len)
    }
}

/// Appends the index and footer for `entries` to `pack`.
pub fn finish(pack: &mut Vec<u8>, entries: &[PackEntry]) {
    let start = pack.len();
    for e in entries {
        pack.extend_from_slice(e.id.as_bytes());
        pack.extend_from_slice(&e.offset.to_le_bytes());
        pack.extend_from_slice(&e.blob_len.to_le_bytes());
        pack.extend_from_slice(&e.raw_len.to_le_bytes());
    }
    let crc = crc32fast::hash(&pack[start..]);
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    pack.extend_from_slice(&count.to_le_bytes());
    pack.extend_from_slice(&crc.to_le_bytes());
    pack.extend_from_slice(MAGIC);
}

/// Parses a footer: the entry count and the CRC the index must have.
///
/// # Errors
/// `Corrupted` for a bad magic or a count that cannot fit a pack of `pack_len` bytes.
pub fn parse_footer(footer: &[u8], pack_len: u64) -> Result<(usize, u32)> {
    if footer.len() != FOOTER_LEN || &footer[8..12] != MAGIC {
        return Err(Error::corrupted("pack footer has a bad magic number"));
    }
    let count = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]) as usize;
    let crc = u32::from_le_bytes([footer[4], footer[5], footer[6], footer[7]]);
    if (count as u64) * (ENTRY_LEN as u64) + FOOTER_LEN as u64 > pack_len {
        return Err(Error::corrupted("pack footer counts more entries than fit"));
    }
    Ok((count, crc))
}

/// Parses the index of a pack whose blobs occupy `0..blobs_end`.
///
/// # Errors
/// `Corrupted` if the CRC fails or an entry points outside the blob area.
pub fn parse_index(index: &[u8], crc: u32, blobs_end: u64) -> Result<Vec<PackEntry>> {
    if crc32fast::hash(index) != crc {
        return Err(Error::corrupted("pack index fails its CRC-32"));
    }
    let mut entries = Vec::with_capacity(index.len() / ENTRY_LEN);
    for raw in index.chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[..32]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let u32_at =
            |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let entry = PackEntry {
            id: ChunkId::from(hybridstore_core::Sha256Digest(id)),
            offset: u64_at(32),
            blob_len: u32_at(40),
            raw_len: u32_at(44),
        };
        if entry
            .offset
            .checked_add(u64::from(entry.blob_len))
            .is_none_or(|end| end > blobs_end)
        {
            return Err(Error::corrupted("pack index entry points outside the pack"));
        }
        if entry.raw_len > crate::chunk::MAX_CHUNK_LEN {
            return Err(Error::corrupted(format!(
                "pack index entry says a chunk is {} bytes, more than any chunk can be",
                entry.raw_len
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridstore_core::Sha256Digest;

    #[test]
    fn index_round_trip_and_damage() {
        let mut pack = vec![7u8; 100];
        let entries = vec![
            PackEntry {
                id: Sha256Digest::of(b"a"),
                offset: 0,
                blob_len: 60,
                raw_len: 90,
            },
            PackEntry {
                id: Sha256Digest::of(b"b"),
                offset: 60,
                blob_len: 40,
                raw_len: 40,
            },
        ];
        finish(&mut pack, &entries);
        let len = pack.len() as u64;
        let (count, crc) = parse_footer(&pack[pack.len() - FOOTER_LEN..], len).unwrap();
        assert_eq!(count, 2);
        let index = &pack[100..100 + count * ENTRY_LEN];
        assert_eq!(parse_index(index, crc, 100).unwrap(), entries);
        let mut bad = index.to_vec();
        bad[40] ^= 1;
        assert!(parse_index(&bad, crc, 100).is_err());

        // Regression (issue 15, defect 4): an index whose CRC is right but which says a chunk
        // is 4 GiB long sized the decode buffer; it is damage.
        let huge = [PackEntry {
            raw_len: u32::MAX,
            ..entries[0]
        }];
        let mut pack = vec![7u8; 100];
        finish(&mut pack, &huge);
        let len = pack.len() as u64;
        let (count, crc) = parse_footer(&pack[pack.len() - FOOTER_LEN..], len).unwrap();
        let index = &pack[100..100 + count * ENTRY_LEN];
        let err = parse_index(index, crc, 100).unwrap_err();
        assert_eq!(err.kind(), hybridstore_core::ErrorKind::Corrupted);
        assert!(parse_footer(&pack[..FOOTER_LEN], len).is_err());
    }
}
