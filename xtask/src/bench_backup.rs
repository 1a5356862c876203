//! `cargo xtask bench backup`: hybridstore's backup against restic on the same data
//! directory, in one run.
//!
//! A release build of the CLI ingests the Rust documentation into a fresh data directory;
//! then both tools back up that directory (restic: `restic backup DIR`; hybridstore:
//! `backup create`, which reads the same directory's stores) three times: with an empty
//! repository, with nothing changed, and after 1% of the source files were changed and
//! ingested again; then both restore the latest snapshot. Wall time, MB/s (of the data
//! directory's bytes) and repository bytes for each, and the ratios. restic is Debian's
//! package (`apt-get install restic`), run with a password file and its cache under the
//! work directory; hybridstore's repository is encrypted under the same password.

use super::*;

struct Step {
    name: &'static str,
    ours_s: f64,
    restic_s: f64,
}

fn human_bytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

/// Bytes of every regular file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    regular_files(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Every regular file under `dir`, in name order.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn timed(what: &str, mut cmd: Command) -> Result<f64> {
    let _ = Command::new("sync").status();
    let t = Instant::now();
    let status = cmd
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("{what}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed with {status}"));
    }
    let s = t.elapsed().as_secs_f64();
    eprintln!("xtask: {what}: {s:.1} s");
    Ok(s)
}

/// Rewrites about 1% of the files under `root` (every 100th, in name order): a line appended.
fn change_one_percent(root: &Path) -> Result<u64> {
    let files = regular_files(root);
    let mut changed = 0;
    for path in files.iter().step_by(100) {
        let mut bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        bytes.extend_from_slice(b"\n<!-- changed for the backup bench -->\n");
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        changed += 1;
    }
    Ok(changed)
}

pub(crate) fn bench_backup(args: &[String]) -> Result<()> {
    let mut source = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--source" => source = it.next().map(PathBuf::from),
            other => return Err(format!("unknown bench backup argument {other:?}")),
        }
    }
    crate::services::ensure_apt_package("restic", "restic");
    if !on_path("restic") {
        return Err("bench backup needs restic (apt-get install restic)".into());
    }
    let restic_version = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let source = match source {
        Some(s) => s,
        None => crate::demo::rust_docs()?,
    };
    let target = target_dir()?;
    run(cargo(&["build", "--release", "-p", "hybridstore-cli"]))?;
    let bin = target.join("release").join("hybridstore");
    let work = target.join("bench-backup");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    // A copy of the source, so 1% of it can be changed.
    let src = work.join("src");
    run({
        let mut c = Command::new("cp");
        c.arg("-r").arg(&source).arg(&src);
        c
    })?;
    let data = work.join("data");
    let ours_repo = work.join("repo-hybridstore");
    let restic_repo = work.join("repo-restic");
    // Both repositories are encrypted (restic's always are), under the same password.
    let password = work.join("password");
    std::fs::write(&password, "bench-password\n").map_err(|e| e.to_string())?;
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-dir").arg(&data).arg("--quiet").args(args);
        cmd
    };
    let restic = |args: &[&str]| {
        let mut cmd = Command::new("restic");
        cmd.arg("--repo")
            .arg(&restic_repo)
            .arg("--password-file")
            .arg(&password)
            .arg("--cache-dir")
            .arg(work.join("restic-cache"))
            .arg("--quiet")
            .args(args);
        cmd
    };
    let src_s = src.to_string_lossy().into_owned();
    let data_s = data.to_string_lossy().into_owned();
    let ours_s = ours_repo.to_string_lossy().into_owned();
    let password_s = password.to_string_lossy().into_owned();
    timed("ingest", cli(&["ingest", &src_s, "--prefix", "docs/"]))?;
    run(restic(&["init"]))?;
    let data_bytes = dir_bytes(&data);
    let mut steps = Vec::new();
    let mut sizes = Vec::new();
    for (name, change) in [
        ("first backup", false),
        ("unchanged backup", false),
        ("backup after 1% changed", true),
    ] {
        if change {
            let n = change_one_percent(&src)?;
            eprintln!("xtask: changed {n} files");
            timed("re-ingest", cli(&["ingest", &src_s, "--prefix", "docs/"]))?;
        }
        let ours = timed(
            &format!("hybridstore {name}"),
            cli(&[
                "backup",
                "create",
                "--repo",
                &ours_s,
                "--password-file",
                &password_s,
            ]),
        )?;
        let theirs = timed(&format!("restic {name}"), restic(&["backup", &data_s]))?;
        steps.push(Step {
            name,
            ours_s: ours,
            restic_s: theirs,
        });
        sizes.push((name, dir_bytes(&ours_repo), dir_bytes(&restic_repo)));
    }
    let ours_restore = work.join("restore-hybridstore");
    let restic_restore = work.join("restore-restic");
    let ours = timed("hybridstore restore", {
        let mut c = Command::new(&bin);
        c.arg("--quiet").args([
            "backup",
            "restore",
            "latest",
            "--repo",
            &ours_s,
            "--password-file",
            &password_s,
            "--to",
            &ours_restore.to_string_lossy(),
        ]);
        c
    })?;
    let theirs = timed(
        "restic restore",
        restic(&[
            "restore",
            "latest",
            "--target",
            &restic_restore.to_string_lossy(),
        ]),
    )?;
    steps.push(Step {
        name: "restore latest",
        ours_s: ours,
        restic_s: theirs,
    });

    let mb = data_bytes as f64 / 1e6;
    let mut md = format!(
        "# backup: hybridstore vs {restic_version}\n\nThe data directory: {} (the Rust documentation ingested by the release CLI). MB/s = data directory bytes / wall time.\n\n| step | hybridstore | restic | ratio (hybridstore / restic) |\n|---|---|---|---|\n",
        human_bytes(data_bytes)
    );
    let mut json = Vec::new();
    for s in &steps {
        md.push_str(&format!(
            "| {} | {:.2} s ({:.0} MB/s) | {:.2} s ({:.0} MB/s) | {:.2}x |\n",
            s.name,
            s.ours_s,
            mb / s.ours_s,
            s.restic_s,
            mb / s.restic_s,
            s.ours_s / s.restic_s
        ));
        json.push(serde_json::json!({
            "step": s.name, "hybridstore_s": s.ours_s, "restic_s": s.restic_s,
            "ratio": s.ours_s / s.restic_s, "data_bytes": data_bytes,
        }));
    }
    md.push_str("\n| repository after | hybridstore | restic | ratio |\n|---|---|---|---|\n");
    for (name, ours, theirs) in &sizes {
        md.push_str(&format!(
            "| {name} | {} | {} | {:.2}x |\n",
            human_bytes(*ours),
            human_bytes(*theirs),
            *ours as f64 / *theirs as f64
        ));
        json.push(serde_json::json!({
            "repository_after": name, "hybridstore_bytes": ours, "restic_bytes": theirs,
        }));
    }
    let report_dir = target.join("bench-report");
    std::fs::create_dir_all(&report_dir).map_err(|e| e.to_string())?;
    std::fs::write(report_dir.join("backup.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(
        report_dir.join("backup.json"),
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(())
}
