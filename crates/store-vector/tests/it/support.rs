//! Stores in temporary directories and deterministic vectors.

use hybridstore_core::vector::{CollectionSpec, Distance, FieldType};
use hybridstore_vector::{LanceOptions, LanceVectorStore};

pub async fn store() -> (tempfile::TempDir, LanceVectorStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LanceVectorStore::open(dir.path().to_str().unwrap(), LanceOptions::default())
        .await
        .unwrap();
    (dir, store)
}

/// A collection with one field of each type.
pub fn docs_spec(dimension: usize, distance: Distance) -> CollectionSpec {
    CollectionSpec::new("docs", dimension, distance)
        .with_field("kind", FieldType::String)
        .with_field("year", FieldType::Integer)
        .with_field("rank", FieldType::Float)
        .with_field("published", FieldType::Timestamp)
        .with_field("tags", FieldType::StringList)
}

/// A small deterministic generator (SplitMix64), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    pub fn vector(&mut self, dimension: usize) -> Vec<f32> {
        (0..dimension).map(|_| self.unit()).collect()
    }
}

/// Exact distances the way the collection defines them (L2 squared, as Lance reports).
pub fn distance(d: Distance, a: &[f32], b: &[f32]) -> f32 {
    match d {
        Distance::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Distance::Dot => 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        Distance::Cosine => {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}
