//! `hybridstore`: the command-line tool over a hybridstore data directory.
//!
//! Every command opens the data directory (`--data-dir`, `HYBRIDSTORE_DATA_DIR`, or the
//! configuration file), does its work and exits with a code a script can act on (see
//! [`ExitCode`]). `--json` prints machine-readable output; logs go to stderr under `RUST_LOG`.

mod analytics;
mod failure;
mod output;
mod vectors;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use hybridstore::core::{Error, Key, KeyRange, KvStore, PutOptions};
use hybridstore::{HybridStorageSystem, Progress, StorageConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::failure::{ExitCode, Failure, output};
use crate::output::{MetaView, human_bytes};

const AFTER_HELP: &str = "\
Exit codes: 0 ok (also when standard output is a pipe closed early), 1 failure (including
values verify could not read), 2 invalid input, input file or configuration, 3 not found (key,
record, analytics database), 4 damaged data or some files failed, 5 data directory in use by
another process.

Keys are UTF-8 text; write a binary key as hex:<hex bytes> (the form `ls` prints).
Configuration: defaults < --config FILE (TOML) < HYBRIDSTORE_* variables < flags.
Logs: RUST_LOG=info (or debug, trace) prints tracing output to stderr.";

#[derive(Parser, Debug)]
#[command(name = "hybridstore", version, about = "Embedded hybrid storage: documents, metadata and values under one data directory", after_help = AFTER_HELP)]
struct Cli {
    /// Data directory [default: ./hybridstore-data]
    #[arg(long, global = true, env = "HYBRIDSTORE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// TOML configuration file
    #[arg(long, global = true, env = "HYBRIDSTORE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,

