//! `import_file`: Parquet, Arrow IPC file and stream, NumPy; column mapping, collection
//! creation, write batches, upsert, and refusals that name the problem.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::{
    FixedSizeListBuilder, Float32Builder, Float64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use hybridstore_core::ErrorKind;
use hybridstore_core::vector::{
    CollectionSpec, Distance, FieldType, FieldValue, VectorQuery, VectorStore,
};
use hybridstore_vector::{
    IdSource, ImportError, ImportFormat, ImportOptions, ImportProgress, import_file,
};

use crate::support::{Rng, store};

fn vectors(n: usize, dimension: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.vector(dimension)).collect()
}

/// A batch as pandas/pyarrow write them: integer ids, vectors as lists of float64, text,
/// and metadata of several types.
fn pandas_like_batch(vectors: &[Vec<f32>]) -> RecordBatch {
    let n = vectors.len();
    let mut vector = ListBuilder::new(Float64Builder::new());
    for v in vectors {
        for x in v {
            vector.values().append_value(f64::from(*x));
        }
        vector.append(true);
    }
    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        tags.values().append_value("all");
        if i.is_multiple_of(2) {
            tags.values().append_value("even");
        }
        tags.append(true);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
        ("vector", Arc::new(vector.finish())),
        (
            "text",
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (!i.is_multiple_of(5)).then(|| format!("passage number {i}"))
            }))),
        ),
        (
            "kind",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| if i.is_multiple_of(3) { "guide" } else { "api" }),
            )),
        ),
        (
            "year",
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|i| 2000 + i as i32),
            )),
        ),
        ("tags", Arc::new(tags.finish())),
        (
            "published",
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..n).map(|i| 1_700_000_000_000 + i as i64),
            )),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// String ids and fixed-size float32 vectors, the shape LanceDB itself writes.
fn arrow_batch(vectors: &[Vec<f32>], first: usize) -> RecordBatch {
    let dimension = vectors[0].len();
    let mut vector = FixedSizeListBuilder::new(Float32Builder::new(), dimension as i32);
    for v in vectors {
        vector.values().append_slice(v);
        vector.append(true);
    }
    RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(StringArray::from_iter_values(
                (first..first + vectors.len()).map(|i| format!("doc-{i}")),
            )) as ArrayRef,
        ),
        ("vector", Arc::new(vector.finish()) as ArrayRef),
    ])
    .unwrap()
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

fn write_arrow_file(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
}

fn write_arrow_stream(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.finish().unwrap();
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], values: &[T]) {
    use npyz::WriterBuilder;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
}

fn no_progress(_: ImportProgress) {}

