//! Content-defined chunking with FastCDC (v2020).
//!
//! A cut point depends only on the bytes around it, so an insertion early in a value moves
//! the cut points near the edit and leaves the rest of the chunks, and their ids, unchanged.
//! That is what lets two similar values share most of their chunks.
//!
//! Algorithm: Xia et al., "The Design of Fast Content-Defined Chunking for Data Deduplication
//! Based Storage Systems", IEEE TPDS 2020, as implemented by the `fastcdc` crate's `v2020`
//! module (normalization level 1).

use fastcdc::v2020::{self, AsyncStreamCDC, FastCDC};
use futures::{Stream, StreamExt};
use hybridstore_core::{Error, Result};
use serde::Serialize;
use tokio::io::AsyncRead;

/// Minimum, average and maximum chunk sizes, in bytes.
///
/// The defaults, 4 KiB / 16 KiB / 64 KiB: an average of 16 KiB with minimum and maximum at a
/// quarter and four times it, the ratios FastCDC's normalized chunking is designed around
/// (Xia et al., "FastCDC", USENIX ATC 2016,
/// <https://www.usenix.org/conference/atc16/technical-sessions/presentation/xia>, which
/// evaluates averages of 4–16 KiB).
/// Smaller chunks find more duplicates in documents but cost one index entry (about 60 bytes
/// in memory) and one manifest entry (33–36 bytes) each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ChunkerConfig {
    /// No chunk is shorter, except the last chunk of a value.
    pub min_size: usize,
    /// The size the cut-point masks aim at.
    pub avg_size: usize,
    /// No chunk is longer.
    pub max_size: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            min_size: 4 * 1024,
            avg_size: 16 * 1024,
            max_size: 64 * 1024,
        }
    }
}

impl ChunkerConfig {
    /// Checks the sizes against what `fastcdc` 5 accepts: `min` in 64 B..=1 MiB, `avg` in
    /// 256 B..=4 MiB, `max` in 1 KiB..=16 MiB, all even, and `min <= avg <= max`.
    ///
    /// # Errors
    /// `InvalidInput` naming the size that is out of bounds.
    pub fn validate(&self) -> Result<()> {
        let bounds = [
            (
                "min_size",
                self.min_size,
                v2020::MINIMUM_MIN,
                v2020::MINIMUM_MAX,
            ),
            (
                "avg_size",
                self.avg_size,
                v2020::AVERAGE_MIN,
                v2020::AVERAGE_MAX,
            ),
            (
                "max_size",
                self.max_size,
                v2020::MAXIMUM_MIN,
                v2020::MAXIMUM_MAX,
            ),
        ];
        for (name, value, low, high) in bounds {
            if !(low..=high).contains(&value) || value % 2 != 0 {
                return Err(Error::invalid_input(format!(
                    "chunker {name} = {value} must be even and within {low}..={high} bytes"
                )));
            }
        }
        if !(self.min_size <= self.avg_size && self.avg_size <= self.max_size) {
            return Err(Error::invalid_input(format!(
                "chunker sizes must satisfy min <= avg <= max (got {} / {} / {})",
                self.min_size, self.avg_size, self.max_size
            )));
        }
        Ok(())
    }

    /// The cut points of `data`: `(offset, length)` of each chunk, in order, covering every
    /// byte exactly once. Empty input gives no chunks.
    pub fn spans<'a>(&self, data: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + use<'a> {
        FastCDC::new(data, self.min_size, self.avg_size, self.max_size)
            .map(|chunk| (chunk.offset, chunk.length))
    }

    /// The chunks of an async reader, read `max_size` bytes at a time, so a value of any size
    /// is chunked in `O(max_size)` memory. Cut points are the same as [`spans`](Self::spans)
    /// gives for the same bytes.
    ///
    /// Each item is `(offset, bytes)`; read errors end the stream as `Unavailable`.
    pub fn stream<R: AsyncRead + Unpin + Send>(
        &self,
        reader: R,
    ) -> impl Stream<Item = Result<(u64, Vec<u8>)>> + Send {
        let mut chunker = AsyncStreamCDC::new(reader, self.min_size, self.avg_size, self.max_size);
        async_stream::try_stream! {
            let mut chunks = std::pin::pin!(chunker.as_stream());
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::new(hybridstore_core::ErrorKind::Unavailable, format!("reading a value to chunk: {e}"))
                })?;
                yield (chunk.offset, chunk.data);
            }
        }
    }
}
