//! `hybridstore`: the command-line tool over a hybridstore data directory.
//!
//! Every command opens the data directory (`--data-dir`, `HYBRIDSTORE_DATA_DIR`, or the
//! configuration file), does its work and exits with a code a script can act on (see
//! [`ExitCode`]). `--json` prints machine-readable output; logs go to stderr under `RUST_LOG`.

mod analytics;
mod backup;
mod configuration;
mod failure;
mod keys;
mod migrate;
mod output;
mod search;
mod sync;
mod tenants;
mod transfer;
mod upkeep;
mod vectors;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hybridstore::core::Error;
use hybridstore::{HybridStorageSystem, OpenOptions, StorageConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::failure::{ExitCode, Failure, output};

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

    /// Run put, get, rm, ls and head in this tenant's namespace (its keys only, within its
    /// quota)
    #[arg(long, global = true, env = "HYBRIDSTORE_TENANT", value_name = "NAME")]
    tenant: Option<String>,

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
    /// Probe every engine: ok / degraded / down with latency and reason (exit code 0 ok,
    /// 6 degraded, 7 down)
    Health,
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
    /// Sync with S3 or a directory: push, pull, both ways, status. Only changed keys travel;
    /// chunks the remote has are never sent again
    Sync {
        #[command(subcommand)]
        command: sync::SyncCommand,
    },
    /// Snapshots of the whole system in a backup repository: create, list, verify, restore,
    /// forget (retention), prune, diff
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Copy every key with its metadata from one store to another, each verified by reading
    /// it back; run again to resume (keys already copied are skipped). Nothing is deleted.
    /// SRC and DST: a data directory, file://DIR, sqlite://FILE, postgres://…, s3://BUCKET/PREFIX.
    /// Exit code 4 if some keys failed
    Migrate {
        /// Where the keys are
        #[arg(long, value_name = "SRC")]
        from: String,
        /// Where they go
        #[arg(long, value_name = "DST")]
        to: String,
        /// Only report what would be copied
        #[arg(long)]
        dry_run: bool,
        /// Only keys with this prefix
        #[arg(long)]
        prefix: Option<String>,
        /// Write batches or large values in flight at once (1 to 64)
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Tenants: list, usage on every engine, quotas (bytes, keys, vectors), delete across
    /// every engine
    Tenants {
        #[command(subcommand)]
        command: tenants::TenantsCommand,
    },
    /// The effective configuration: `config show` prints every setting with its source
    Config {
        #[command(subcommand)]
        command: configuration::ConfigCommand,
    },
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

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let ui = Ui {
        json: cli.json,
        quiet: cli.quiet,
    };
    let (mut config, mut explanation) =
        StorageConfig::load_explained(cli.config.as_deref()).map_err(Failure::input)?;
    if let Some(dir) = cli.data_dir {
        // clap reads HYBRIDSTORE_DATA_DIR into the flag too: name the variable when it was.
        let from_env = std::env::var_os("HYBRIDSTORE_DATA_DIR").is_some_and(|v| v == dir);
        if !from_env {
            explanation.set_by_code("data_dir", dir.display().to_string(), "flag --data-dir");
        }
        config.data_dir = dir;
    }
    let command = match cli.command {
        // Two stores of its own, not the data directory of --data-dir.
        Command::Migrate {
            from,
            to,
            dry_run,
            prefix,
            concurrency,
        } => {
            let args = migrate::MigrateArgs {
                from,
                to,
                dry_run,
                prefix,
                concurrency,
            };
            return migrate::run(&config, args, &ui).await;
        }
        // The configuration alone: nothing is opened.
        Command::Config { command } => {
            return configuration::run(&config, &explanation, command, &ui);
        }
        // Reads the analytics database alone, without the data directory's lock.
        Command::Analytics { command } => {
            analytics::run(&config, command, &ui).await?;
            return Ok(ExitCode::Ok);
        }
        // The repository alone, or (create) the system opened by the command itself.
        Command::Backup { command } => return backup::run(&config, command, &ui).await,
        other => other,
    };
    // A command, not a long-running process: no background push, no pull at startup.
    let system = HybridStorageSystem::open_with(config, OpenOptions::command()).await?;
    let scoped = match &cli.tenant {
        Some(name) => Some(system.tenant(name).await?),
        None => None,
    };
    let kv = scoped.as_ref().map_or(system.kv(), |t| t.kv()).as_ref();
    match command {
        // Normally handled above, before the store opens; the same work either way.
        Command::Analytics { command } => {
            analytics::run(system.config(), command, &ui).await?;
            Ok(ExitCode::Ok)
        }
        Command::Init => upkeep::init(&system, &ui),
        Command::Put {
            key,
            file,
            content_type,
        } => keys::put(kv, key, file, content_type, &ui).await,
        Command::Get { key, output } => keys::get(kv, key, output).await,
        Command::Rm { key } => keys::rm(kv, key, &ui).await,
        Command::Ls {
            prefix,
            limit,
            long,
        } => keys::ls(kv, prefix, limit, long, &ui).await,
        Command::Head { key } => keys::head(kv, key, &ui).await,
        Command::Ingest { dir, prefix } => transfer::ingest(&system, &dir, &prefix, &ui).await,
        Command::Export { dir, prefix } => transfer::export(&system, &dir, &prefix, &ui).await,
        Command::Vectors { command } => {
            vectors::run(&system, command, &ui).await?;
            Ok(ExitCode::Ok)
        }
        Command::Search { query, limit } => search::search(&system, query, limit, &ui).await,
        Command::Stats => upkeep::stats(&system, &ui).await,
        Command::Health => upkeep::health(&system, &ui).await,
        Command::Gc { grace } => upkeep::gc(&system, grace, &ui).await,
        Command::Verify => upkeep::verify(&system, &ui).await,
        Command::Sync { command } => sync::run(&system, command, &ui).await,
        Command::Tenants { command } => tenants::run(&system, command, &ui).await,
        // Handled above, before the data directory opens (restore must not open it).
        Command::Backup { .. } => {
            Err(Error::backend("backup commands run before the data directory opens").into())
        }
        Command::Config { .. } | Command::Migrate { .. } => {
            Err(Error::backend("config and migrate run before the data directory opens").into())
        }
    }
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