    /// No progress bars
    #[arg(long, short, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the data directory (if needed) and report where it is
    Init,
    /// Store a value: the contents of FILE, or of stdin if FILE is omitted or `-`
    Put {
        /// The key
        key: String,
        /// Source file
        file: Option<PathBuf>,
        /// MIME type to record (guessed from FILE's name if omitted)
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Print a value to stdout, or write it to --output
    Get {
        /// The key
        key: String,
        /// Write the value to this file instead of stdout
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Remove a key (exit code 3 if it did not exist)
    Rm {
        /// The key
        key: String,
    },
    /// List keys in order, optionally under a prefix
    Ls {
        /// Only keys starting with this prefix
        prefix: Option<String>,
        /// At most this many keys
        #[arg(long)]
        limit: Option<usize>,
        /// Also print size, modification time and content type
        #[arg(long, short)]
        long: bool,
    },
    /// Print a key's metadata (size, SHA-256, content type, times)
    Head {
        /// The key
        key: String,
    },
    /// Store every file under DIR, keyed by its relative path
    Ingest {
        /// Source directory
        dir: PathBuf,
        /// Prepended to every key (e.g. `docs/`)
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Write every key (under --prefix) back to files under DIR
    Export {
        /// Destination directory (created if missing)
        dir: PathBuf,
        /// Only keys with this prefix, which is stripped from the file names
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Key count and sizes; with dedup on, chunk count and dedup and compression ratios
    Stats,
    /// Reclaim chunks no key references any more (dedup garbage collection)
    Gc {
        /// Leave chunk packs younger than this alone, so writes in flight in another
        /// process are safe (e.g. `1h`, `10m`, `0s`)
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Re-read every value and check it against its SHA-256 (exit code 4 on damage)
    Verify,
    /// Full-text search over the passages of ingested HTML, Markdown and text files
    Search {
        /// Words to look for, e.g. "borrow checker lifetime"
        query: String,
        /// How many passages to show
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
    },
    /// Vector collections (LanceDB): import vectors from Parquet, Arrow or NumPy files,
    /// list collections, nearest-neighbour queries
    Vectors {
        #[command(subcommand)]
        command: vectors::VectorsCommand,
    },
    /// Access analytics (DuckDB): reports, read-only SQL, Parquet export. Works while
    /// another process has the data directory open.
    Analytics {
        #[command(subcommand)]
        command: analytics::AnalyticsCommand,
    },
}

/// Parses a key typed on the command line; `hex:<hex>` spells binary keys.
fn parse_key(text: &str) -> Result<Key, Error> {
    match text.strip_prefix("hex:") {
        Some(h) => Key::new(
            hex::decode(h)
                .map_err(|e| Error::invalid_input(format!("bad hex key {text:?}: {e}")))?,
        ),
        None => Key::new(text.to_string()),
    }
}

struct Ui {
    json: bool,
    quiet: bool,
}

impl Ui {
    /// A progress bar of bytes, prefixed with `verb`.
    fn bar(&self, verb: &'static str) -> ProgressBar {
        let bar = self.bar_with(
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} {bytes_per_sec} ETA {eta}",
        );
        bar.set_prefix(verb);
        bar
    }

    /// A progress bar drawn with an indicatif `template`; hidden for `--json`, `--quiet` or
    /// when stderr is not a terminal.
    fn bar_with(&self, template: &str) -> ProgressBar {
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(0);
        let style =
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    fn print_json(&self, value: &impl serde::Serialize) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::backend(format!("cannot encode JSON: {e}")))?;
        output(writeln!(std::io::stdout().lock(), "{text}"))
    }
}

fn track(bar: &ProgressBar) -> impl Fn(Progress) + Send + Sync + use<> {
    let bar = bar.clone();
    move |p: Progress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_message(format!("{}/{} files", p.files_done, p.files_total));
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let ui = Ui {
        json: cli.json,
        quiet: cli.quiet,
    };
    let mut config = StorageConfig::load(cli.config.as_deref()).map_err(Failure::input)?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    let command = match cli.command {
        // Reads the analytics database alone, without the data directory's lock.
        Command::Analytics { command } => {
            analytics::run(&config, command, &ui).await?;
            return Ok(ExitCode::Ok);
        }
        other => other,
    };
    let system = HybridStorageSystem::open(config).await?;
    let kv = system.kv();
    match command {
        // Normally handled above, before the store opens; the same work either way.
        Command::Analytics { command } => analytics::run(system.config(), command, &ui).await?,
        Command::Init => {
            let dir = &system.config().data_dir;
            if ui.json {
                ui.print_json(&serde_json::json!({ "data_dir": dir }))?;
            } else {
                println!("data directory ready: {}", dir.display());
            }
        }
        Command::Put {
            key,
            file,
            content_type,
        } => {
            let key = parse_key(&key)?;
            let (value, guessed) = match file.as_deref() {
                None => (read_stdin()?, None),
                Some(p) if p.as_os_str() == "-" => (read_stdin()?, None),
                Some(p) => (
                    tokio::fs::read(p).await.map_err(|e| {
                        Failure::input(Error::from(e).with_context("path", p.display()))
                    })?,
                    hybridstore::guess_content_type(p),
                ),
            };
            let options = content_type
                .or(guessed)
                .map(PutOptions::with_content_type)
                .unwrap_or_default();
            let meta = kv.put_with(&key, value.into(), &options).await?;
            if ui.json {
                ui.print_json(&MetaView::new(&key, &meta))?;
            } else {
                println!(
                    "stored {key} ({}, sha256 {})",
                    human_bytes(meta.size),
                    meta.checksum
                );
            }
        }
        Command::Get {
            key,
            output: output_path,
        } => {
            let key = parse_key(&key)?;
            let value = kv
                .get(&key)
                .await?
                .ok_or_else(|| Error::not_found(format!("no key {key}")))?;
            match output_path {
                Some(path) => tokio::fs::write(&path, &value)
                    .await
                    .map_err(|e| Error::from(e).with_context("path", path.display()))?,
                None => {
                    let mut out = std::io::stdout().lock();
                    output(out.write_all(&value))?;
                    output(out.flush())?;
                }
            }
        }
        Command::Rm { key } => {
            let key = parse_key(&key)?;
            if kv.head(&key).await?.is_none() {
                return Err(Error::not_found(format!("no key {key}")).into());
            }
            kv.delete(&key).await?;
            if ui.json {
                ui.print_json(&serde_json::json!({ "removed": key.to_string() }))?;
            } else {
                println!("removed {key}");
            }
        }
        Command::Ls {
            prefix,
            limit,
            long,
        } => {
            let range = KeyRange::prefix(prefix.unwrap_or_default());
            let mut stream = kv.scan_meta(range, limit);
            let mut views = Vec::new();
            let mut out = std::io::stdout().lock();
            while let Some(entry) = stream.try_next().await? {
                let view = MetaView::new(&entry.key, &entry.meta);
                if ui.json {
                    views.push(view);
                } else if long {
                    output(writeln!(out, "{}", view.long_line()))?;
                } else {
                    output(writeln!(out, "{}", entry.key))?;
                }
            }
            drop(out);
            if ui.json {
                ui.print_json(&views)?;
            }
        }
        Command::Head { key } => {
            let key = parse_key(&key)?;
            let meta = kv
                .head(&key)
                .await?
                .ok_or_else(|| Error::not_found(format!("no key {key}")))?;
            let view = MetaView::new(&key, &meta);
            if ui.json {
                ui.print_json(&view)?;
            } else {
                print!("{}", view.block());
            }
        }
        Command::Ingest { dir, prefix } => {
            let bar = ui.bar("ingest");
            let report = system.ingest_dir(&dir, &prefix, track(&bar)).await?;
            bar.finish_and_clear();
            return transfer_outcome(&ui, "ingested", &report);
        }
        Command::Export { dir, prefix } => {
            let bar = ui.bar("export");
            let report = system.export_dir(&dir, &prefix, track(&bar)).await?;
            bar.finish_and_clear();
            return transfer_outcome(&ui, "exported", &report);
        }
        Command::Vectors { command } => vectors::run(&system, command, &ui).await?,
        Command::Search { query, limit } => {
            let hits = system.search(&query, limit).await?;
            if ui.json {
                ui.print_json(&hits)?;
            } else if hits.is_empty() {
                println!("no passages match {query:?}");
            } else {
                let mut out = std::io::stdout().lock();
                for h in &hits {
                    let text = h.text.replace('\n', " ");
                    let snippet: String = text.chars().take(240).collect();
                    let more = if text.chars().count() > 240 {
                        "…"
                    } else {
                        ""
                    };
                    output(writeln!(
                        out,
                        "{:>7.2}  {} (passage {})",
                        h.score, h.key, h.passage
                    ))?;
                    output(writeln!(out, "         {snippet}{more}"))?;
                    match h.also_in.len() {
                        0 => {}
                        1 => output(writeln!(out, "         also in {}", h.also_in[0]))?,
                        n => output(writeln!(
                            out,
                            "         also in {} and {} more documents",
                            h.also_in[0],
                            n - 1
                        ))?,
                    }
                }
            }
        }
        Command::Stats => {
            let stats = system.stats().await?;
            if ui.json {
                ui.print_json(&stats)?;
            } else {
                println!("data directory  {}", stats.data_dir.display());
                println!("keys            {}", stats.kv.keys);
                println!("logical bytes   {}", human_bytes(stats.kv.logical_bytes));
                if let Some(stored) = stats.kv.stored_bytes {
                    println!("stored bytes    {}", human_bytes(stored));
                }
                if let Some(d) = &stats.dedup {
                    println!(
                        "chunks          {} in {} packs ({}), {} unreferenced",
                        d.stored_chunks,
                        d.packs,
                        human_bytes(d.pack_bytes),
                        human_bytes(d.unreferenced_blob_bytes)
                    );
                    println!(
                        "inline values   {} ({})",
                        d.inline_values,
                        human_bytes(d.inline_bytes)
                    );
                    println!("manifest bytes  {}", human_bytes(d.manifest_bytes));
                    println!("dedup ratio     {:.2}x", d.dedup_ratio);
                    println!("compression     {:.2}x", d.compression_ratio);
                    if d.missing_chunks > 0 {
                        println!("MISSING chunks  {} (run verify)", d.missing_chunks);
                    }
                }
            }
        }
        Command::Gc { grace } => {
            let options = hybridstore::dedup::GcOptions::with_grace(grace);
            let report = system.collect_garbage(&options).await?;
            if ui.json {
                ui.print_json(&report)?;
            } else {
                println!(
                    "gc: {} manifests, {} live chunks; {} packs deleted, {} rewritten, \
                     {} chunks removed, {} freed, {} packs within the grace period ({:.1} s)",
                    report.manifests,
                    report.live_chunks,
                    report.packs_deleted,
                    report.packs_rewritten,
                    report.chunks_removed,
                    human_bytes(report.bytes_freed),
                    report.packs_in_grace,
                    report.elapsed_ms as f64 / 1e3
                );
            }
        }
        Command::Verify => {
            let bar = ui.bar("verify");
            let total = kv.stats().await?.logical_bytes;
            bar.set_length(total);
            let started = std::time::Instant::now();
            let report = system
                .verify(|keys, bytes| {
                    bar.set_position(bytes);
                    bar.set_message(format!("{keys} keys"));
                })
                .await?;
            bar.finish_and_clear();
            if ui.json {
                ui.print_json(&report)?;
            } else {
                let mut out = std::io::stdout().lock();
                for d in &report.damaged {
                    output(writeln!(out, "DAMAGED {}: {}", d.key, d.message))?;
                }
                for d in &report.unverified {
                    output(writeln!(out, "UNVERIFIED {}: {}", d.key, d.message))?;
                }
                output(writeln!(
                    out,
                    "verified {} keys, {} in {:.1} s: {} damaged, {} could not be read",
                    report.checked_keys,
                    human_bytes(report.checked_bytes),
                    started.elapsed().as_secs_f64(),
                    report.damaged.len(),
                    report.unverified.len()
                ))?;
            }
            if !report.is_clean() {
                return Ok(ExitCode::Damaged);
            }
            if !report.is_complete() {
                // Not damage: the store could not be read (a timeout, a server down).
                return Ok(ExitCode::Failure);
            }
        }
    }
    Ok(ExitCode::Ok)
}

fn transfer_outcome(
    ui: &Ui,
    verb: &str,
    report: &hybridstore::TransferReport,
) -> Result<ExitCode, Failure> {
    if ui.json {
        ui.print_json(report)?;
    } else {
        for e in report.errors.iter().take(20) {
            eprintln!("error: {}: {}", e.path, e.message);
        }
        if report.errors.len() > 20 {
            eprintln!("… and {} more errors", report.errors.len() - 20);
        }
        println!(
            "{verb} {} files, {} in {:.1} s ({:.1} MB/s); {} skipped, {} errors",
            report.files,
            human_bytes(report.bytes),
            report.elapsed_ms as f64 / 1000.0,
            report.megabytes_per_second(),
            report.skipped,
            report.errors.len()
        );
        if let Some(p) = &report.passages {
            println!(
                "indexed {} passages of {} documents for search in {:.1} s",
                p.passages,
                p.documents,
                p.elapsed_ms as f64 / 1000.0
            );
        }
    }
    Ok(if report.errors.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Damaged
    })
}

fn read_stdin() -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    std::io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}

#[tokio::main]
async fn main() -> ProcessExit {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(Failure::OutputClosed) => ExitCode::Ok,
        Err(Failure::Error { error, code }) => {
            eprintln!("error: {error}");
            code
        }
    };
    ProcessExit::from(code as u8)
}
