//! `backup init|create|list|verify|restore|forget|prune|diff`: snapshots of the whole system
//! in a repository (`--repo DIR` or `--repo s3://BUCKET/PREFIX`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use hybridstore::backup::{
    CalendarSpan, PruneOptions, ReadData, RetentionPolicy, UNLIMITED, diff, forget, prune, verify,
};
use hybridstore::core::Error;
use hybridstore::snapshots::{RepositoryAccess, RestoreOptions, open_repository, restore_system};
use hybridstore::{HybridStorageSystem, OpenOptions, StorageConfig};

use crate::Ui;
use crate::failure::{ExitCode, Failure, output};
use crate::output::human_bytes;

/// Where the repository is.
#[derive(clap::Args, Debug)]
pub(crate) struct RepoArg {
    /// The repository: a directory or s3://BUCKET/PREFIX
    #[arg(long)]
    repo: String,
    /// The repository password: the first line of FILE (default: the
    /// HYBRIDSTORE_BACKUP_PASSWORD variable). A new repository is encrypted under it
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Create a new s3:// repository without a password (unencrypted)
    #[arg(long)]
    insecure_no_password: bool,
}

impl RepoArg {
    /// The password and consent the flags and the environment give.
    fn access(&self) -> Result<RepositoryAccess, Error> {
        Ok(
            RepositoryAccess::from_sources(self.password_file.as_deref())?
                .with_insecure_no_password(self.insecure_no_password),
        )
    }

    /// The repository, opened (or, with `create`, created if absent) with that access.
    async fn open(
        &self,
        config: &StorageConfig,
        create: bool,
    ) -> Result<hybridstore::backup::Repository, Error> {
        open_repository(
            config,
            &OpenOptions::command(),
            &self.repo,
            create,
            &self.access()?,
        )
        .await
    }
}

/// The backup subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum BackupCommand {
    /// Create an empty repository
    Init(RepoArg),
    /// Take a snapshot of the whole system (keys, SQL database, LanceDB tables, analytics),
    /// creating the repository if there is none
    Create {
        #[command(flatten)]
        repo: RepoArg,
        /// Tag the snapshot (repeatable)
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List the snapshots, oldest first
    List(RepoArg),
    /// Check the repository: structure always; re-read data with --read-data (exit code 4
    /// on damage)
    Verify {
        #[command(flatten)]
        repo: RepoArg,
        /// Re-read every pack and re-hash every chunk
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Re-read a random share of the packs, e.g. `10%`
        #[arg(long, value_parser = parse_percent)]
        read_data_subset: Option<f64>,
    },
    /// Restore a snapshot (an id prefix or `latest`) into an empty data directory
    Restore {
        /// Snapshot id (at least 4 hex digits) or `latest`
        snapshot: String,
        #[command(flatten)]
        repo: RepoArg,
        /// The data directory to restore into (empty or absent)
        #[arg(long)]
        to: PathBuf,
        /// Only keys starting with this prefix
        #[arg(long)]
        prefix: Option<String>,
        /// Write into a directory that is not empty
        #[arg(long)]
        force: bool,
    },
    /// Remove snapshots a retention policy does not keep (restic's rules); --prune then
    /// removes the data only they used
    Forget {
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Prune after forgetting
        #[arg(long)]
        prune: bool,
        /// Show what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Prune's grace period (with --prune)
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Remove data no snapshot needs: packs are marked first and deleted by a later prune
    /// once the grace period has passed
    Prune {
        #[command(flatten)]
        repo: RepoArg,
        /// Show what would be done; change nothing
        #[arg(long)]
        dry_run: bool,
        /// How long marked packs wait before deletion, and how old a pack must be to be
        /// marked (`0s`: delete at once)
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Keys and files that differ between two snapshots
    Diff {
        /// The older snapshot
        a: String,
        /// The newer snapshot
        b: String,
        #[command(flatten)]
        repo: RepoArg,
    },
}

/// A retention policy, as restic's `forget` takes it.
#[derive(clap::Args, Debug)]
pub(crate) struct PolicyArgs {
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours (`unlimited` for all)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_hourly: Option<u32>,
    /// … of each of the N newest days
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_daily: Option<u32>,
    /// … of each of the N newest ISO weeks
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_weekly: Option<u32>,
    /// … of each of the N newest months
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_monthly: Option<u32>,
    /// … of each of the N newest years
    #[arg(long, value_name = "N", value_parser = parse_count)]
    keep_yearly: Option<u32>,
    /// Keep every snapshot within this span of the newest (e.g. `1y6m`, `14d`, `2d12h`)
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    keep_within: Option<CalendarSpan>,
    /// Keep the newest snapshot of each day within this span of the newest
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    keep_within_daily: Option<CalendarSpan>,
    /// Keep the newest snapshot of each ISO week within this span of the newest
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    keep_within_weekly: Option<CalendarSpan>,
    /// Keep the newest snapshot of each month within this span of the newest
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    keep_within_monthly: Option<CalendarSpan>,
    /// Keep snapshots with all these tags (comma-separated; repeat for alternatives)
    #[arg(long, value_name = "TAG[,TAG…]")]
    keep_tag: Vec<String>,
}

impl PolicyArgs {
    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            tags: self
                .keep_tag
                .iter()
                .map(|t| t.split(',').map(str::to_string).collect())
                .collect(),
            ..RetentionPolicy::default()
        }
    }
}

