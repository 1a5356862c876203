//! Whole trees in and out: `ingest` and `export`.

use std::path::Path;

use hybridstore::{HybridStorageSystem, Progress, TransferReport};
use indicatif::ProgressBar;

use crate::Ui;
use crate::failure::{ExitCode, Failure};
use crate::output::human_bytes;

/// `ingest DIR [--prefix P]`.
pub(crate) async fn ingest(
    system: &HybridStorageSystem,
    dir: &Path,
    prefix: &str,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    let bar = ui.bar("ingest");
    let report = system.ingest_dir(dir, prefix, track(&bar)).await?;
    bar.finish_and_clear();
    outcome(ui, "ingested", &report)
}

/// `export DIR [--prefix P]`.
pub(crate) async fn export(
    system: &HybridStorageSystem,
    dir: &Path,
    prefix: &str,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    let bar = ui.bar("export");
    let report = system.export_dir(dir, prefix, track(&bar)).await?;
    bar.finish_and_clear();
    outcome(ui, "exported", &report)
}

fn track(bar: &ProgressBar) -> impl Fn(Progress) + Send + Sync + use<> {
    let bar = bar.clone();
    move |p: Progress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_message(format!("{}/{} files", p.files_done, p.files_total));
    }
}

fn outcome(ui: &Ui, verb: &str, report: &TransferReport) -> Result<ExitCode, Failure> {
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
