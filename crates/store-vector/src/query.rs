//! What every search shares: the bounds of `k`, the Lance distance of a collection, and
//! result batches as hits.

use super::*;

pub(crate) fn distance_type(d: Distance) -> DistanceType {
    match d {
        Distance::Cosine => DistanceType::Cosine,
        Distance::L2 => DistanceType::L2,
        Distance::Dot => DistanceType::Dot,
    }
}

pub(crate) fn check_k(k: usize) -> Result<()> {
    if (1..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "k must be between 1 and {MAX_K}, got {k}"
        )))
    }
}

pub(crate) fn hits(
    spec: &CollectionSpec,
    batches: &[RecordBatch],
    score_column: &str,
) -> Vec<SearchHit> {
    let mut out = Vec::new();
    for batch in batches {
        let columns = schema::Columns::new(batch);
        out.extend((0..batch.num_rows()).filter_map(|row| columns.hit(spec, row, score_column)));
    }
    out
}
