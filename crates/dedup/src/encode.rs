//! Turning a value into a manifest and new chunk blobs (the CPU side of a write).

use std::ops::Range;

use hybridstore_core::Sha256Digest;

use crate::chunk::{self, ChunkId};
use crate::chunk_store::{ChunkStore, NewChunk};
use crate::chunker::ChunkerConfig;
use crate::manifest::{ChunkList, Manifest};

/// A value cut, hashed and (where new) compressed, ready for the chunk store.
#[derive(Debug)]
pub(crate) struct EncodedValue {
    /// Manifest bytes for the manifest store.
    pub(crate) manifest: Vec<u8>,
    /// SHA-256 of the whole value.
    pub(crate) checksum: Sha256Digest,
    /// Every chunk: id, byte range in the value, and its blob unless it was already stored.
    pub(crate) chunks: Vec<(ChunkId, Range<usize>, Option<Vec<u8>>)>,
}

impl EncodedValue {
    /// The chunks as the chunk store takes them.
    pub(crate) fn new_chunks<'a>(
        &'a mut self,
        value: &'a [u8],
    ) -> impl Iterator<Item = NewChunk<'a>> + 'a {
        self.chunks
            .iter_mut()
            .map(move |(id, range, blob)| NewChunk {
                id: *id,
                data: &value[range.clone()],
                blob: blob.take(),
            })
    }
}

/// A chunk's id (SHA-256) and, unless `store` already holds the chunk, its blob.
pub(crate) fn hash_and_encode(data: &[u8], store: &ChunkStore) -> (ChunkId, Option<Vec<u8>>) {
    let id = Sha256Digest::of(data);
    let blob = (!store.contains(&id)).then(|| chunk::encode_blob(data));
    (id, blob)
}

/// Cuts `value` with `chunker`, hashes every chunk (SHA-256), and compresses the chunks
/// `store` does not hold yet. Values of at most `inline_max` bytes become inline manifests.
pub(crate) fn encode_value(
    value: &[u8],
    chunker: &ChunkerConfig,
    inline_max: usize,
    store: &ChunkStore,
) -> EncodedValue {
    if value.len() <= inline_max {
        return EncodedValue {
            manifest: Manifest::encode_inline(value),
            checksum: Sha256Digest::of(value),
            chunks: Vec::new(),
        };
    }
    let mut chunks = Vec::new();
    let mut list = Vec::new();
    for (offset, len) in chunker.spans(value) {
        let (id, blob) = hash_and_encode(&value[offset..offset + len], store);
        chunks.push((id, offset..offset + len, blob));
        list.push((id, len as u32));
    }
    // One chunk: its id is the value's SHA-256 already.
    let checksum = if list.len() == 1 {
        list[0].0
    } else {
        Sha256Digest::of(value)
    };
    let manifest = Manifest::encode_chunked(&ChunkList {
        total_len: value.len() as u64,
        chunks: list,
        checksum,
    });
    EncodedValue {
        manifest,
        checksum,
        chunks,
    }
}
