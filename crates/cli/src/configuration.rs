//! `config show`: the effective configuration, each value with where it came from.

use clap::Subcommand;
use hybridstore::{ConfigExplanation, StorageConfig};
use serde::Serialize;

use crate::Ui;
use crate::failure::{ExitCode, Failure, output};

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Print every setting's value and its source (default, the --config file, an
    /// environment variable or a flag); passwords in URLs are shown as ***
    Show,
}

/// What `config show --json` prints.
#[derive(Serialize)]
struct Shown<'a> {
    /// The storage mode the S3 flags choose (`local`, `local_with_s3_backup`, …).
    mode: hybridstore::StorageMode,
    entries: &'a [hybridstore::ConfigEntry],
}

pub(crate) fn run(
    config: &StorageConfig,
    explanation: &ConfigExplanation,
    command: ConfigCommand,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    match command {
        ConfigCommand::Show => {
            let mode = config.mode().map_err(Failure::input)?;
            if ui.json {
                ui.print_json(&Shown {
                    mode,
                    entries: &explanation.entries,
                })?;
                return Ok(ExitCode::Ok);
            }
            let width = explanation
                .entries
                .iter()
                .map(|e| e.field.len())
                .max()
                .unwrap_or(0);
            let value_width = explanation
                .entries
                .iter()
                .map(|e| e.value.chars().count())
                .max()
                .unwrap_or(0)
                .min(48);
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            output(writeln!(out, "{:<width$}  {mode:?}", "(mode)"))?;
            for e in &explanation.entries {
                output(writeln!(
                    out,
                    "{:<width$}  {:<value_width$}  {}",
                    e.field, e.value, e.source
                ))?;
            }
            Ok(ExitCode::Ok)
        }
    }
}
