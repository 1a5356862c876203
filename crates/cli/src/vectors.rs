//! `hybridstore vectors …`: import caller-made vectors from Parquet, Arrow or NumPy files,
//! list collections, and run nearest-neighbour queries, in `<data_dir>/lance`.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use hybridstore::HybridStorageSystem;
use hybridstore::core::vector::{Distance, VectorQuery, VectorStore};
use hybridstore::core::{Error, ErrorKind};
use hybridstore::vector::{IdSource, ImportOptions, LanceVectorStore, import_file};

use crate::Ui;
use crate::failure::Failure;

#[derive(Subcommand, Debug)]
pub enum VectorsCommand {
    /// Import vectors from a Parquet, Arrow IPC or NumPy .npy file (format from the file's
    /// contents), creating the collection if it does not exist
    Import {
        /// The file
        file: PathBuf,
        /// The collection to write to
        #[arg(long, short)]
        collection: String,
        /// The id column (strings or integers)
        #[arg(long, default_value = "id", conflicts_with = "row_ids")]
        id_column: String,
        /// Number the rows instead (ids PREFIX0, PREFIX1, …); .npy files always are
        #[arg(long, value_name = "PREFIX", num_args = 0..=1, default_missing_value = "")]
        row_ids: Option<String>,
        /// The vector column (lists of float16/32/64, all of one length)
        #[arg(long, default_value = "vector")]
        vector_column: String,
        /// The text column, used when present
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Leave this column out (repeatable); other columns become metadata fields
        #[arg(long = "skip", value_name = "COLUMN")]
        skip_columns: Vec<String>,
        /// Distance of a collection the import creates
        #[arg(long, value_enum, default_value_t = DistanceArg::Cosine)]
        distance: DistanceArg,
        /// Replace records with the same id instead of appending (safe to re-run)
        #[arg(long)]
        upsert: bool,
        /// Rows per write batch
        #[arg(long, default_value_t = hybridstore::vector::import::DEFAULT_IMPORT_BATCH_ROWS)]
        batch_rows: usize,
    },
    /// List collections with their dimension, distance, rows and indexes
    List,
    /// The records nearest to a vector, or to an existing record's vector
    Query {
        /// The collection
        collection: String,
        /// Search with the vector of the record with this id
        #[arg(long, conflicts_with = "vector", required_unless_present = "vector")]
        like: Option<String>,
        /// Search with this vector, as JSON: "[0.1, 0.2, …]"
        #[arg(long)]
        vector: Option<String>,
        /// How many records
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// Compare with every record, ignoring indexes (exact results)
        #[arg(long)]
        exact: bool,
    },
}

/// `--distance` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DistanceArg {
    /// 1 − cosine similarity
    Cosine,
    /// Euclidean distance
    L2,
    /// Negative dot product (for normalised vectors)
    Dot,
}

impl From<DistanceArg> for Distance {
    fn from(d: DistanceArg) -> Distance {
        match d {
            DistanceArg::Cosine => Distance::Cosine,
            DistanceArg::L2 => Distance::L2,
            DistanceArg::Dot => Distance::Dot,
        }
    }
}

fn store(system: &HybridStorageSystem) -> Result<&LanceVectorStore, Error> {
    system.vectors().ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "vectors are off in this configuration (vectors = false)",
        )
    })
}

