//! `cargo xtask demo`: the main job on real documents, end to end.

use super::*;

/// The main job: ingest real documents, export them, diff, verify.
pub(crate) fn demo(args: &[String]) -> Result<()> {
    let mut source = None;
    let mut work = None;
    let mut primary = None;
    let mut dedup = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--source" => source = it.next().map(PathBuf::from),
            "--work" => work = it.next().map(PathBuf::from),
            "--primary" => primary = it.next().cloned(),
            "--no-dedup" => dedup = false,
            other => return Err(format!("unknown demo argument {other:?}\n{USAGE}")),
        }
    }
    let source = match source {
        Some(s) => s,
        None => rust_docs()?,
    };
    let target = target_dir()?;
    let work = work.unwrap_or_else(|| target.join("demo"));
    run(cargo(&["build", "--release", "-p", "hybridstore-cli"]))?;
    let bin = target.join("release").join("hybridstore");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    let data = work.join("data");
    let exported = work.join("export");
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-dir").arg(&data).args(args);
        if let Some(primary) = &primary {
            cmd.env("HYBRIDSTORE_PRIMARY", primary);
        }
        cmd.env("HYBRIDSTORE_DEDUP", dedup.to_string());
        cmd
    };
    let timed = |what: &str, cmd: Command| -> Result<f64> {
        let t = Instant::now();
        run(cmd)?;
        let s = t.elapsed().as_secs_f64();
        eprintln!("xtask: {what} took {s:.1} s");
        Ok(s)
    };
    let stats = || -> Result<serde_json::Value> {
        let out = cli(&["--json", "stats"])
            .output()
            .map_err(|e| format!("hybridstore stats: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "hybridstore stats failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("hybridstore stats printed no JSON: {e}"))?;
        eprintln!("xtask: stats {}", stats);
        Ok(stats)
    };
    let stored = |stats: &serde_json::Value| stats["kv"]["stored_bytes"].as_u64();
    let src = source.to_string_lossy().into_owned();
    let out = exported.to_string_lossy().into_owned();
    // Flush the removed work directory and the build's writes first, so their write-back
    // is not billed to the ingest.
    let _ = Command::new("sync").status();
    let ingest_s = timed("ingest", cli(&["ingest", &src, "--prefix", "first/"]))?;
    let first = stats()?;
    let logical = first["kv"]["logical_bytes"].as_u64().unwrap_or(0);
    let second_s = timed(
        "second ingest (same tree, other prefix)",
        cli(&["ingest", &src, "--prefix", "second/"]),
    )?;
    let second = stats()?;
    let growth = match (stored(&first), stored(&second)) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) / a as f64 * 100.0),
        _ => None,
    };
    let export_s = timed("export", cli(&["export", &out, "--prefix", "first/"]))?;
    let mut diff = Command::new("diff");
    diff.args(["-r", "-q"]).arg(&source).arg(&exported);
    timed("diff -r", diff)?;
    let verify_s = timed("verify", cli(&["verify"]))?;
    let mb_per_s = |secs: f64| logical as f64 / 1e6 / secs;
    eprintln!(
        "xtask: demo passed ({} primary, dedup {}): {:.1} MB ingested in {ingest_s:.1} s \
         ({:.1} MB/s), again under another prefix in {second_s:.1} s ({:.1} MB/s); \
         stored {} bytes{}; export {export_s:.1} s, verify (both copies) {verify_s:.1} s; \
         data in {}",
        primary.as_deref().unwrap_or("sql"),
        if dedup { "on" } else { "off" },
        logical as f64 / 1e6,
        mb_per_s(ingest_s),
        mb_per_s(second_s),
        stored(&first).map_or("?".into(), |b| b.to_string()),
        growth.map_or(String::new(), |g| format!(
            ", +{g:.3}% after the second ingest"
        )),
        data.display()
    );
    if dedup && growth.is_none_or(|g| g >= 1.0) {
        return Err(format!(
            "the second ingest of the same tree grew the stored bytes by {growth:?} %; dedup promises < 1 %"
        ));
    }
    demo_analytics(&cli)?;
    demo_search(&cli, &source)
}

