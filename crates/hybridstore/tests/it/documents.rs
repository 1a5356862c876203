//! Documents across engines: put, get, content, text, list, search (keywords, per modality,
//! fused) and delete on SQLite, a FileStore primary with `documents.db` and PostgreSQL; a
//! write that fails half-way and a process killed at random leave no half document.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hybridstore::core::vector::{FieldType, FieldValue, Filter, VectorStore};
use hybridstore::core::{ErrorKind, KeyRange, KvStore};
use hybridstore::documents::{
    DOCUMENT_KEY_PREFIX, DocumentStore, MultimodalQuery, NewDocument, QuerySource,
};
use hybridstore::{
    DocumentsConfig, HybridStorageSystem, Modality, OpenOptions, PrimaryStore, StorageConfig,
};
use rand::{Rng, SeedableRng};

fn shape() -> DocumentsConfig {
    DocumentsConfig::default()
        .with_modality(Modality::Text, 4)
        .with_modality(Modality::Image, 3)
        .with_field("author", FieldType::String)
        .with_field("year", FieldType::Integer)
        .with_field("tags", FieldType::StringList)
}

fn config(dir: &std::path::Path, primary: PrimaryStore) -> StorageConfig {
    let mut config = StorageConfig::with_data_dir(dir).with_documents(shape());
    config.primary = primary;
    config.analytics = false;
    config
}

fn harbour() -> NewDocument {
    NewDocument::new("harbour")
        .with_filename("photos/harbour.jpg")
        .with_content(vec![7u8; 50_000], "image/jpeg")
        .with_text("Fishing boats leave the harbour at dawn.\n\nGulls follow the nets.")
        .with_embedding(Modality::Text, vec![1.0, 0.0, 0.0, 0.0])
        .with_embedding(Modality::Image, vec![0.0, 1.0, 0.0])
        .with_field("author", "ana")
        .with_field("year", 2021i64)
        .with_field("tags", vec!["sea".to_string(), "boats".to_string()])
}

fn desert() -> NewDocument {
    NewDocument::new("desert")
        .with_text("Dunes shift under a dry wind; no boats here.")
        .with_embedding(Modality::Text, vec![0.0, 1.0, 0.0, 0.0])
        .with_embedding(Modality::Image, vec![1.0, 0.0, 0.0])
        .with_field("author", "ben")
        .with_field("year", 2023i64)
}

fn forest() -> NewDocument {
    NewDocument::new("forest")
        .with_embedding(Modality::Image, vec![0.1, 0.9, 0.1])
        .with_field("author", "ana")
        .with_field("year", 2024i64)
}

/// Records of every collection the store uses, and values under the documents' prefix.
async fn footprint(system: &HybridStorageSystem, docs: &DocumentStore) -> (u64, u64) {
    let vectors = system.vectors().unwrap();
    let mut records = vectors
        .count(docs.passages_collection(), None)
        .await
        .unwrap();
    for m in docs.shape().modalities() {
        records += vectors
            .count(&docs.modality_collection(m), None)
            .await
            .unwrap();
    }
    let keys = system
        .kv()
        .list_keys(KeyRange::prefix(DOCUMENT_KEY_PREFIX), None)
        .await
        .unwrap();
    (records, keys.len() as u64)
}

fn ids(hits: &[hybridstore::documents::DocumentHit]) -> Vec<&str> {
    hits.iter().map(|h| h.document.id.as_str()).collect()
}