/// Runs a vectors command.
pub async fn run(
    system: &HybridStorageSystem,
    command: VectorsCommand,
    ui: &Ui,
) -> Result<(), Failure> {
    let store = store(system)?;
    match command {
        VectorsCommand::Import {
            file,
            collection,
            id_column,
            row_ids,
            vector_column,
            text_column,
            skip_columns,
            distance,
            upsert,
            batch_rows,
        } => {
            let options = ImportOptions {
                ids: match row_ids {
                    Some(prefix) => IdSource::RowNumber { prefix },
                    None => IdSource::Column(id_column),
                },
                vector_column,
                text_column,
                skip_columns,
                distance: distance.into(),
                upsert,
                batch_rows,
            };
            let bar = ui.bar_with(
                "import [{elapsed_precise}] {wide_bar} {pos}/{len} rows {per_sec} ETA {eta}",
            );
            let progress = {
                let bar = bar.clone();
                move |p: hybridstore::vector::ImportProgress| {
                    if let Some(total) = p.rows_total {
                        bar.set_length(total);
                    }
                    bar.set_position(p.rows_done);
                }
            };
            let report = import_file(store, &collection, &file, &options, &progress).await;
            bar.finish_and_clear();
            let report = report.map_err(Error::from)?;
            if ui.json {
                ui.print_json(&report)?;
            } else {
                let secs = report.elapsed_ms as f64 / 1e3;
                println!(
                    "imported {} records ({} dimensions{}) from {} ({:?}) into {}{} in {secs:.1} s ({:.0} records/s)",
                    report.rows,
                    report.dimension,
                    if report.fields.is_empty() {
                        String::new()
                    } else {
                        format!("; fields {}", report.fields.join(", "))
                    },
                    file.display(),
                    report.format,
                    report.collection,
                    if report.created { " (created)" } else { "" },
                    report.rows as f64 / secs.max(1e-3),
                );
            }
        }
        VectorsCommand::List => {
            let mut infos = Vec::new();
            for name in store.list_collections().await? {
                match store.describe_collection(&name).await {
                    Ok(info) => infos.push(info),
                    // Listed but gone (dropped by another process meanwhile).
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if ui.json {
                ui.print_json(&infos)?;
            } else if infos.is_empty() {
                println!("no collections");
            } else {
                let mut table = Table::new();
                table.load_preset(UTF8_FULL_CONDENSED).set_header([
                    "collection",
                    "dimension",
                    "distance",
                    "rows",
                    "fields",
                    "indexes",
                ]);
                for info in &infos {
                    let fields: Vec<String> = info
                        .spec
                        .fields
                        .iter()
                        .map(|f| format!("{} ({:?})", f.name, f.field_type))
                        .collect();
                    table.add_row([
                        Cell::new(&info.spec.name),
                        Cell::new(if info.spec.has_vectors() {
                            info.spec.dimension.to_string()
                        } else {
                            "text only".into()
                        })
                        .set_alignment(CellAlignment::Right),
                        Cell::new(info.spec.distance.as_str()),
                        Cell::new(info.rows).set_alignment(CellAlignment::Right),
                        Cell::new(fields.join(", ")),
                        Cell::new(info.indexes.join(", ")),
                    ]);
                }
                println!("{table}");
            }
        }
        VectorsCommand::Query {
            collection,
            like,
            vector,
            limit,
            exact,
        } => {
            let query_vector = match (like, vector) {
                (Some(id), _) => {
                    let found = store.get(&collection, std::slice::from_ref(&id)).await?;
                    found
                        .into_iter()
                        .next()
                        .ok_or_else(|| {
                            Error::not_found(format!(
                                "no record {id:?} in collection {collection:?}"
                            ))
                        })?
                        .vector
                }
                (None, Some(json)) => serde_json::from_str::<Vec<f32>>(&json).map_err(|e| {
                    Error::invalid_input(format!("--vector must be a JSON array of numbers: {e}"))
                })?,
                (None, None) => {
                    return Err(Error::invalid_input("give --like ID or --vector JSON").into());
                }
            };
            let mut query = VectorQuery::new(query_vector, limit);
            query.exact = exact;
            let hits = store.search(&collection, &query).await?;
            if ui.json {
                ui.print_json(&hits)?;
            } else {
                for h in &hits {
                    let text = h
                        .text
                        .as_deref()
                        .map(|t| t.chars().take(100).collect::<String>())
                        .unwrap_or_default();
                    println!(
                        "{:>10.4}  {}  {}",
                        h.distance.unwrap_or(-h.score),
                        h.id,
                        text.replace('\n', " ")
                    );
                }
            }
        }
    }
    Ok(())
}
