//! `hybridstore analytics …`: reports, ad-hoc SQL and Parquet export over
//! `<data_dir>/analytics.duckdb`.
//!
//! These commands open only the analytics database, read-only and for the length of one
//! query, never the data directory's lock: they work while another process (an application,
//! another `hybridstore` command) has the store open and keeps recording events, and show
//! every event that process has written so far (it writes a batch at least once a second).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use hybridstore::analytics::arrow::util::pretty::pretty_format_batches;
use hybridstore::analytics::{
    AnalyticsOptions, AnalyticsReader, AnalyticsStore, ExportSource, Report, TimeWindow,
};
use hybridstore::core::Error;
use hybridstore::{ANALYTICS_FILE, StorageConfig};

use crate::Ui;
use crate::output::human_bytes;

#[derive(Subcommand, Debug)]
pub enum AnalyticsCommand {
    /// Hot keys, latency percentiles, cache hit rates, space per tenant, growth and errors
    Report {
        /// Only events of this last span (e.g. `1h`, `7d`) [default: all]
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// How many hot keys to list
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Width of the growth table's time buckets
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        bucket: Duration,
    },
    /// Run one read-only SQL statement (tables: access_events, query_metrics,
    /// embedding_metrics, reranking_metrics, system_metrics, and the per-minute rollups
    /// access_minutes, latency_minutes, key_read_minutes, key_write_minutes); writes and file
    /// access are refused
    Sql {
        /// The statement, e.g. "SELECT operation, count(*) FROM access_events GROUP BY 1"
        query: String,
    },
    /// Write a table (or, with --query, a SELECT's rows) to a Parquet file
    Export {
        /// Table name, or a SQL query with --query
        source: String,
        /// Destination file (replaced whole, never left half-written)
        file: PathBuf,
        /// SOURCE is a read-only SQL query rather than a table name
        #[arg(long)]
        query: bool,
    },
}

/// Runs an analytics command against the configuration's data directory.
pub async fn run(config: &StorageConfig, command: AnalyticsCommand, ui: &Ui) -> Result<(), Error> {
    let path = config.data_dir.join(ANALYTICS_FILE);
    let reader = AnalyticsStore::open_reader(&path, &AnalyticsOptions::default())?;
    let json = ui.json;
    // DuckDB calls block: off the async workers.
    let output = tokio::task::spawn_blocking(move || execute(&reader, command, json))
        .await
        .map_err(|e| Error::backend(format!("the analytics command failed: {e}")))??;
    print!("{output}");
    Ok(())
}

fn execute(
    reader: &AnalyticsReader,
    command: AnalyticsCommand,
    json: bool,
) -> Result<String, Error> {
    match command {
        AnalyticsCommand::Report { since, top, bucket } => {
            let window = since.map_or_else(TimeWindow::all, TimeWindow::last);
            let report = reader.report(window, top, bucket)?;
            if json {
                to_json(&report)
            } else {
                Ok(render_report(&report))
            }
        }
        AnalyticsCommand::Sql { query } => {
            let batches = reader.sql(&query)?;
            if json {
                batches_to_json(&batches)
            } else {
                let table = pretty_format_batches(&batches)
                    .map_err(|e| Error::backend(format!("cannot format the result: {e}")))?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                Ok(format!("{table}\n{rows} rows\n"))
            }
        }
        AnalyticsCommand::Export {
            source,
            file,
            query,
        } => {
            let source = if query {
                ExportSource::Query(source)
            } else {
                ExportSource::Table(source)
            };
            let report = reader.export_parquet(&source, &file)?;
            if json {
                to_json(&report)
            } else {
                Ok(format!(
                    "exported {} rows to {} ({})\n",
                    report.rows,
                    display(&report.path),
                    human_bytes(report.bytes)
                ))
            }
        }
    }
}

/// `value` as pretty JSON with a trailing newline.
fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::backend(format!("cannot encode JSON: {e}")))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn batches_to_json(
    batches: &[hybridstore::analytics::arrow::record_batch::RecordBatch],
) -> Result<String, Error> {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    let refs: Vec<_> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| Error::backend(format!("cannot encode JSON: {e}")))?;
    let mut text = String::from_utf8(writer.into_inner())
        .map_err(|e| Error::backend(format!("cannot encode JSON: {e}")))?;
    if text.is_empty() {
        text.push_str("[]");
    }
    text.push('\n');
    Ok(text)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    t
}

fn num(n: impl ToString) -> Cell {
    Cell::new(n.to_string()).set_alignment(CellAlignment::Right)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn render_report(r: &Report) -> String {
    let mut out = format!("{} access events\n\nHot keys (reads)\n", r.events);
    let mut hot = table(&["key", "tenant", "reads", "bytes read"]);
    for k in &r.hot_keys {
        hot.add_row(vec![
            Cell::new(
                k.key
                    .clone()
                    .unwrap_or_else(|| format!("#{:016x}", k.key_hash)),
            ),
            Cell::new(k.tenant.as_deref().unwrap_or("-")),
            num(k.reads),
            num(human_bytes(k.bytes)),
        ]);
    }
    out.push_str(&format!("{hot}\n\nLatency per operation and backend\n"));
    let mut lat = table(&["operation", "backend", "calls", "p50", "p95", "p99", "max"]);
    for l in &r.latency {
        lat.add_row(vec![
            Cell::new(&l.operation),
            Cell::new(&l.backend),
            num(l.calls),
            num(micros(l.p50_us)),
            num(micros(l.p95_us)),
            num(micros(l.p99_us)),
            num(micros(l.max_us)),
        ]);
    }
    out.push_str(&format!("{lat}\n\nCache\n"));
    let c = &r.cache;
    let mut cache = table(&[
        "lookups",
        "L1 hits",
        "L2 hits",
        "misses",
        "L1 hit rate",
        "L2 hit rate",
        "overall",
    ]);
    cache.add_row(vec![
        num(c.lookups),
        num(c.l1_hits),
        num(c.l2_hits),
        num(c.misses),
        num(percent(c.l1_hit_rate)),
        num(percent(c.l2_hit_rate)),
        num(percent(c.overall_hit_rate)),
    ]);
    out.push_str(&format!(
        "{cache}\n\nSpace per tenant (from recorded writes)\n"
    ));
    let mut tenants = table(&["tenant", "objects", "bytes"]);
    for t in &r.tenants {
        tenants.add_row(vec![
            Cell::new(t.tenant.as_deref().unwrap_or("-")),
            num(t.objects),
            num(human_bytes(t.bytes)),
        ]);
    }
    out.push_str(&format!("{tenants}\n\nGrowth\n"));
    let mut growth = table(&["bucket start (UTC)", "puts", "bytes written", "deletes"]);
    for g in &r.growth {
        let start = std::time::UNIX_EPOCH
            + Duration::from_micros(u64::try_from(g.bucket_start_us).unwrap_or(0));
        growth.add_row(vec![
            Cell::new(humantime::format_rfc3339_seconds(start)),
            num(g.puts),
            num(human_bytes(g.bytes_written)),
            num(g.deletes),
        ]);
    }
    out.push_str(&format!("{growth}\n\nErrors\n"));
    let mut errors = table(&["operation", "calls", "errors", "error rate"]);
    for e in &r.errors {
        errors.add_row(vec![
            Cell::new(&e.operation),
            num(e.calls),
            num(e.errors),
            num(percent(Some(e.error_rate))),
        ]);
    }
    out.push_str(&format!("{errors}\n"));
    out
}
