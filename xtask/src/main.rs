//! Project chores, run as `cargo xtask <task>`:
//!
//! - `test-all`: formatting, the module check (`modules`), clippy (`-D warnings`, all targets
//!   and features), every test of the workspace under cargo-nextest, and the doc tests: the
//!   README's test command and CI's. Installs `redis-server` (Debian's package) first when it
//!   is missing (as root or through password-less sudo).
//! - `modules`: no two sibling modules of a crate depend on each other (see `modules.rs`).
//! - `bench`: the criterion benchmarks, then a summary with ratios against each benchmark's
//!   in-run baseline in `target/bench-report/summary.{md,json}`. `bench sync`: the sync
//!   engine against rclone on one SeaweedFS server, `target/bench-report/sync.json`.
//!   `bench backup`: backup and restore against restic on the ingested Rust documentation,
//!   `target/bench-report/backup.{md,json}` (see `bench_backup.rs`).
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

mod bench;
mod bench_backup;
mod demo;
mod libduckdb;
mod modules;
mod services;

use bench::{bench, target_dir};
use demo::demo;
use libduckdb::{duckdb_lib_dir, library_path_with};
use modules::check_module_cycles;
use services::{ensure_redis_server, ensure_weed};

type Result<T> = std::result::Result<T, String>;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test-all              fmt check, the module check, clippy -D warnings, all tests
                        (nextest), doc tests
  modules [SRC_DIR…]    fails if two sibling modules of a crate depend on each other
                        (every crate's src/ by default)
  bench [FILTER]        criterion benchmarks + target/bench-report/summary.{md,json}
  bench sync            sync vs rclone on one SeaweedFS (first push, no-change sync,
                        1% changed, pull into empty) + target/bench-report/sync.json
  bench backup [--source DIR]
                        backup vs restic on the data directory of the ingested Rust docs
                        (first, unchanged, 1% changed, restore latest) +
                        target/bench-report/backup.{md,json}
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
        Some("bench") if args.get(1).map(String::as_str) == Some("backup") => {
            bench_backup::bench_backup(&args[2..])
        }
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("demo") => demo(&args[1..]),
        Some("modules") => check_module_cycles(&args[1..]),
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

pub(crate) fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the program it runs (the Cargo Book,
    // "Environment variables Cargo sets for crates"): the checkout being worked in. The path
    // compiled in is only a fallback: with one target directory shared by two checkouts,
    // `target/debug/xtask` may be the other checkout's build.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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
pub(crate) fn cargo(args: &[&str]) -> Command {
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

pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

pub(crate) fn run(mut cmd: Command) -> Result<()> {
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

pub(crate) fn nextest_available() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
fn test_all() -> Result<()> {
    let started = Instant::now();
    ensure_redis_server();
    ensure_weed();
    run(cargo(&["fmt", "--all", "--", "--check"]))?;
    check_module_cycles(&[])?;
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
