//! Stores in temporary directories and deterministic vectors.

use hybridstore_core::vector::{CollectionSpec, Distance, FieldType};
use hybridstore_vector::{LanceOptions, LanceVectorStore};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

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

/// Seeded vectors (rand's `StdRng`), so failures reproduce.
pub struct Rng(StdRng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(StdRng::seed_from_u64(seed))
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        self.0.random_range(-1.0..1.0)
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