/// `search "borrow checker lifetime"` over the ingested docs: with the Rust documentation as
/// the source, the best passages must include the book's or the reference's pages on
/// lifetimes.
fn demo_search(cli: &dyn Fn(&[&str]) -> Command, source: &Path) -> Result<()> {
    const QUERY: &str = "borrow checker lifetime";
    let started = Instant::now();
    run(cli(&["search", QUERY, "-n", "8"]))?;
    eprintln!(
        "xtask: search {QUERY:?} took {:.2} s (the whole command)",
        started.elapsed().as_secs_f64()
    );
    let out = cli(&["--json", "search", QUERY, "-n", "10"])
        .output()
        .map_err(|e| format!("hybridstore search: {e}"))?;
    let hits: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("search printed no JSON: {e}"))?;
    let keys: Vec<&str> = hits
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["key"].as_str()).collect())
        .unwrap_or_default();
    let on_lifetimes = keys
        .iter()
        .any(|k| (k.contains("/book/") || k.contains("/reference/")) && k.contains("lifetime"));
    // The Rust documentation has the book and the reference; another source need not.
    let rust_docs = source.join("book").is_dir() && source.join("reference").is_dir();
    if rust_docs && !on_lifetimes {
        return Err(format!(
            "search {QUERY:?} found no book or reference page on lifetimes among {keys:?}"
        ));
    }
    if keys.is_empty() {
        return Err(format!("search {QUERY:?} found nothing"));
    }
    Ok(())
}

/// A few hundred `get`s of ten keys (6, 12, … 60 of each), then `analytics report`, which
/// must list the most read key first.
fn demo_analytics(cli: &dyn Fn(&[&str]) -> Command) -> Result<()> {
    let listed = cli(&["ls", "first/book/", "--limit", "10"])
        .output()
        .map_err(|e| format!("hybridstore ls: {e}"))?;
    let keys: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if keys.is_empty() {
        return Err("no keys under first/book/ to read".into());
    }
    let started = Instant::now();
    let mut gets = 0;
    for (i, key) in keys.iter().enumerate() {
        for _ in 0..(i + 1) * 6 {
            let status = cli(&["get", key, "--output", "/dev/null"])
                .status()
                .map_err(|e| format!("hybridstore get: {e}"))?;
            if !status.success() {
                return Err(format!("hybridstore get {key} failed with {status}"));
            }
            gets += 1;
        }
    }
    eprintln!(
        "xtask: {gets} gets of {} keys took {:.1} s",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    run(cli(&["analytics", "report", "--top", "5"]))?;
    let report = cli(&["--json", "analytics", "report", "--top", "1"])
        .output()
        .map_err(|e| format!("hybridstore analytics report: {e}"))?;
    let report: serde_json::Value = serde_json::from_slice(&report.stdout)
        .map_err(|e| format!("analytics report printed no JSON: {e}"))?;
    let hottest = keys.last().map(String::as_str);
    if report["hot_keys"][0]["key"].as_str() != hottest {
        return Err(format!(
            "analytics report names {} as the hottest key, expected {hottest:?}",
            report["hot_keys"][0]
        ));
    }
    Ok(())
}

/// `$(rustc --print sysroot)/share/doc/rust/html`, the Rust documentation every toolchain
/// with the `rust-docs` component carries.
pub(crate) fn rust_docs() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustc --print sysroot: {e}"))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let docs = Path::new(&sysroot).join("share/doc/rust/html");
    if docs.is_dir() {
        Ok(docs)
    } else {
        Err(format!(
            "{} is missing: install it with `rustup component add rust-docs`, or pass --source DIR",
            docs.display()
        ))
    }
}
