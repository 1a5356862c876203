//! `cargo xtask bench`: the criterion benchmarks and a summary of ratios to each group's
//! in-run baseline.

use super::*;

pub(crate) fn target_dir() -> Result<PathBuf> {
    let out = cargo(&["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err("cargo metadata failed".into());
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata has no target_directory".into())
}

/// Runs the criterion benches and summarizes every group that has a benchmark named
/// `baseline`: each other benchmark's median time as a ratio to the baseline's, and its
/// throughput where the group declared one.
pub(crate) fn bench(filter: Option<&str>) -> Result<()> {
    if filter == Some("sync") {
        return bench_sync();
    }
    let mut args = vec!["bench", "--workspace", "--all-features"];
    if let Some(f) = filter {
        args.extend(["--", f]);
    }
    run(cargo(&args))?;
    let target = target_dir()?;
    let criterion = target.join("criterion");
    let mut groups: BTreeMap<String, BTreeMap<String, Estimate>> = BTreeMap::new();
    collect_estimates(&criterion, &mut groups)?;
    let report_dir = target.join("bench-report");
    std::fs::create_dir_all(&report_dir).map_err(|e| format!("{}: {e}", report_dir.display()))?;

    let mut md = String::from(
        "# hybridstore benchmarks\n\nMedian time per iteration; ratio = time / time of the group's `baseline` in the same run (lower is faster).\n\n| group | benchmark | median | throughput | ratio to baseline |\n|---|---|---|---|---|\n",
    );
    let mut json = Vec::new();
    for (group, benches) in &groups {
        let baseline = benches.get("baseline").map(|b| b.median_ns);
        for (name, est) in benches {
            let ratio = baseline.map(|b| est.median_ns / b);
            let throughput = est
                .bytes
                .map(|bytes| bytes as f64 / (est.median_ns / 1e9) / 1e6);
            md.push_str(&format!(
                "| {group} | {name} | {} | {} | {} |\n",
                human_ns(est.median_ns),
                throughput.map_or("-".into(), |t| format!("{t:.1} MB/s")),
                ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            ));
            json.push(serde_json::json!({
                "group": group, "benchmark": name, "median_ns": est.median_ns,
                "throughput_mb_s": throughput, "ratio_to_baseline": ratio,
            }));
        }
    }
    std::fs::write(report_dir.join("summary.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(
        report_dir.join("summary.json"),
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("{md}");
    eprintln!(
        "xtask: wrote {}",
        report_dir.join("summary.{md,json}").display()
    );
    Ok(())
}

/// `cargo xtask bench sync`: hybridstore-sync against rclone on one SeaweedFS (see
/// `crates/sync/benches/sync_vs_rclone.rs`); installs `weed` and Debian's `rclone` first.
/// Builds only the sync crate and what it needs, in the bench profile.
fn bench_sync() -> Result<()> {
    ensure_weed();
    crate::services::ensure_apt_package("rclone", "rclone");
    if !on_path("rclone") {
        return Err("bench sync needs rclone (apt-get install rclone)".into());
    }
    let mut cmd = cargo(&[
        "bench",
        "-p",
        "hybridstore-sync",
        "--bench",
        "sync_vs_rclone",
    ]);
    cmd.env("CARGO_TARGET_DIR", target_dir()?);
    run(cmd)
}

struct Estimate {
    median_ns: f64,
    bytes: Option<u64>,
}

/// Finds `<group>/<bench>/new/{estimates,benchmark}.json` under criterion's output.
fn collect_estimates(
    dir: &Path,
    out: &mut BTreeMap<String, BTreeMap<String, Estimate>>,
) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let read = |name: &str| -> Option<serde_json::Value> {
                serde_json::from_slice(&std::fs::read(path.join(name)).ok()?).ok()
            };
            let (Some(est), Some(bench)) = (read("estimates.json"), read("benchmark.json")) else {
                continue;
            };
            let Some(median_ns) = est["median"]["point_estimate"].as_f64() else {
                continue;
            };
            let group = bench["group_id"].as_str().unwrap_or("?").to_string();
            let name = bench["function_id"]
                .as_str()
                .or_else(|| bench["value_str"].as_str())
                .unwrap_or("?")
                .to_string();
            let bytes = bench["throughput"]["Bytes"].as_u64();
            out.entry(group)
                .or_default()
                .insert(name, Estimate { median_ns, bytes });
        } else if path.file_name().is_some_and(|n| n != "report") {
            collect_estimates(&path, out)?;
        }
    }
    Ok(())
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