fn parse_count(s: &str) -> Result<u32, String> {
    if s == "unlimited" || s == "-1" {
        return Ok(UNLIMITED);
    }
    s.parse::<u32>()
        .map_err(|_| format!("{s:?} is not a count (a whole number, or `unlimited`)"))
}

fn parse_span(s: &str) -> Result<CalendarSpan, String> {
    s.parse().map_err(|e: Error| e.message().to_string())
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let number = s.strip_suffix('%').unwrap_or(s);
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a share in (0%, 100%]")),
    }
}

/// Runs the subcommands that need only the repository (every one but `create`), without
/// opening the data directory.
pub(crate) async fn run(
    config: &StorageConfig,
    command: BackupCommand,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    match command {
        BackupCommand::Init(repo) => {
            let access = repo.access()?;
            match open_repository(config, &OpenOptions::command(), &repo.repo, false, &access).await
            {
                Ok(_) => {
                    return Err(Error::conflict(format!(
                        "{} already holds a backup repository",
                        repo.repo
                    ))
                    .with_retryable(false)
                    .into());
                }
                Err(e) if e.kind() == hybridstore::core::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let repository =
                open_repository(config, &OpenOptions::command(), &repo.repo, true, &access).await?;
            if ui.json {
                ui.print_json(repository.config())?;
            } else {
                println!(
                    "created backup repository {} at {}{}",
                    repository.config().id,
                    repo.repo,
                    if repository.is_encrypted() {
                        " (encrypted)"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::Ok)
        }
        BackupCommand::Create { repo, tags } => {
            let repository = repo.open(config, true).await?;
            let system =
                HybridStorageSystem::open_with(config.clone(), OpenOptions::command()).await?;
            let bar = ui.bar("backup");
            let report = system
                .backup_to(&repository, tags, &|p| {
                    bar.set_length(p.bytes_total);
                    bar.set_position(p.bytes_done);
                    bar.set_message(format!("{}/{} keys", p.keys_done, p.keys_total));
                })
                .await;
            bar.finish_and_clear();
            system.shutdown().await?;
            let report = report?;
            if ui.json {
                ui.print_json(&report)?;
            } else {
                let s = &report.snapshot.summary;
                println!(
                    "snapshot {} saved: {} keys ({}), {} files ({}); added {} in {} new chunks, {:.1} s",
                    &report.id[..12],
                    s.keys,
                    human_bytes(s.key_bytes),
                    s.files,
                    human_bytes(s.file_bytes),
                    human_bytes(s.new_bytes),
                    s.new_chunks,
                    s.duration_ms as f64 / 1000.0
                );
            }
            Ok(ExitCode::Ok)
        }
        BackupCommand::List(repo) => {
            let repository = repo.open(config, false).await?;
            let snapshots = repository.snapshots().await?;
            if ui.json {
                let list: Vec<_> = snapshots
                    .iter()
                    .map(|(id, s)| match s {
                        Ok(s) => serde_json::json!({"id": id, "snapshot": s}),
                        Err(e) => serde_json::json!({"id": id, "error": e.to_string()}),
                    })
                    .collect();
                ui.print_json(&list)?;
            } else {
                let mut out = std::io::stdout().lock();
                for (id, s) in &snapshots {
                    match s {
                        Ok(s) => output(writeln!(
                            out,
                            "{}  {}  {:<16} {:>8} keys {:>10}  {}",
                            &id[..12],
                            s.time,
                            s.host,
                            s.summary.keys,
                            human_bytes(s.summary.key_bytes + s.summary.file_bytes),
                            s.tags.join(",")
                        ))?,
                        Err(e) => output(writeln!(out, "{}  DAMAGED: {e}", &id[..12]))?,
                    }
                }
                output(writeln!(out, "{} snapshots", snapshots.len()))?;
            }
            Ok(ExitCode::Ok)
        }
        BackupCommand::Verify {
            repo,
            read_data,
            read_data_subset,
        } => {
            let repository = repo.open(config, false).await?;
            let mode = match (read_data, read_data_subset) {
                (true, _) => ReadData::All,
                (false, Some(p)) => ReadData::Subset(p),
                (false, None) => ReadData::None,
            };
            let bar = ui.bar_with("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len}");
            bar.set_prefix("verify");
            let report = verify(&repository, mode, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            if ui.json {
                ui.print_json(&report)?;
            } else {
                let mut out = std::io::stdout().lock();
                for p in &report.problems {
                    let mut at = Vec::new();
                    if let Some(s) = &p.snapshot {
                        at.push(format!("snapshot {}", &s[..s.len().min(12)]));
                    }
                    if let Some(i) = &p.item {
                        at.push(i.clone());
                    }
                    if let Some(pack) = &p.pack {
                        at.push(pack.clone());
                    }
                    output(writeln!(out, "DAMAGED {}: {}", at.join(", "), p.message))?;
                }
                output(writeln!(
                    out,
                    "{} snapshots, {} keys, {} chunks; {} of {} packs read: {} problems",
                    report.snapshots,
                    report.keys,
                    report.chunks,
                    report.packs_read,
                    report.packs,
                    report.problems.len()
                ))?;
            }
            Ok(if report.is_ok() {
                ExitCode::Ok
            } else {
                ExitCode::Damaged
            })
        }
        BackupCommand::Restore {
            snapshot,
            repo,
            to,
            prefix,
            force,
        } => {
            let repository = repo.open(config, false).await?;
            let mut target = config.clone();
            target.data_dir = to;
            let mut options = RestoreOptions::default().with_force(force);
            options.prefix = prefix;
            let bar = ui.bar("restore");
            let report = restore_system(&repository, &snapshot, target, &options, &|p| {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
                bar.set_message(format!("{}/{} keys", p.keys_done, p.keys_total));
            })
            .await;
            bar.finish_and_clear();
            let report = report?;
            if ui.json {
                ui.print_json(&report)?;
            } else {
                println!(
                    "restored snapshot {}: {} keys ({}), {} files ({}) in {:.1} s",
                    &report.snapshot[..12],
                    report.keys,
                    human_bytes(report.key_bytes),
                    report.files,
                    human_bytes(report.file_bytes),
                    report.elapsed_ms as f64 / 1000.0
                );
            }
            Ok(ExitCode::Ok)
        }
        BackupCommand::Forget {
            repo,
            policy,
            prune: then_prune,
            dry_run,
            grace,
        } => {
            let repository = repo.open(config, false).await?;
            let report = forget(&repository, &policy.policy(), dry_run).await?;
            let pruned = if then_prune {
                Some(
                    prune(
                        &repository,
                        &PruneOptions::with_grace(grace).with_dry_run(dry_run),
                    )
                    .await?,
                )
            } else {
                None
            };
            if ui.json {
                ui.print_json(&serde_json::json!({"forget": report, "prune": pruned}))?;
            } else {
                let mut out = std::io::stdout().lock();
                for g in &report.groups {
                    output(writeln!(out, "{} {}", g.host, g.source))?;
                    for k in &g.decision.keep {
                        output(writeln!(
                            out,
                            "  keep   {}  {}",
                            &k.id[..12],
                            k.reasons.join(", ")
                        ))?;
                    }
                    for id in &g.decision.remove {
                        output(writeln!(out, "  remove {}", &id[..12]))?;
                    }
                }
                let verb = if dry_run { "would remove" } else { "removed" };
                let removed: usize = report.groups.iter().map(|g| g.decision.remove.len()).sum();
                output(writeln!(out, "{verb} {removed} snapshots"))?;
                if let Some(p) = &pruned {
                    output(writeln!(out, "{}", prune_line(p)))?;
                }
            }
            Ok(ExitCode::Ok)
        }
        BackupCommand::Prune {
            repo,
            dry_run,
            grace,
        } => {
            let repository = repo.open(config, false).await?;
            let report = prune(
                &repository,
                &PruneOptions::with_grace(grace).with_dry_run(dry_run),
            )
            .await?;
            if ui.json {
                ui.print_json(&report)?;
            } else {
                println!("{}", prune_line(&report));
            }
            Ok(ExitCode::Ok)
        }
        BackupCommand::Diff { a, b, repo } => {
            let repository = repo.open(config, false).await?;
            let (_, older) = repository.resolve(&a).await?;
            let (_, newer) = repository.resolve(&b).await?;
            let report = diff(&repository, &older, &newer).await?;
            if ui.json {
                ui.print_json(&report)?;
            } else {
                let mut out = std::io::stdout().lock();
                for k in &report.keys_added {
                    output(writeln!(out, "+ {k}"))?;
                }
                for k in &report.keys_removed {
                    output(writeln!(out, "- {k}"))?;
                }
                for k in &report.keys_changed {
                    output(writeln!(out, "M {k}"))?;
                }
                for k in &report.keys_touched {
                    output(writeln!(out, "T {k}"))?;
                }
                for f in &report.files_added {
                    output(writeln!(out, "+ file {f}"))?;
                }
                for f in &report.files_removed {
                    output(writeln!(out, "- file {f}"))?;
                }
                for f in &report.files_changed {
                    output(writeln!(out, "M file {f}"))?;
                }
                output(writeln!(
                    out,
                    "{} added, {} removed, {} changed keys ({} in, {} out)",
                    report.keys_added.len(),
                    report.keys_removed.len(),
                    report.keys_changed.len(),
                    human_bytes(report.bytes_added),
                    human_bytes(report.bytes_removed)
                ))?;
            }
            Ok(ExitCode::Ok)
        }
    }
}

fn prune_line(p: &hybridstore::backup::PruneReport) -> String {
    format!(
        "{}{} packs: {} marked, {} deleted ({}), {} repacked ({} chunks copied), {} recovered, {} waiting for the grace period, {} too young",
        if p.dry_run { "dry run: " } else { "" },
        p.packs,
        p.packs_marked,
        p.packs_deleted,
        human_bytes(p.bytes_deleted),
        p.packs_repacked,
        p.chunks_copied,
        p.packs_recovered,
        p.packs_waiting,
        p.packs_in_grace
    )
}
