//! Vector search benchmark: recall@10 against exact brute force, p50/p99 query latency and
//! index build time for the flat path and each index type, with and without a filter that
//! keeps 10% of rows; plus the small-collection target of 10,000 vectors answering a filtered top-10 in under
//! 50 ms.
//!
//! Data: `HYBRIDSTORE_BENCH_VECTORS` (default 100,000) 384-dimension vectors around 100
//! random cluster centres (fixed seed), cosine distance; 1,000 queries drawn the same way
//! (`HYBRIDSTORE_BENCH_QUERIES`). Ground truth is computed here by brute force, independent
//! of LanceDB. Latency ratios are against the flat (exact) path in the same run.
//!
//! Writes `<target>/bench-report/vectors.md` and `vectors.json`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::time::Instant;

use hybridstore_core::bench_report::write_bench_report;
use hybridstore_core::vector::{
    CollectionSpec, Distance, FieldType, Filter, VectorQuery, VectorRecord, VectorStore,
};
use hybridstore_vector::{IndexSpec, LanceOptions, LanceVectorStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIM: usize = 384;
const CLUSTERS: usize = 100;
const SEED: u64 = 0x5EED_0384;

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    1.0 - dot / (na.sqrt() * nb.sqrt())
}

struct Data {
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

fn generate(n: usize, queries: usize) -> Data {
    let mut rng = StdRng::seed_from_u64(SEED);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let point = |rng: &mut StdRng| {
        let c = &centres[rng.random_range(0..CLUSTERS)];
        c.iter()
            .map(|x| x + 0.25 * rng.random_range(-1.0f32..1.0))
            .collect::<Vec<f32>>()
    };
    let vectors = (0..n).map(|_| point(&mut rng)).collect();
    let queries = (0..queries).map(|_| point(&mut rng)).collect();
    Data { vectors, queries }
}

/// The exact top 10 ids of each query, among rows where `keep(row)`.
fn ground_truth(data: &Data, keep: impl Fn(usize) -> bool + Sync) -> Vec<Vec<usize>> {
    let keep = &keep;
    std::thread::scope(|s| {
        let chunks: Vec<_> = data
            .queries
            .chunks(data.queries.len().div_ceil(2).max(1))
            .map(|qs| {
                s.spawn(move || {
                    qs.iter()
                        .map(|q| {
                            let mut d: Vec<(f32, usize)> = data
                                .vectors
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| keep(*i))
                                .map(|(i, v)| (cosine_distance(q, v), i))
                                .collect();
                            d.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0));
                            d.truncate(10);
                            d.sort_by(|a, b| a.0.total_cmp(&b.0));
                            d.into_iter().map(|(_, i)| i).collect()
                        })
                        .collect::<Vec<Vec<usize>>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

struct Row {
    case: String,
    recall: f64,
    p50_ms: f64,
    p99_ms: f64,
    build_s: Option<f64>,
    baseline_p50_ms: Option<f64>,
}

async fn measure(
    store: &LanceVectorStore,
    data: &Data,
    truth: &[Vec<usize>],
    filter: Option<&Filter>,
    tune: &dyn Fn(VectorQuery) -> VectorQuery,
) -> (f64, f64, f64) {
    let mut times = Vec::with_capacity(data.queries.len());
    let mut found = 0usize;
    for (q, want) in data.queries.iter().zip(truth) {
        let mut query = tune(VectorQuery::new(q.clone(), 10));
        query.filter = filter.cloned();
        let started = Instant::now();
        let hits = store.search("bench", &query).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        found += hits
            .iter()
            .filter(|h| want.contains(&h.id.parse::<usize>().unwrap()))
            .count();
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    (
        found as f64 / (10 * truth.len()) as f64,
        pct(0.5),
        pct(0.99),
    )
}

fn main() {
    let filter_args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter_args.is_empty() && !filter_args.iter().any(|f| "vectors".contains(f.as_str())) {
        return;
    }
    let n: usize = std::env::var("HYBRIDSTORE_BENCH_VECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let nq: usize = std::env::var("HYBRIDSTORE_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, nq));
}

async fn run(n: usize, nq: usize) {
    let data = generate(n, nq);
    let started = Instant::now();
    let truth = ground_truth(&data, |_| true);
    let truth_filtered = ground_truth(&data, |i| i % 10 == 0);
    eprintln!("ground truth: {:.1} s", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().unwrap();
    let store = LanceVectorStore::open(dir.path().to_str().unwrap(), LanceOptions::default())
        .await
        .unwrap();
    let spec = CollectionSpec::new("bench", DIM, Distance::Cosine)
        .with_field("bucket", FieldType::Integer);
    store.create_collection(&spec).await.unwrap();
    let started = Instant::now();
    for (c, chunk) in data.vectors.chunks(10_000).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = c * 10_000 + j;
                VectorRecord::new(i.to_string(), v.clone()).with_field("bucket", (i % 10) as i64)
            })
            .collect();
        store.add("bench", records).await.unwrap();
    }
    eprintln!("load {n} vectors: {:.1} s", started.elapsed().as_secs_f64());
    store
        .create_index(
            "bench",
            &IndexSpec::Scalar {
                field: "bucket".into(),
            },
        )
        .await
        .unwrap();
    let ten_percent = Filter::eq("bucket", 0i64);

    let mut rows = Vec::new();
    let exact = |q: VectorQuery| VectorQuery { exact: true, ..q };
    let (r, p50, p99) = measure(&store, &data, &truth, None, &exact).await;
    let flat_p50 = p50;
    rows.push(Row {
        case: "flat (exact)".into(),
        recall: r,
        p50_ms: p50,
        p99_ms: p99,
        build_s: None,
        baseline_p50_ms: None,
    });
    let (r, p50, p99) = measure(&store, &data, &truth_filtered, Some(&ten_percent), &exact).await;
    let flat_filtered_p50 = p50;
    rows.push(Row {
        case: "flat (exact), 10% filter".into(),
        recall: r,
        p50_ms: p50,
        p99_ms: p99,
        build_s: None,
        baseline_p50_ms: None,
    });

    type Tune = Box<dyn Fn(VectorQuery) -> VectorQuery>;
    /// An index and the query settings measured on it.
    type Config = (&'static str, IndexSpec, Vec<(&'static str, Tune)>);
    let configs: Vec<Config> = vec![
        (
            "IVF-PQ",
            IndexSpec::IvfPq {
                num_partitions: None,
                num_sub_vectors: None,
            },
            vec![
                (
                    "nprobes 20",
                    Box::new(|q| VectorQuery {
                        nprobes: Some(20),
                        ..q
                    }),
                ),
                (
                    "nprobes 20, refine 10",
                    Box::new(|q| VectorQuery {
                        nprobes: Some(20),
                        refine_factor: Some(10),
                        ..q
                    }),
                ),
                (
                    "nprobes 10, refine 50",
                    Box::new(|q| VectorQuery {
                        nprobes: Some(10),
                        refine_factor: Some(50),
                        ..q
                    }),
                ),
            ],
        ),
        (
            "IVF-HNSW-SQ",
            IndexSpec::IvfHnswSq {
                num_partitions: None,
                num_edges: None,
                ef_construction: None,
            },
            vec![
                (
                    "nprobes 5, ef 100",
                    Box::new(|q| VectorQuery {
                        nprobes: Some(5),
                        ef: Some(100),
                        ..q
                    }),
                ),
                (
                    "nprobes 10, ef 100",
                    Box::new(|q| VectorQuery {
                        nprobes: Some(10),
                        ef: Some(100),
                        ..q
                    }),
                ),
                (
                    "nprobes 20, ef 150",
                    Box::new(|q| VectorQuery {
                        nprobes: Some(20),
                        ef: Some(150),
                        ..q
                    }),
                ),
            ],
        ),
    ];
    for (name, index, tunings) in configs {
        let started = Instant::now();
        store.create_index("bench", &index).await.unwrap();
        let build = started.elapsed().as_secs_f64();
        eprintln!("{name}: built in {build:.1} s");
        for (i, (label, tune)) in tunings.iter().enumerate() {
            let (r, p50, p99) = measure(&store, &data, &truth, None, tune.as_ref()).await;
            rows.push(Row {
                case: format!("{name}, {label}"),
                recall: r,
                p50_ms: p50,
                p99_ms: p99,
                build_s: (i == 0).then_some(build),
                baseline_p50_ms: Some(flat_p50),
            });
            let (r, p50, p99) = measure(
                &store,
                &data,
                &truth_filtered,
                Some(&ten_percent),
                tune.as_ref(),
            )
            .await;
            rows.push(Row {
                case: format!("{name}, {label}, 10% filter"),
                recall: r,
                p50_ms: p50,
                p99_ms: p99,
                build_s: None,
                baseline_p50_ms: Some(flat_filtered_p50),
            });
        }
    }

    // The last index (IVF-HNSW-SQ) read through a store that checks for other processes'
    // writes at most once a second instead of before every query (LanceOptions::
    // read_consistency): what strong cross-process consistency costs per query.
    let relaxed = LanceVectorStore::open(
        dir.path().to_str().unwrap(),
        LanceOptions {
            read_consistency: Some(std::time::Duration::from_secs(1)),
            ..LanceOptions::default()
        },
    )
    .await
    .unwrap();
    let tune = |q: VectorQuery| VectorQuery {
        nprobes: Some(5),
        ef: Some(100),
        ..q
    };
    for (filter, truth, flat) in [
        (None, &truth, flat_p50),
        (Some(&ten_percent), &truth_filtered, flat_filtered_p50),
    ] {
        let (r, p50, p99) = measure(&relaxed, &data, truth, filter, &tune).await;
        rows.push(Row {
            case: format!(
                "IVF-HNSW-SQ, nprobes 5, ef 100{}, read consistency 1 s",
                if filter.is_some() { ", 10% filter" } else { "" }
            ),
            recall: r,
            p50_ms: p50,
            p99_ms: p99,
            build_s: None,
            baseline_p50_ms: Some(flat),
        });
    }

    // The small-collection target: 10,000 vectors, filtered top-10 under 50 ms.
    let small = Data {
        vectors: data.vectors[..10_000.min(n)].to_vec(),
        queries: data.queries[..100.min(nq)].to_vec(),
    };
    let small_truth = ground_truth(&small, |i| i % 10 == 0);
    store.drop_collection("bench").await.unwrap();
    store.create_collection(&spec).await.unwrap();
    let records = small
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            VectorRecord::new(i.to_string(), v.clone()).with_field("bucket", (i % 10) as i64)
        })
        .collect();
    store.add("bench", records).await.unwrap();
    let (r, p50, p99) = measure(&store, &small, &small_truth, Some(&ten_percent), &|q| q).await;
    rows.push(Row {
        case: "10,000 vectors, 10% filter, flat (target: under 50 ms)".into(),
        recall: r,
        p50_ms: p50,
        p99_ms: p99,
        build_s: None,
        baseline_p50_ms: None,
    });

