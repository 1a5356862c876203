//! The on-disk record: one file per key, header then value.
//!
//! ```text
//! offset size  field
//!      0    4  magic "HSKV"
//!      4    1  format version (1)
//!      5    1  flags: bit 0 = dedup hash present, bit 1 = content type present
//!      6    2  key length (LE)
//!      8    2  content type length (LE)
//!     10    2  reserved, 0
//!     12    8  value length in bytes (LE)
//!     20    8  created, nanoseconds since the Unix epoch (LE)
//!     28    8  modified, nanoseconds since the Unix epoch (LE)
//!     36   32  SHA-256 of the value
//!     68   32  dedup hash (zero if absent)
//!    100    4  CRC-32 (IEEE) of bytes 0..100, the key and the content type (LE)
//!    104    …  key, content type, value
//! ```
//!
//! The header CRC catches a damaged header before any length in it is trusted; the SHA-256
//! catches a damaged value. Value and metadata live in one file, so one `rename` replaces both.

use hybridstore_core::nanos_since_epoch as nanos;
use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use hybridstore_core::{Error, Key, ObjectMeta, Result, Sha256Digest};

const MAGIC: &[u8; 4] = b"HSKV";
const VERSION: u8 = 1;
/// Size of the fixed part of the header in bytes.
pub const FIXED_HEADER_LEN: usize = 104;
const FLAG_DEDUP: u8 = 1;
const FLAG_CONTENT_TYPE: u8 = 2;

/// A decoded header: the key it belongs to and the value's metadata.
#[derive(Debug)]
pub struct RecordHeader {
    pub key: Key,
    pub meta: ObjectMeta,
    /// Bytes before the value (fixed header, key, content type).
    pub header_len: u64,
}

/// Bytes of the header of a record for `key` with this content type: fixed part, key,
/// content type.
pub fn header_len(key: &Key, content_type: Option<&str>) -> usize {
    FIXED_HEADER_LEN + key.len() + content_type.map_or(0, str::len)
}

/// Encodes the header for `key` and `meta`.
pub fn encode_header(key: &Key, meta: &ObjectMeta) -> Vec<u8> {
    let content_type = meta.content_type.as_deref().unwrap_or("").as_bytes();
    let mut flags = 0;
    if meta.dedup_hash.is_some() {
        flags |= FLAG_DEDUP;
    }
    if meta.content_type.is_some() {
        flags |= FLAG_CONTENT_TYPE;
    }
    let mut h = Vec::with_capacity(header_len(key, meta.content_type.as_deref()));
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.push(flags);
    // Key length <= MAX_KEY_LEN (1024) and content type <= MAX_CONTENT_TYPE_LEN (255), both
    // checked before a record is built, so both fit in u16.
    h.extend_from_slice(&(key.len() as u16).to_le_bytes());
    h.extend_from_slice(&(content_type.len() as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&meta.size.to_le_bytes());
    h.extend_from_slice(&nanos(meta.created).to_le_bytes());
    h.extend_from_slice(&nanos(meta.modified).to_le_bytes());
    h.extend_from_slice(meta.checksum.as_bytes());
    h.extend_from_slice(
        meta.dedup_hash
            .as_ref()
            .map_or(&[0u8; 32], |d| d.as_bytes()),
    );
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h);
    crc.update(key.as_bytes());
    crc.update(content_type);
    h.extend_from_slice(&crc.finalize().to_le_bytes());
    h.extend_from_slice(key.as_bytes());
    h.extend_from_slice(content_type);
    h
}

