//! The batch journal: a redo log that makes a multi-key `write_batch` all or nothing.
//!
//! Protocol (each step durable before the next):
//! 1. every value of the batch is written to a synced temporary file beside its target;
//! 2. the journal, listing `(key, temporary file)` for each put and `key` for each delete, is
//!    written to a temporary file, synced, renamed to `journal/<id>.batch`, and the journal
//!    directory is synced — **the commit point**;
//! 3. the renames and unlinks are applied and their directories synced;
//! 4. the journal is removed and the journal directory synced.
//!
//! On open, every journal found is replayed (step 3 again, then step 4): a put whose temporary
//! file is gone was already renamed, and a delete of a missing file is a no-op, so replay is
//! idempotent. A crash before step 2 leaves only temporary files, which open removes: the batch
//! never happened. Step 4 must be durable before the store accepts new writes, or a stale
//! journal could later delete a key written after the batch.
//!
//! Encoding: `"HSJ1"`, entry count (u32 LE), entries (`1` put / `2` delete as u8, key length
//! u16 LE, key, and for puts the temporary name length u16 LE and name), CRC-32 (IEEE) of all
//! preceding bytes (u32 LE).

use hybridstore_core::{Error, Key, Result};

const MAGIC: &[u8; 4] = b"HSJ1";
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One journaled mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEntry {
    /// Rename the temporary file `temp` (a name in the key's directory) onto the key's record.
    Put { key: Key, temp: String },
    /// Remove the key's record.
    Delete { key: Key },
}

/// Encodes entries as a journal file body.
pub fn encode(entries: &[JournalEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        match e {
            JournalEntry::Put { key, temp } => {
                out.push(OP_PUT);
                out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(&(temp.len() as u16).to_le_bytes());
                out.extend_from_slice(temp.as_bytes());
            }
            JournalEntry::Delete { key } => {
                out.push(OP_DELETE);
                out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                out.extend_from_slice(key.as_bytes());
            }
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::corrupted("batch journal is truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }
}

/// Decodes a journal file body.
///
/// # Errors
/// `Corrupted` if the magic, CRC or structure is wrong.
pub fn decode(bytes: &[u8]) -> Result<Vec<JournalEntry>> {
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return Err(Error::corrupted("batch journal has a bad header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(Error::corrupted("batch journal fails its CRC-32"));
    }
    let mut r = Reader { buf: &body[4..] };
    let count = {
        let b = r.take(4)?;
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    let mut entries = Vec::new();
    for _ in 0..count {
        let op = r.take(1)?[0];
        let key_len = r.u16()?;
        let key = Key::new(r.take(key_len)?.to_vec())
            .map_err(|_| Error::corrupted("batch journal holds an invalid key"))?;
        entries.push(match op {
            OP_PUT => {
                let n = r.u16()?;
                let temp = String::from_utf8(r.take(n)?.to_vec())
                    .map_err(|_| Error::corrupted("batch journal temp name is not UTF-8"))?;
                if !temp.starts_with(crate::layout::TEMP_PREFIX) || temp.contains('/') {
                    return Err(Error::corrupted("batch journal names an unexpected file"));
                }
                JournalEntry::Put { key, temp }
            }
            OP_DELETE => JournalEntry::Delete { key },
            _ => return Err(Error::corrupted("batch journal has an unknown operation")),
        });
    }
    if !r.buf.is_empty() {
        return Err(Error::corrupted("batch journal has trailing bytes"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let entries = vec![
            JournalEntry::Put {
                key: Key::new(vec![0u8, 0xFF]).unwrap(),
                temp: ".tmp.abc".into(),
            },
            JournalEntry::Delete {
                key: Key::new("gone").unwrap(),
            },
        ];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes).unwrap(), entries);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} undetected");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