async fn exercise(system: &HybridStorageSystem) {
    let docs = system.documents().unwrap();
    let stored = docs.put(harbour()).await.unwrap();
    assert_eq!(stored.size, 50_000);
    assert_eq!(
        stored.passages, 1,
        "two short paragraphs pack into one passage"
    );
    assert_eq!(stored.modalities, vec![Modality::Text, Modality::Image]);
    docs.put(desert()).await.unwrap();
    docs.put(forest()).await.unwrap();
    assert_eq!(docs.count().await.unwrap(), 3);

    // Get, content, text.
    let got = docs.get("harbour").await.unwrap().unwrap();
    assert_eq!(got, stored);
    assert_eq!(got.filename, "photos/harbour.jpg");
    assert_eq!(got.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(got.metadata["author"], FieldValue::from("ana"));
    assert_eq!(
        docs.content("harbour").await.unwrap().unwrap().as_ref(),
        &[7u8; 50_000][..]
    );
    assert!(
        docs.text("harbour")
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .contains("Gulls")
    );
    assert_eq!(docs.text("forest").await.unwrap(), Some(None));
    assert_eq!(docs.content("forest").await.unwrap().unwrap().len(), 0);
    assert_eq!(docs.get("nobody").await.unwrap(), None);

    // Keywords: BM25 over passages, the best passage shown.
    let hits = docs
        .search(&MultimodalQuery::new(5).with_keywords("gulls"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec!["harbour"]);
    assert!(hits[0].passage.as_deref().unwrap().contains("Gulls"));
    let boats = docs
        .search(&MultimodalQuery::new(5).with_keywords("boats"))
        .await
        .unwrap();
    assert_eq!(boats.len(), 2, "both texts say boats: {boats:?}");

    // One modality: nearest image first; the text modality ranks by its own vectors.
    let by_image = docs
        .search(&MultimodalQuery::new(3).with_vector(Modality::Image, vec![0.0, 1.0, 0.0]))
        .await
        .unwrap();
    assert_eq!(ids(&by_image), vec!["harbour", "forest", "desert"]);
    assert_eq!(
        by_image[0].sources[0].source,
        QuerySource::Vector(Modality::Image)
    );
    let by_text_vector = docs
        .search(&MultimodalQuery::new(1).with_vector(Modality::Text, vec![0.0, 1.0, 0.0, 0.0]))
        .await
        .unwrap();
    assert_eq!(ids(&by_text_vector), vec!["desert"]);

    // Fused: the keywords find harbour only; the image ranks desert, forest, harbour. In
    // both lists, harbour wins with equal weights; with the keyword list weighted 0 the
    // image's order stands.
    let fused = docs
        .search(
            &MultimodalQuery::new(3)
                .with_keywords("gulls")
                .with_vector(Modality::Image, vec![1.0, 0.0, 0.0]),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&fused),
        vec!["harbour", "desert", "forest"],
        "{fused:?}"
    );
    assert_eq!(fused[0].sources.len(), 2, "found by both lists");
    let expected = 1.0 / 61.0 + 1.0 / 63.0;
    assert!(
        (fused[0].score - expected).abs() < 1e-6,
        "{}",
        fused[0].score
    );
    assert!(fused.windows(2).all(|w| w[0].score >= w[1].score));
    let image_only = docs
        .search(
            &MultimodalQuery::new(3)
                .with_keywords("gulls")
                .with_keyword_weight(0.0)
                .with_vector(Modality::Image, vec![1.0, 0.0, 0.0]),
        )
        .await
        .unwrap();
    assert_eq!(ids(&image_only), vec!["desert", "forest", "harbour"]);

    // Filters apply in every list.
    let by_ana = docs
        .search(
            &MultimodalQuery::new(5)
                .with_vector(Modality::Image, vec![1.0, 0.0, 0.0])
                .with_filter(Filter::eq("author", "ana")),
        )
        .await
        .unwrap();
    assert_eq!(ids(&by_ana).len(), 2);
    assert!(!ids(&by_ana).contains(&"desert"));
    let tagged = docs
        .search(
            &MultimodalQuery::new(5)
                .with_keywords("boats")
                .with_filter(Filter::contains("tags", "sea")),
        )
        .await
        .unwrap();
    assert_eq!(ids(&tagged), vec!["harbour"]);

    // List by metadata, paged.
    let first = docs
        .list(Some(&Filter::eq("author", "ana")), None, 1)
        .await
        .unwrap();
    assert_eq!(
        first
            .documents
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec!["forest"]
    );
    let second = docs
        .list(Some(&Filter::eq("author", "ana")), first.next.as_deref(), 1)
        .await
        .unwrap();
    assert_eq!(second.documents[0].id, "harbour");
    let rest = docs
        .list(
            Some(&Filter::eq("author", "ana")),
            second.next.as_deref(),
            10,
        )
        .await
        .unwrap();
    assert!(rest.documents.is_empty() && rest.next.is_none(), "{rest:?}");
    let recent = docs
        .list(Some(&Filter::ge("year", 2023i64)), None, 10)
        .await
        .unwrap();
    assert_eq!(recent.documents.len(), 2);
    assert!(recent.next.is_none());

    // What the engines hold: 2 passages + 5 embeddings; 1 content + 2 texts.
    assert_eq!(footprint(system, docs).await, (7, 3));

    // Replacing keeps the creation time and leaves nothing of the old generation.
    let replaced = docs
        .put(
            NewDocument::new("harbour")
                .with_text("A quiet harbour at night.")
                .with_embedding(Modality::Image, vec![0.0, 0.0, 1.0])
                .with_field("author", "cy"),
        )
        .await
        .unwrap();
    assert_eq!(replaced.created_at, stored.created_at);
    assert_ne!(replaced.generation, stored.generation);
    assert!(
        docs.search(&MultimodalQuery::new(5).with_keywords("gulls"))
            .await
            .unwrap()
            .is_empty(),
        "the old text is gone"
    );
    assert_eq!(docs.content("harbour").await.unwrap().unwrap().len(), 0);
    // harbour: 1 passage + 1 embedding, desert 1 + 2, forest 0 + 1; two texts.
    assert_eq!(footprint(system, docs).await, (6, 2));

    // Bad input is refused before anything is written.
    let before = footprint(system, docs).await;
    for (bad, why) in [
        (
            NewDocument::new("x").with_field("colour", "red"),
            "undeclared field",
        ),
        (
            NewDocument::new("x").with_field("year", "recent"),
            "wrong type",
        ),
        (
            NewDocument::new("x").with_embedding(Modality::Image, vec![1.0, 0.0]),
            "wrong dimension",
        ),
        (
            NewDocument::new("x").with_embedding(Modality::Audio, vec![1.0]),
            "no audio embeddings",
        ),
        (
            NewDocument::new("x").with_embedding(Modality::Text, vec![f32::NAN, 0.0, 0.0, 1.0]),
            "not finite",
        ),
        (NewDocument::new(""), "empty id"),
    ] {
        let err = docs.put(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{why}: {err}");
    }
    assert_eq!(footprint(system, docs).await, before);
    assert_eq!(docs.get("x").await.unwrap(), None);
    for bad in [
        MultimodalQuery::new(5),
        MultimodalQuery::new(0).with_keywords("x"),
        MultimodalQuery::new(5).with_keywords("  "),
        MultimodalQuery::new(5).with_vector(Modality::Audio, vec![1.0]),
        MultimodalQuery::new(5)
            .with_keywords("x")
            .with_keyword_weight(-1.0),
        MultimodalQuery::new(5)
            .with_keywords("x")
            .with_filter(Filter::eq("colour", "red")),
    ] {
        let err = docs.search(&bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }

    // Delete: gone from every engine.
    assert!(docs.delete("desert").await.unwrap());
    assert!(!docs.delete("desert").await.unwrap());
    assert_eq!(docs.get("desert").await.unwrap(), None);
    assert!(
        docs.search(&MultimodalQuery::new(5).with_keywords("dunes"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(footprint(system, docs).await, (3, 1));
    assert_eq!(docs.count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_span_sql_kv_and_lance_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::Sql))
        .await
        .unwrap();
    exercise(&system).await;
    assert!(
        !dir.path()
            .join(hybridstore::documents::DOCUMENTS_SQLITE_FILE)
            .exists(),
        "the rows live in the primary's kv.db"
    );
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_on_a_file_primary_keep_their_rows_in_documents_db() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::File))
        .await
        .unwrap();
    exercise(&system).await;
    system.shutdown().await.unwrap();
    assert!(
        dir.path()
            .join(hybridstore::documents::DOCUMENTS_SQLITE_FILE)
            .exists()
    );
    // Reopened, the documents are all there.
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::File))
        .await
        .unwrap();
    let docs = system.documents().unwrap();
    assert_eq!(docs.count().await.unwrap(), 2);
    let hits = docs
        .search(&MultimodalQuery::new(5).with_keywords("quiet"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec!["harbour"]);
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_on_postgres() {
    let Some(db) = hybridstore::sql::testing::PostgresTestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), PrimaryStore::Sql);
    config.sql_url = Some(db.url().to_string().into());
    config.dedup = false;
    let system = HybridStorageSystem::open(config).await.unwrap();
    exercise(&system).await;
    system.shutdown().await.unwrap();
}

/// A write that fails half-way (here: LanceDB's directory made read-only after the values
/// were stored would be racy; instead the collection is dropped under the store) is undone:
/// the old document stays whole and no value of the failed generation is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_fails_half_way_leaves_the_old_document() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::Sql))
        .await
        .unwrap();
    let docs = system.documents().unwrap();
    let old = docs.put(desert()).await.unwrap();
    // The image collection disappears: the next put stores its values and passages, then
    // fails at the image embedding.
    system
        .vectors()
        .unwrap()
        .drop_collection(&docs.modality_collection(Modality::Image))
        .await
        .unwrap();
    let err = docs
        .put(
            harbour()
                .with_filename("new")
                .with_content(vec![1u8; 10], "x/y"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = docs
        .put(
            NewDocument::new("desert")
                .with_text("replacement")
                .with_embedding(Modality::Image, vec![0.0, 0.0, 1.0]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(docs.get("desert").await.unwrap(), Some(old.clone()));
    assert_eq!(docs.get("harbour").await.unwrap(), None);
    let hits = docs
        .search(&MultimodalQuery::new(5).with_keywords("replacement boats"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), vec!["desert"], "only the committed passages");
    let keys = system
        .kv()
        .list_keys(KeyRange::prefix(DOCUMENT_KEY_PREFIX), None)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "only the old text: {keys:?}");
    let passages = system
        .vectors()
        .unwrap()
        .count(docs.passages_collection(), None)
        .await
        .unwrap();
    assert_eq!(
        passages, old.passages,
        "the failed puts' passages were deleted"
    );
    system.shutdown().await.unwrap();
}

const CRASH_DIR_ENV: &str = "HYBRIDSTORE_TEST_DOCUMENTS_CRASH_DIR";
const CRASH_IDS: u64 = 3;

fn crash_doc(id: u64, version: u64) -> NewDocument {
    NewDocument::new(format!("doc{id}"))
        .with_content(
            format!("content of doc{id} version {version}").repeat(200),
            "text/plain",
        )
        .with_text(format!(
            "marker{version} opens doc{id}.\n\nA second paragraph of version {version}."
        ))
        .with_embedding(Modality::Text, vec![1.0, version as f32, id as f32, 0.5])
        .with_embedding(Modality::Image, vec![1.0, id as f32, version as f32])
        .with_field("year", version as i64)
}

/// The child of `documents_survive_kill_9`: puts and deletes until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of documents_survive_kill_9"]
async fn documents_crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let (dir, start) = dir.split_once('@').unwrap();
    let start: u64 = start.parse().unwrap();
    let system = HybridStorageSystem::open_with(
        config(std::path::Path::new(dir), PrimaryStore::Sql),
        OpenOptions::command(),
    )
    .await
    .unwrap();
    let docs = system.documents().unwrap();
    for version in start.. {
        let id = version % CRASH_IDS;
        let delete = version % 7 == 6;
        let op = if delete { "delete" } else { "put" };
        println!("BEGIN {op} {id} {version}");
        if delete {
            docs.delete(&format!("doc{id}")).await.unwrap();
        } else {
            docs.put(crash_doc(id, version)).await.unwrap();
        }
        println!("ACK {op} {id} {version}");
    }
}

/// kill -9 at random points of puts and deletes: after each, every document is either its
/// last acknowledged state or the one in flight, whole (content, text, passages and
/// embeddings of one version), and reopening removes everything the killed write left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_survive_kill_9() {
    let seed = std::env::var("HYBRIDSTORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("documents_survive_kill_9: HYBRIDSTORE_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // Per id: the acknowledged state (version, present) and what was in flight.
    let mut acked: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let mut next_version = 0u64;
    for cycle in 0..6 {
        let kill_after = rng.random_range(2..12u64);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "documents::documents_crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CRASH_DIR_ENV,
                format!("{}@{next_version}", dir.path().display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acks = 0;
        let mut in_flight: Option<(u64, u64, bool)> = None;
        while acks < kill_after {
            let Some(line) = lines.next() else {
                panic!("the child stopped early (cycle {cycle})")
            };
            let line = line.unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["BEGIN", op, id, v] => {
                    in_flight = Some((id.parse().unwrap(), v.parse().unwrap(), *op == "put"));
                }
                ["ACK", op, id, v] => {
                    let (id, v): (u64, u64) = (id.parse().unwrap(), v.parse().unwrap());
                    acked.insert(id, (v, *op == "put"));
                    in_flight = None;
                    acks += 1;
                    next_version = v + 1;
                }
                _ => {}
            }
        }
        // Let the next write begin, then kill somewhere inside it.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        child.kill().unwrap();
        child.wait().unwrap();
        for line in lines.map_while(std::result::Result::ok) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["BEGIN", op, id, v] = parts.as_slice() {
                in_flight = Some((id.parse().unwrap(), v.parse().unwrap(), *op == "put"));
            } else if let ["ACK", op, id, v] = parts.as_slice() {
                let (id, v): (u64, u64) = (id.parse().unwrap(), v.parse().unwrap());
                acked.insert(id, (v, *op == "put"));
                in_flight = None;
                next_version = v + 1;
            }
        }
        if let Some((_, v, _)) = in_flight {
            next_version = v + 1;
        }

        let system = HybridStorageSystem::open_with(
            config(dir.path(), PrimaryStore::Sql),
            OpenOptions::command(),
        )
        .await
        .unwrap();
        let docs = system.documents().unwrap();
        let mut expected_records = 0;
        let mut expected_keys = 0;
        for id in 0..CRASH_IDS {
            let name = format!("doc{id}");
            let got = docs.get(&name).await.unwrap();
            let allowed: Vec<Option<u64>> = {
                let mut a = vec![match acked.get(&id) {
                    Some((v, true)) => Some(*v),
                    _ => None,
                }];
                if let Some((fid, v, put)) = in_flight
                    && fid == id
                {
                    a.push(put.then_some(v));
                }
                a
            };
            let version = got.as_ref().map(|d| match d.metadata["year"] {
                FieldValue::Integer(v) => v as u64,
                ref other => panic!("{other:?}"),
            });
            assert!(
                allowed.contains(&version),
                "cycle {cycle}: {name} is at {version:?}, allowed {allowed:?} (seed {seed})"
            );
            let Some(doc) = got else { continue };
            let v = version.unwrap();
            let want = crash_doc(id, v);
            assert_eq!(docs.content(&name).await.unwrap().unwrap(), want.content);
            assert_eq!(docs.text(&name).await.unwrap().unwrap(), want.text);
            let hits = docs
                .search(&MultimodalQuery::new(5).with_keywords(format!("marker{v}")))
                .await
                .unwrap();
            assert!(
                ids(&hits).contains(&name.as_str()),
                "cycle {cycle}: {hits:?}"
            );
            expected_records += doc.passages + doc.modalities.len() as u64;
            expected_keys += 2;
        }
        assert_eq!(
            footprint(&system, docs).await,
            (expected_records, expected_keys),
            "cycle {cycle}: what the killed write left was removed (seed {seed})"
        );
        let notes = system
            .sql()
            .unwrap()
            .settings()
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| {
                s.key
                    .starts_with(hybridstore::documents::PENDING_SETTING_PREFIX)
            })
            .count();
        assert_eq!(notes, 0, "every note of intent was resolved");
        // The in-flight write resolved one way or the other: that is the acknowledged state
        // the next child starts from.
        for id in 0..CRASH_IDS {
            let d = docs.get(&format!("doc{id}")).await.unwrap();
            match d {
                Some(d) => {
                    let FieldValue::Integer(v) = d.metadata["year"] else {
                        unreachable!()
                    };
                    acked.insert(id, (v as u64, true));
                }
                None => {
                    if let Some((v, _)) = acked.get(&id).copied() {
                        acked.insert(id, (v, false));
                    }
                }
            }
        }
        system.shutdown().await.unwrap();
    }
}

