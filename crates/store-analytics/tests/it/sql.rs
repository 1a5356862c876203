//! Ad-hoc SQL is read-only and file-free; export writes whole Parquet files.

use hybridstore_analytics::arrow::array::{Array, Int64Array, StringArray};
use hybridstore_analytics::{ExportSource, Operation, TABLES};
use hybridstore_core::ErrorKind;

use crate::support::{T0, count_events, ev, record_all, store};

#[test]
fn select_returns_record_batches() {
    let (_dir, _path, store) = store();
    record_all(
        &store,
        (0..10).map(|i| ev(T0 + i, Operation::Get, &format!("k{i}"))),
    );
    let batches = store
        .reader()
        .sql("SELECT key, count(*) AS n FROM access_events GROUP BY key ORDER BY key LIMIT 3")
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    let keys = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(keys.value(0), "k0");
    let n = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(n.value(0), 1);
}

#[test]
fn statements_that_write_are_refused_and_change_nothing() {
    let (dir, _path, store) = store();
    record_all(&store, (0..5).map(|i| ev(T0 + i, Operation::Get, "k")));
    let victim = dir.path().join("written.csv");
    let writes = [
        "DELETE FROM access_events".to_string(),
        "UPDATE access_events SET bytes = 1".to_string(),
        "INSERT INTO access_events SELECT * FROM access_events".to_string(),
        "DROP TABLE access_events".to_string(),
        "CREATE TABLE t (x INTEGER)".to_string(),
        "ALTER TABLE access_events ADD COLUMN x INTEGER".to_string(),
        "TRUNCATE access_events".to_string(),
        format!("COPY access_events TO '{}'", victim.display()),
    ];
    for sql in &writes {
        let err = store.reader().sql(sql).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{sql}: {err}");
    }
    assert!(!victim.exists());
    assert_eq!(count_events(store.reader()), 5);
    assert!(store.reader().sql("SELECT 1").is_ok());
}

#[test]
fn statements_that_touch_files_or_settings_are_refused() {
    let (dir, _path, store) = store();
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "a,b\n1,2\n").unwrap();
    let other_db = dir.path().join("other.duckdb");
    let attempts = [
        format!("SELECT * FROM read_csv('{}')", secret.display()),
        format!("SELECT * FROM '{}'", secret.display()),
        format!("SELECT * FROM read_text('{}')", secret.display()),
        format!("ATTACH '{}' AS other", other_db.display()),
        "INSTALL httpfs".to_string(),
        "LOAD httpfs".to_string(),
        "SET enable_external_access = true".to_string(),
        "SET memory_limit = '1TB'".to_string(),
        format!("EXPORT DATABASE '{}'", dir.path().join("dump").display()),
    ];
    for sql in &attempts {
        let err = store.reader().sql(sql).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{sql}: {err}");
    }
    assert!(!other_db.exists());
    assert!(!dir.path().join("dump").exists());
}

#[test]
fn several_statements_in_one_call_are_refused() {
    let (_dir, _path, store) = store();
    record_all(&store, [ev(T0, Operation::Get, "k")]);
    let err = store
        .reader()
        .sql("SELECT 1; DELETE FROM access_events")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(count_events(store.reader()), 1);
    let err = store.reader().sql("SELEC 1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

fn parquet_rows(path: &std::path::Path) -> (i64, Vec<String>) {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    let meta = reader.metadata();
    let columns = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    (meta.file_metadata().num_rows(), columns)
}

#[test]
fn export_tables_and_queries_to_parquet() {
    let (dir, _path, store) = store();
    record_all(
        &store,
        (0..1000).map(|i| ev(T0 + i, Operation::Get, &format!("k{}", i % 10))),
    );
    let out = dir.path().join("events.parquet");
    let report = store
        .reader()
        .export_parquet(&ExportSource::Table("access_events".into()), &out)
        .unwrap();
    assert_eq!(report.rows, 1000);
    assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
    let (rows, columns) = parquet_rows(&out);
    assert_eq!(rows, 1000);
    assert_eq!(columns[0], "ts");
    assert!(columns.iter().any(|c| c == "latency_us"));

    let q = dir.path().join("per_key.parquet");
    let report = store
        .reader()
        .export_parquet(
            &ExportSource::Query(
                "SELECT key, count(*) AS reads FROM access_events GROUP BY key".into(),
            ),
            &q,
        )
        .unwrap();
    assert_eq!(report.rows, 10);
    assert_eq!(
        parquet_rows(&q),
        (10, vec!["key".to_string(), "reads".to_string()])
    );

    // Every table exports, empty ones too (with their columns).
    for table in TABLES {
        let p = dir.path().join(format!("{table}.parquet"));
        store
            .reader()
            .export_parquet(&ExportSource::Table((*table).into()), &p)
            .unwrap();
        assert!(!parquet_rows(&p).1.is_empty(), "{table}");
    }
}

#[test]
fn export_refuses_unknown_tables_and_writing_queries_and_leaves_no_file() {
    let (dir, _path, store) = store();
    let out = dir.path().join("x.parquet");
    for source in [
        ExportSource::Table("access_events; DROP TABLE access_events".into()),
        ExportSource::Table("schema_migrations".into()),
        ExportSource::Query("DELETE FROM access_events".into()),
    ] {
        let err = store.reader().export_parquet(&source, &out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{source:?}: {err}");
    }
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("analytics.duckdb"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
