//! The whole system: `init`, `stats`, `gc`, `verify`.

use std::io::Write;
use std::time::Duration;

use hybridstore::core::KvStore;
use hybridstore::{HybridStorageSystem, StorageMode};

use crate::Ui;
use crate::failure::{ExitCode, Failure, output};
use crate::output::human_bytes;

/// `init`: opens (creating) the data directory.
pub(crate) fn init(system: &HybridStorageSystem, ui: &Ui) -> Result<ExitCode, Failure> {
    let dir = &system.config().data_dir;
    if ui.json {
        ui.print_json(&serde_json::json!({ "data_dir": dir }))?;
    } else {
        println!("data directory ready: {}", dir.display());
    }
    Ok(ExitCode::Ok)
}

/// `stats`: sizes of every store.
/// `health`: one line per engine (or the report as JSON); the exit code is the system's
/// status.
pub(crate) async fn health(system: &HybridStorageSystem, ui: &Ui) -> Result<ExitCode, Failure> {
    use hybridstore::health::HealthStatus;
    let report = system.health().await;
    if ui.json {
        ui.print_json(&report)?;
    } else {
        for e in &report.engines {
            println!(
                "{:<14} {:<9} {:>9.1} ms  {}",
                e.engine,
                e.status.as_str(),
                e.latency_ms,
                e.reason.as_deref().unwrap_or("")
            );
        }
        println!("system         {}", report.status.as_str());
    }
    Ok(match report.status {
        HealthStatus::Ok => ExitCode::Ok,
        HealthStatus::Degraded => ExitCode::Degraded,
        HealthStatus::Down => ExitCode::Down,
    })
}

pub(crate) async fn stats(system: &HybridStorageSystem, ui: &Ui) -> Result<ExitCode, Failure> {
    let stats = system.stats().await?;
    if ui.json {
        ui.print_json(&stats)?;
    } else {
        println!("data directory  {}", stats.data_dir.display());
        let mode = match stats.mode {
            StorageMode::Local => "local".to_string(),
            StorageMode::LocalWithS3Backup => format!(
                "local, backed up to {}",
                system.config().default_remote().unwrap_or_default()
            ),
            StorageMode::S3PrimaryWithLocalCache | StorageMode::S3Only => {
                let config = system.config();
                let cache = if stats.mode == StorageMode::S3Only {
                    ""
                } else {
                    " (disk cache)"
                };
                format!(
                    "S3 primary s3://{}/{}{cache}",
                    config.s3_bucket.as_deref().unwrap_or_default(),
                    config.s3_prefix
                )
            }
        };
        println!("storage mode    {mode}");
        println!("keys            {}", stats.kv.keys);
        println!("logical bytes   {}", human_bytes(stats.kv.logical_bytes));
        if let Some(stored) = stats.kv.stored_bytes {
            println!("stored bytes    {}", human_bytes(stored));
        }
        if let Some(c) = &stats.disk_cache {
            println!(
                "disk cache      {} in {} entries, {} hits, {} misses",
                human_bytes(c.bytes),
                c.entries,
                c.hits,
                c.misses
            );
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
    Ok(ExitCode::Ok)
}

/// `gc [--grace D]`: garbage collection of the dedup chunks.
pub(crate) async fn gc(
    system: &HybridStorageSystem,
    grace: Duration,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
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
    Ok(ExitCode::Ok)
}

/// `verify`: every value re-read and re-hashed; exit 4 on damage, 1 when some could not be
/// read.
pub(crate) async fn verify(system: &HybridStorageSystem, ui: &Ui) -> Result<ExitCode, Failure> {
    let kv = system.kv();
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
    Ok(ExitCode::Ok)
}