/// `create_indexes` builds a vector index on a modality collection once it holds enough
/// records and B-trees on `doc_id` and the declared fields; filtered searches then still
/// find the documents a read would return, and documents stored after the indexes are
/// searched beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_documents_are_still_found_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::Sql))
        .await
        .unwrap();
    let docs = system.documents().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let batch: Vec<NewDocument> = (0..300)
        .map(|i| {
            NewDocument::new(format!("d{i:03}"))
                .with_text(format!("note {i}"))
                .with_embedding(
                    Modality::Image,
                    (0..3).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                )
                .with_field("year", 2000 + i64::from(i % 10))
        })
        .collect();
    docs.put_many(batch).await.unwrap();
    // The image collection (300 records) gets a vector index; the text one (none) does not;
    // every collection gets B-trees on doc_id and the three declared fields.
    assert_eq!(docs.create_indexes().await.unwrap(), 1 + 3 * 4);
    let info = system
        .vectors()
        .unwrap()
        .describe_collection(&docs.modality_collection(Modality::Image))
        .await
        .unwrap();
    assert!(info.indexes.len() >= 5, "{:?}", info.indexes);
    // A tenant with no documents of its own builds the same (table-wide) indexes.
    let tenant = system.tenant("acme").await.unwrap();
    assert_eq!(
        tenant.documents().unwrap().create_indexes().await.unwrap(),
        1 + 3 * 4
    );
    drop(tenant);
    docs.put(
        NewDocument::new("late")
            .with_embedding(Modality::Image, vec![0.5, 0.5, 0.5])
            .with_field("year", 2003i64),
    )
    .await
    .unwrap();
    let hits = docs
        .search(
            &MultimodalQuery::new(10)
                .with_vector(Modality::Image, vec![0.5, 0.5, 0.5])
                .with_filter(Filter::eq("year", 2003i64)),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(
        hits[0].document.id, "late",
        "a document stored after the index is found"
    );
    assert!(
        hits.iter()
            .all(|h| h.document.metadata["year"] == FieldValue::from(2003i64))
    );
    system.shutdown().await.unwrap();
}
