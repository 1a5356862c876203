//! `sync push|pull|both|status`: sync with S3 or a directory.

use hybridstore::HybridStorageSystem;
use hybridstore::sync::{ConflictPolicy, Direction, SyncOptions, SyncReport};

use crate::Ui;
use crate::failure::{ExitCode, Failure};
use crate::output::human_bytes;

/// The sync subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum SyncCommand {
    /// Send local changes to the remote
    Push(SyncArgs),
    /// Bring the remote's changes here
    Pull(SyncArgs),
    /// Both ways; keys changed on both sides are resolved by --policy
    Both(SyncArgs),
    /// Pending uploads, downloads, conflicts, the last sync, and the remote's latency
    Status {
        /// s3://BUCKET/PREFIX or a directory [default: the configured backup bucket, else
        /// S3_BUCKET]
        #[arg(long)]
        remote: Option<String>,
    },
}

/// Options of a push, pull or two-way sync.
#[derive(clap::Args, Debug)]
pub(crate) struct SyncArgs {
    /// s3://BUCKET/PREFIX or a directory [default: the configured backup bucket, else
    /// S3_BUCKET]
    #[arg(long)]
    remote: Option<String>,
    /// Report what would change; change nothing
    #[arg(long)]
    dry_run: bool,
    /// How a key changed on both sides is resolved: newer, local, remote or keep-both
    #[arg(long, default_value = "newer", value_parser = parse_policy)]
    policy: ConflictPolicy,
    /// Refuse to delete more than this percentage of either side's keys
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    max_delete: u8,
    /// Go past --max-delete
    #[arg(long)]
    force: bool,
}

fn parse_policy(s: &str) -> Result<ConflictPolicy, String> {
    s.parse()
        .map_err(|e: hybridstore::core::Error| e.message().to_string())
}

/// Runs a sync subcommand.
pub(crate) async fn run(
    system: &HybridStorageSystem,
    command: SyncCommand,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    let (direction, args) = match command {
        SyncCommand::Status { remote } => {
            let engine = system.sync_engine(remote.as_deref()).await?;
            let status = engine.status().await?;
            if ui.json {
                ui.print_json(&status)?;
            } else {
                println!(
                    "remote             {} (reachable, {:.1} ms)",
                    status.remote, status.remote_latency_ms
                );
                println!("pending uploads    {}", status.pending_uploads);
                println!("pending downloads  {}", status.pending_downloads);
                println!("conflicts          {}", status.conflicts);
                println!("remote generation  {}", status.generation);
                match status.last_sync {
                    Some(t) => println!(
                        "last sync          {}",
                        humantime::format_rfc3339_seconds(t)
                    ),
                    None => println!("last sync          never"),
                }
            }
            return Ok(ExitCode::Ok);
        }
        SyncCommand::Push(args) => (Direction::Push, args),
        SyncCommand::Pull(args) => (Direction::Pull, args),
        SyncCommand::Both(args) => (Direction::Both, args),
    };
    let options = SyncOptions::default()
        .with_policy(args.policy)
        .with_dry_run(args.dry_run)
        .with_max_delete(args.max_delete, args.force);
    let bar = ui.bar_with("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} keys {msg}");
    let report = system
        .sync(args.remote.as_deref(), direction, &options, |p| {
            bar.set_prefix(p.phase);
            bar.set_length(p.keys_total);
            bar.set_position(p.keys_done);
            bar.set_message(format!(
                "{} sent, {} received",
                human_bytes(p.bytes_sent),
                human_bytes(p.bytes_received)
            ));
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    if ui.json {
        ui.print_json(&report)?;
    } else {
        let remote = args
            .remote
            .clone()
            .or_else(|| system.config().default_remote())
            .unwrap_or_default();
        print_report(&remote, &report);
    }
    Ok(if report.failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Damaged
    })
}

fn print_report(remote: &str, r: &SyncReport) {
    let verb = if r.dry_run { "would sync" } else { "synced" };
    println!(
        "{verb} with {remote}: {} uploaded, {} deleted there, {} downloaded, {} deleted here, \
         {} identical, {} pending; sent {} ({} chunks in {} packs, {} segments), received {} \
         in {:.1} s; remote generation {}",
        r.uploaded,
        r.deleted_remote,
        r.downloaded,
        r.deleted_local,
        r.identical,
        r.pending,
        human_bytes(r.bytes_sent),
        r.chunks_sent,
        r.packs_sent,
        r.segments_sent,
        human_bytes(r.bytes_received),
        r.elapsed_ms as f64 / 1000.0,
        r.generation
    );
    for c in &r.conflicts {
        let kept = c
            .kept_as
            .as_deref()
            .map_or(String::new(), |k| format!(", the other kept as {k}"));
        let state = if c.resolved {
            ""
        } else {
            " (left for a two-way sync)"
        };
        println!(
            "conflict: {}: {:?} version wins{kept}{state}",
            c.key, c.winner
        );
    }
    for (key, why) in &r.failed {
        eprintln!("not synced: {key}: {why}");
    }
}