    write_report(n, nq, &rows);
}

fn write_report(n: usize, nq: usize, rows: &[Row]) {
    let mut md = format!(
        "# vector search benchmark\n\n{n} vectors × {DIM} dims in {CLUSTERS} clusters (seed {SEED:#x}), \
         {nq} queries, cosine, k = 10. Recall@10 against brute force computed outside LanceDB; \
         latency ratio = p50 / p50 of the flat path with the same filter.\n\n\
         | case | recall@10 | p50 | p99 | build | p50 ratio to flat |\n|---|---|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    for r in rows {
        let ratio = r.baseline_p50_ms.map(|b| r.p50_ms / b);
        md.push_str(&format!(
            "| {} | {:.3} | {:.2} ms | {:.2} ms | {} | {} |\n",
            r.case,
            r.recall,
            r.p50_ms,
            r.p99_ms,
            r.build_s.map_or("-".into(), |b| format!("{b:.1} s")),
            ratio.map_or("-".into(), |x| format!("{x:.2}x")),
        ));
        json.push(serde_json::json!({
            "case": r.case, "recall_at_10": r.recall, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "build_s": r.build_s, "p50_ratio_to_flat": ratio,
        }));
    }
    let path = write_bench_report(
        "vectors",
        &md,
        &serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    eprintln!("{md}\nwrote {}", path.display());
}
