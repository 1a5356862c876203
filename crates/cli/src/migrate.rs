//! `migrate --from SRC --to DST`: every key with its metadata copied and verified.

use hybridstore::core::KeyRange;
use hybridstore::{
    MigrateOptions, MigrateProgress, MigrationEndpoint, StorageConfig, StorageMigrator,
};

use crate::Ui;
use crate::failure::{ExitCode, Failure};
use crate::output::human_bytes;

/// The arguments of `migrate`.
pub(crate) struct MigrateArgs {
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    pub prefix: Option<String>,
    pub concurrency: usize,
}

pub(crate) async fn run(
    config: &StorageConfig,
    args: MigrateArgs,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    if args.from == args.to {
        return Err(Failure::input(hybridstore::core::Error::invalid_input(
            "--from and --to name the same store",
        )));
    }
    let source = MigrationEndpoint::open(&args.from, config).await?;
    let target = MigrationEndpoint::open(&args.to, config).await?;
    let mut options = MigrateOptions::default();
    options.dry_run = args.dry_run;
    options.concurrency = args.concurrency;
    if let Some(prefix) = args.prefix {
        options.range = KeyRange::prefix(prefix);
    }
    let bar = ui.bar("migrate");
    let on_progress = {
        let bar = bar.clone();
        move |p: MigrateProgress| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            bar.set_message(format!("{}/{} keys", p.keys_done, p.keys_total));
        }
    };
    let report = StorageMigrator::new(source.kv(), target.kv())
        .with_options(options)
        .run(on_progress)
        .await;
    bar.finish_and_clear();
    let (from, to) = (source.describe(), target.describe());
    // Both ends close (a data directory's lock released) whatever the outcome.
    let closed = (source.close().await, target.close().await);
    let report = report?;
    closed.0?;
    closed.1?;
    if ui.json {
        ui.print_json(&serde_json::json!({ "from": from, "to": to, "report": report }))?;
    } else {
        for f in report.failures.iter().take(20) {
            eprintln!("error: {}: {}", f.key, f.message);
        }
        if report.failures.len() > 20 {
            eprintln!("… and {} more failures", report.failures.len() - 20);
        }
        println!("from {from}\nto   {to}");
        println!(
            "source: {} keys, {}; already migrated: {}; only in the target: {}",
            report.source_keys,
            human_bytes(report.source_bytes),
            report.already_migrated,
            report.target_only
        );
        if report.dry_run {
            println!(
                "dry run: would copy {} keys ({}), replacing {}",
                report.to_copy,
                human_bytes(report.to_copy_bytes),
                report.replaced
            );
        } else {
            println!(
                "copied and verified {} keys ({}) in {:.1} s; replaced {}, vanished {}, {} failed",
                report.copied,
                human_bytes(report.copied_bytes),
                report.elapsed_ms as f64 / 1000.0,
                report.replaced,
                report.vanished,
                report.failures.len()
            );
        }
    }
    Ok(if report.complete() {
        ExitCode::Ok
    } else {
        ExitCode::Damaged
    })
}
