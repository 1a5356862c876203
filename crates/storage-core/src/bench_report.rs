//! Where the benchmarks write their reports: `<target>/bench-report/`, beside criterion's
//! output and the summary `cargo xtask bench` writes there.

use std::path::PathBuf;

/// `<target>/bench-report`, found from the running bench binary
/// (`<target>/release/deps/<bench>-<hash>`); `target/bench-report` if that fails.
pub fn bench_report_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|p| p.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench-report")
}

/// Writes `<name>.md` and `<name>.json` into [`bench_report_dir`] (created if missing) and
/// returns the Markdown file's path.
///
/// # Errors
/// The I/O error of creating the directory or writing either file.
pub fn write_bench_report(name: &str, markdown: &str, json: &str) -> std::io::Result<PathBuf> {
    let dir = bench_report_dir();
    std::fs::create_dir_all(&dir)?;
    let md = dir.join(format!("{name}.md"));
    std::fs::write(&md, markdown)?;
    std::fs::write(dir.join(format!("{name}.json")), json)?;
    Ok(md)
}
