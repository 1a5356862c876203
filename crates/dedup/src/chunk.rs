//! One chunk as stored: a 9-byte header, then the bytes raw or LZ4-compressed.
//!
//! ```text
//! blob := encoding (u8: 0 = raw, 1 = LZ4 block) | raw length (u32 LE)
//!         | CRC-32 of the encoding, raw length and payload (u32 LE) | payload
//! ```
//!
//! A chunk's id is the SHA-256 of its plaintext (FIPS 180-4), so equal bytes get equal ids
//! wherever they come from, and a read re-hashes what it decoded: damaged content is reported
//! as `Corrupted`, never returned. The CRC catches the damage the hash cannot see: LZ4 can
//! decode a damaged block to the right bytes (a match offset changed to another multiple of a
//! repeating pattern's period), and such a blob is still rot to be reported. Compression is LZ4's block format (`lz4_flex`,
//! the format of the reference LZ4 library); a chunk keeps it only if it is smaller than the
//! plaintext.

use bytes::Bytes;
use hybridstore_core::{Error, Result, Sha256Digest};

/// A chunk id: SHA-256 of the chunk's plaintext.
pub type ChunkId = Sha256Digest;

/// Bytes of header before each blob's payload.
pub const BLOB_HEADER_LEN: usize = 9;

const ENCODING_RAW: u8 = 0;
const ENCODING_LZ4: u8 = 1;

/// The blob of `data`: LZ4 if that is smaller, raw otherwise, behind the header.
///
/// `data` must be at most `u32::MAX` bytes (the chunker's maximum is 16 MiB).
pub fn encode_blob(data: &[u8]) -> Vec<u8> {
    let raw_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let bound = lz4_flex::block::get_maximum_output_size(data.len());
    let mut blob = vec![0u8; BLOB_HEADER_LEN + bound];
    blob[1..5].copy_from_slice(&raw_len.to_le_bytes());
    match lz4_flex::block::compress_into(data, &mut blob[BLOB_HEADER_LEN..]) {
        Ok(n) if n < data.len() => {
            blob[0] = ENCODING_LZ4;
            blob.truncate(BLOB_HEADER_LEN + n);
        }
        _ => {
            blob[0] = ENCODING_RAW;
            blob.truncate(BLOB_HEADER_LEN);
            blob.extend_from_slice(data);
        }
    }
    let crc = blob_crc(&blob);
    blob[5..9].copy_from_slice(&crc.to_le_bytes());
    blob
}

/// CRC-32 (IEEE) of a blob's encoding byte, raw length and payload.
fn blob_crc(blob: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&blob[..5]);
    crc.update(&blob[BLOB_HEADER_LEN..]);
    crc.finalize()
}

/// The longest chunk any chunker configuration produces, in bytes: fastcdc's `MAXIMUM_MAX`
/// (16 MiB, the bound [`ChunkerConfig::validate`](crate::ChunkerConfig::validate) enforces).
/// Lengths read from packs and manifests above it are damage.
pub const MAX_CHUNK_LEN: u32 = fastcdc::v2020::MAXIMUM_MAX as u32;

/// Decodes `blob` and checks it is the chunk `id` of `raw_len` bytes.
///
/// # Errors
/// `Corrupted` if the blob fails its CRC, the header is damaged, the LZ4 data does not decode to exactly `raw_len`
/// bytes, or the plaintext's SHA-256 is not `id`.
pub fn decode_blob(id: &ChunkId, raw_len: u32, blob: &[u8]) -> Result<Bytes> {
    let damaged = |what: &str| Error::corrupted(format!("chunk {id}: {what}"));
    if blob.len() < BLOB_HEADER_LEN {
        return Err(damaged("blob is shorter than its header"));
    }
    let stored_crc = u32::from_le_bytes([blob[5], blob[6], blob[7], blob[8]]);
    if blob_crc(blob) != stored_crc {
        return Err(damaged("blob fails its CRC-32"));
    }
    let stored_len = u32::from_le_bytes([blob[1], blob[2], blob[3], blob[4]]);
    if stored_len != raw_len {
        return Err(damaged("blob header length differs from the index"));
    }
    // `raw_len` comes from a pack index on disk: bound it before it sizes an allocation.
    if raw_len > MAX_CHUNK_LEN {
        return Err(damaged(&format!(
            "length {raw_len} exceeds the largest chunk ({MAX_CHUNK_LEN} bytes)"
        )));
    }
    let payload = &blob[BLOB_HEADER_LEN..];
    let plain = match blob[0] {
        ENCODING_RAW => payload.to_vec(),
        ENCODING_LZ4 => {
            // The index says how long the plaintext is, so a damaged block cannot make us
            // allocate more than the chunker's maximum chunk.
            let mut out = vec![0u8; raw_len as usize];
            match lz4_flex::block::decompress_into(payload, &mut out) {
                Ok(n) if n == out.len() => out,
                Ok(_) => return Err(damaged("LZ4 data decodes to the wrong length")),
                Err(e) => return Err(damaged(&format!("LZ4 data does not decode: {e}"))),
            }
        }
        other => return Err(damaged(&format!("unknown encoding {other}"))),
    };
    if plain.len() != raw_len as usize {
        return Err(damaged("raw blob has the wrong length"));
    }
    if Sha256Digest::of(&plain) != *id {
        return Err(damaged("content does not match its SHA-256 id"));
    }
    Ok(Bytes::from(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_compressible_and_random() {
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let random: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for data in [&text[..], &random[..], b""] {
            let blob = encode_blob(data);
            let id = Sha256Digest::of(data);
            assert!(blob.len() <= data.len() + BLOB_HEADER_LEN);
            let back = decode_blob(&id, data.len() as u32, &blob).unwrap();
            assert_eq!(&back[..], data);
        }
        assert_eq!(encode_blob(&text)[0], ENCODING_LZ4);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let data = b"some chunk text, some chunk text, some chunk text".repeat(20);
        let id = Sha256Digest::of(&data);
        let blob = encode_blob(&data);
        for at in 0..blob.len() {
            let mut bad = blob.clone();
            bad[at] ^= 0x01;
            let err = decode_blob(&id, data.len() as u32, &bad).unwrap_err();
            assert_eq!(
                err.kind(),
                hybridstore_core::ErrorKind::Corrupted,
                "byte {at}"
            );
        }
    }
}