/// Writes a whole record (header, then value) to `file`.
pub fn write_record(file: &mut File, key: &Key, meta: &ObjectMeta, value: &[u8]) -> Result<()> {
    let header = encode_header(key, meta);
    file.write_all(&header)?;
    file.write_all(value)?;
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn digest_at(b: &[u8], at: usize) -> Sha256Digest {
    let mut d = [0u8; 32];
    d.copy_from_slice(&b[at..at + 32]);
    Sha256Digest(d)
}

/// Reads and validates the header at the start of `file`.
///
/// # Errors
/// `Corrupted` if the magic, version, lengths or CRC are wrong or the file is too short;
/// I/O errors otherwise.
pub fn read_header(file: &mut File) -> Result<RecordHeader> {
    let mut fixed = [0u8; FIXED_HEADER_LEN];
    read_exact_or_corrupt(file, &mut fixed, "record header")?;
    if &fixed[0..4] != MAGIC {
        return Err(Error::corrupted("record has a bad magic number"));
    }
    if fixed[4] != VERSION {
        return Err(Error::corrupted(format!(
            "record format version {} is unknown",
            fixed[4]
        )));
    }
    let flags = fixed[5];
    let key_len = u16_at(&fixed, 6);
    let ct_len = u16_at(&fixed, 8);
    if key_len == 0
        || key_len > hybridstore_core::MAX_KEY_LEN
        || ct_len > hybridstore_core::MAX_CONTENT_TYPE_LEN
    {
        return Err(Error::corrupted("record header has impossible lengths"));
    }
    let mut var = vec![0u8; key_len + ct_len];
    read_exact_or_corrupt(file, &mut var, "record key")?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fixed[..100]);
    crc.update(&var);
    let stored_crc = u32::from_le_bytes([fixed[100], fixed[101], fixed[102], fixed[103]]);
    if crc.finalize() != stored_crc {
        return Err(Error::corrupted("record header fails its CRC-32"));
    }
    let key = Key::new(var[..key_len].to_vec())?;
    let content_type = if flags & FLAG_CONTENT_TYPE != 0 {
        Some(
            String::from_utf8(var[key_len..].to_vec())
                .map_err(|_| Error::corrupted("record content type is not UTF-8"))?,
        )
    } else {
        None
    };
    let meta = ObjectMeta {
        size: u64_at(&fixed, 12),
        created: UNIX_EPOCH + Duration::from_nanos(u64_at(&fixed, 20)),
        modified: UNIX_EPOCH + Duration::from_nanos(u64_at(&fixed, 28)),
        checksum: digest_at(&fixed, 36),
        content_type,
        dedup_hash: (flags & FLAG_DEDUP != 0).then(|| digest_at(&fixed, 68)),
    };
    Ok(RecordHeader {
        key,
        meta,
        header_len: (FIXED_HEADER_LEN + key_len + ct_len) as u64,
    })
}

/// Reads the value that follows `header`, checking its length against the file and, if
/// `verify` is set, its SHA-256.
///
/// # Errors
/// `Corrupted` if the file is shorter or longer than the header says or the checksum differs.
pub fn read_value(file: &mut File, header: &RecordHeader, verify: bool) -> Result<Vec<u8>> {
    // Bounds the allocation below by the file's real length.
    check_length(file, header)?;
    let size = usize::try_from(header.meta.size)
        .map_err(|_| Error::corrupted("value larger than the address space"))?;
    let mut value = vec![0u8; size];
    read_exact_or_corrupt(file, &mut value, "record value")?;
    if verify && Sha256Digest::of(&value) != header.meta.checksum {
        return Err(Error::corrupted(
            "value does not match its SHA-256 checksum",
        ));
    }
    Ok(value)
}

/// Checks that the file is exactly header plus value long.
///
/// # Errors
/// `Corrupted` if it is shorter or longer; I/O errors.
pub fn check_length(file: &File, header: &RecordHeader) -> Result<()> {
    let file_len = file.metadata()?.len();
    // The header's value length is untrusted until it matches the file: checked arithmetic,
    // so a damaged (but CRC-consistent) size cannot wrap around to the file's length.
    let Some(want) = header.header_len.checked_add(header.meta.size) else {
        return Err(Error::corrupted(format!(
            "record header says the value is {} bytes, more than any file can hold",
            header.meta.size
        )));
    };
    if file_len != want {
        return Err(Error::corrupted(format!(
            "record is {file_len} bytes; header says {want}"
        )));
    }
    Ok(())
}

fn read_exact_or_corrupt(file: &mut File, buf: &mut [u8], what: &str) -> Result<()> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupted(format!("{what} is truncated"))
        } else {
            e.into()
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hybridstore_core::PutOptions;

    /// A header whose CRC is right but whose value length is so large that `header_len + size`
    /// overflows must be `Corrupted`, not an overflow panic.
    #[test]
    fn a_value_length_past_u64_is_corrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let key = Key::new("k").unwrap();
        let mut meta = ObjectMeta::for_value(b"abc", &PutOptions::default(), None);
        meta.size = u64::MAX - 1;
        let mut file = File::create(&path).unwrap();
        file.write_all(&encode_header(&key, &meta)).unwrap();
        file.write_all(b"abc").unwrap();
        drop(file);
        let mut file = File::open(&path).unwrap();
        let header = read_header(&mut file).unwrap();
        assert_eq!(
            header.meta.size, meta.size,
            "the damaged size passed the CRC"
        );
        let err = read_value(&mut file, &header, true).unwrap_err();
        assert_eq!(err.kind(), hybridstore_core::ErrorKind::Corrupted, "{err}");
    }
}