#[tokio::test]
async fn parquet_from_pandas_creates_the_collection_with_typed_fields() {
    let (dir, store) = store().await;
    let data = vectors(300, 8, 1);
    let path = dir.path().join("vectors.parquet");
    write_parquet(
        &path,
        &[pandas_like_batch(&data[..200]), {
            // The second row group continues the ids: rebuild it from row 200.
            let b = pandas_like_batch(&data);
            b.slice(200, 100)
        }],
    );
    assert_eq!(ImportFormat::detect(&path).unwrap(), ImportFormat::Parquet);

    let seen = AtomicU64::new(0);
    let total = AtomicU64::new(0);
    let progress = |p: ImportProgress| {
        seen.store(p.rows_done, Ordering::SeqCst);
        total.store(p.rows_total.unwrap_or(0), Ordering::SeqCst);
    };
    let options = ImportOptions {
        batch_rows: 128,
        ..ImportOptions::default()
    };
    let report = import_file(&store, "papers", &path, &options, &progress)
        .await
        .unwrap();
    assert!(report.created);
    assert_eq!((report.rows, report.dimension), (300, 8));
    // Two row groups (200 + 100 rows) read as batches of 128 rows across them: 128 + 128 + 44.
    assert_eq!(report.batches, 3);
    assert_eq!(
        (seen.load(Ordering::SeqCst), total.load(Ordering::SeqCst)),
        (300, 300)
    );

    let info = store.describe_collection("papers").await.unwrap();
    assert_eq!(
        info.spec,
        CollectionSpec::new("papers", 8, Distance::Cosine)
            .with_field("kind", FieldType::String)
            .with_field("year", FieldType::Integer)
            .with_field("tags", FieldType::StringList)
            .with_field("published", FieldType::Timestamp)
    );
    assert_eq!(info.rows, 300);

    let got = store
        .get(
            "papers",
            &["0".to_string(), "7".to_string(), "250".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    for r in &got {
        let i: usize = r.id.parse().unwrap();
        assert_eq!(r.vector, data[i], "record {i}'s vector");
        assert_eq!(
            r.text,
            (!i.is_multiple_of(5)).then(|| format!("passage number {i}")),
            "record {i}'s text"
        );
        assert_eq!(
            r.metadata["kind"],
            FieldValue::String(if i.is_multiple_of(3) { "guide" } else { "api" }.into())
        );
        assert_eq!(r.metadata["year"], FieldValue::Integer(2000 + i as i64));
        assert_eq!(
            r.metadata["published"],
            FieldValue::Timestamp((1_700_000_000_000 + i as i64) * 1_000)
        );
        let mut tags = vec!["all".to_string()];
        if i.is_multiple_of(2) {
            tags.push("even".into());
        }
        assert_eq!(r.metadata["tags"], FieldValue::StringList(tags));
    }

    let mut query = VectorQuery::new(data[42].clone(), 3);
    query.exact = true;
    let hits = store.search("papers", &query).await.unwrap();
    assert_eq!(hits[0].id, "42");
}

#[tokio::test]
async fn arrow_file_and_stream_append_and_upsert_replaces() {
    let (dir, store) = store().await;
    let data = vectors(400, 16, 2);
    let file = dir.path().join("a.arrow");
    let stream = dir.path().join("b.arrows");
    write_arrow_file(
        &file,
        &[
            arrow_batch(&data[..150], 0),
            arrow_batch(&data[150..200], 150),
        ],
    );
    write_arrow_stream(&stream, &[arrow_batch(&data[200..400], 200)]);
    assert_eq!(
        ImportFormat::detect(&file).unwrap(),
        ImportFormat::ArrowFile
    );
    assert_eq!(
        ImportFormat::detect(&stream).unwrap(),
        ImportFormat::ArrowStream
    );

    let options = ImportOptions {
        distance: Distance::L2,
        batch_rows: 64,
        ..ImportOptions::default()
    };
    let first = import_file(&store, "docs", &file, &options, &no_progress)
        .await
        .unwrap();
    assert!(first.created);
    // 150 → 64 + 64 + 22, then 50.
    assert_eq!((first.rows, first.batches), (200, 4));
    let second = import_file(&store, "docs", &stream, &options, &no_progress)
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(store.count("docs", None).await.unwrap(), 400);
    assert_eq!(
        store
            .describe_collection("docs")
            .await
            .unwrap()
            .spec
            .distance,
        Distance::L2
    );

    // Appending the same file again duplicates; upserting it does not.
    let upsert = ImportOptions {
        upsert: true,
        ..options.clone()
    };
    import_file(&store, "docs", &stream, &upsert, &no_progress)
        .await
        .unwrap();
    assert_eq!(store.count("docs", None).await.unwrap(), 400);
    let got = store.get("docs", &["doc-321".to_string()]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].vector, data[321]);
}

#[tokio::test]
async fn numpy_float32_and_float64_get_row_number_ids() {
    let (dir, store) = store().await;
    let data = vectors(100, 12, 3);
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let f32_path = dir.path().join("v32.npy");
    write_npy(&f32_path, &[100, 12], &flat);
    let f64_path = dir.path().join("v64.npy");
    let flat64: Vec<f64> = flat.iter().map(|x| f64::from(*x)).collect();
    write_npy(&f64_path, &[100, 12], &flat64);
    assert_eq!(ImportFormat::detect(&f32_path).unwrap(), ImportFormat::Npy);

    let report = import_file(
        &store,
        "images",
        &f32_path,
        &ImportOptions::default(),
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!((report.rows, report.dimension), (100, 12));
    let prefixed = ImportOptions {
        ids: IdSource::RowNumber {
            prefix: "img-".into(),
        },
        ..ImportOptions::default()
    };
    import_file(&store, "images", &f64_path, &prefixed, &no_progress)
        .await
        .unwrap();
    assert_eq!(store.count("images", None).await.unwrap(), 200);
    let got = store
        .get("images", &["99".to_string(), "img-99".to_string()])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    for r in got {
        assert_eq!(r.vector, data[99], "{}", r.id);
    }
}

fn import_error(result: Result<hybridstore_vector::ImportReport, ImportError>) -> ImportError {
    match result {
        Ok(report) => panic!("import succeeded: {report:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn refusals_name_the_problem_and_keep_what_was_written() {
    let (dir, store) = store().await;
    let path = |name: &str| dir.path().join(name);
    let options = ImportOptions::default();

    // Not a known format; missing file.
    std::fs::write(path("notes.csv"), "id,vector\n1,\"[1,2]\"\n").unwrap();
    let e =
        import_error(import_file(&store, "c", &path("notes.csv"), &options, &no_progress).await);
    assert_eq!(e.error.kind(), ErrorKind::InvalidInput);
    assert!(e.error.to_string().contains("not a Parquet"), "{e}");
    let e =
        import_error(import_file(&store, "c", &path("absent.npy"), &options, &no_progress).await);
    assert_eq!(e.error.kind(), ErrorKind::NotFound, "{e}");

    // Vectors of differing lengths: nothing written, no collection left behind.
    let mut ragged = ListBuilder::new(Float32Builder::new());
    for len in [4, 4, 3] {
        for _ in 0..len {
            ragged.values().append_value(0.5);
        }
        ragged.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
        ),
        ("vector", Arc::new(ragged.finish()) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&path("ragged.parquet"), &[batch]);
    let e = import_error(
        import_file(
            &store,
            "ragged",
            &path("ragged.parquet"),
            &options,
            &no_progress,
        )
        .await,
    );
    assert_eq!(
        (e.error.kind(), e.rows_written),
        (ErrorKind::InvalidInput, 0),
        "{e}"
    );
    assert_eq!(
        store
            .describe_collection("ragged")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // A NaN in row 25, written in batches of 10: the first two batches stay written.
    let mut data = vectors(30, 4, 4);
    data[25][1] = f32::NAN;
    write_arrow_file(&path("nan.arrow"), &[arrow_batch(&data, 0)]);
    let small = ImportOptions {
        batch_rows: 10,
        ..ImportOptions::default()
    };
    let e =
        import_error(import_file(&store, "nan", &path("nan.arrow"), &small, &no_progress).await);
    assert_eq!(
        (e.error.kind(), e.rows_written),
        (ErrorKind::InvalidInput, 20),
        "{e}"
    );
    assert!(e.error.to_string().contains("NaN"), "{e}");
    assert_eq!(store.count("nan", None).await.unwrap(), 20);

    // An existing collection of another dimension.
    write_arrow_file(&path("dim8.arrow"), &[arrow_batch(&vectors(5, 8, 5), 0)]);
    let e =
        import_error(import_file(&store, "nan", &path("dim8.arrow"), &options, &no_progress).await);
    assert_eq!(e.error.kind(), ErrorKind::Conflict, "{e}");

    // A column the existing collection does not declare.
    write_parquet(
        &path("extra.parquet"),
        &[pandas_like_batch(&vectors(5, 4, 6))],
    );
    let e = import_error(
        import_file(
            &store,
            "nan",
            &path("extra.parquet"),
            &options,
            &no_progress,
        )
        .await,
    );
    assert_eq!(e.error.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.error.to_string().contains("is not a field"), "{e}");

    // A column no field type holds, unless skipped; a missing id column.
    let mut with_blob = arrow_batch(&vectors(5, 4, 7), 0);
    let mut columns = with_blob.columns().to_vec();
    columns.push(Arc::new(BinaryArray::from_iter_values([b"x"; 5])));
    let mut fields: Vec<Field> = with_blob
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("blob", DataType::Binary, false));
    with_blob = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    write_arrow_file(&path("blob.arrow"), &[with_blob]);
    let e = import_error(
        import_file(&store, "blobs", &path("blob.arrow"), &options, &no_progress).await,
    );
    assert!(e.error.to_string().contains("\"blob\""), "{e}");
    let skip = ImportOptions {
        skip_columns: vec!["blob".into()],
        ..ImportOptions::default()
    };
    import_file(&store, "blobs", &path("blob.arrow"), &skip, &no_progress)
        .await
        .unwrap();
    let by_name = ImportOptions {
        ids: IdSource::Column("key".into()),
        ..ImportOptions::default()
    };
    let e = import_error(
        import_file(&store, "blobs", &path("blob.arrow"), &by_name, &no_progress).await,
    );
    assert!(e.error.to_string().contains("no id column \"key\""), "{e}");

    // NumPy arrays that are not a float matrix.
    write_npy(&path("cube.npy"), &[2, 2, 2], &[0.5f32; 8]);
    let e =
        import_error(import_file(&store, "cube", &path("cube.npy"), &options, &no_progress).await);
    assert!(e.error.to_string().contains("2-D"), "{e}");
    write_npy(&path("ints.npy"), &[2, 2], &[1i32; 4]);
    let e =
        import_error(import_file(&store, "ints", &path("ints.npy"), &options, &no_progress).await);
    assert!(e.error.to_string().contains("dtype"), "{e}");
    // A truncated array.
    write_npy(&path("v.npy"), &[10, 4], &[0.25f32; 40]);
    let bytes = std::fs::read(path("v.npy")).unwrap();
    std::fs::write(path("cut.npy"), &bytes[..bytes.len() - 30]).unwrap();
    let e =
        import_error(import_file(&store, "cut", &path("cut.npy"), &options, &no_progress).await);
    assert_eq!(e.rows_written, 0, "{e}");
    assert!(e.error.to_string().contains("ends early"), "{e}");
}
