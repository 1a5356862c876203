//! `search QUERY`: full-text search over the ingested passages.

use std::io::Write;

use hybridstore::HybridStorageSystem;

use crate::Ui;
use crate::failure::{ExitCode, Failure, output};

/// Prints the `limit` best passages for `query`, each with a snippet and the other documents
/// that hold the same passage.
pub(crate) async fn search(
    system: &HybridStorageSystem,
    query: String,
    limit: usize,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
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
    Ok(ExitCode::Ok)
}
