//! The `hybridstore` binary as a user runs it: outputs, JSON and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn hybridstore(data: &Path, args: &[&str]) -> Output {
    run_with_stdin(data, args, None)
}

fn run_with_stdin(data: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("HYBRIDSTORE_DATA_DIR")
        .env_remove("HYBRIDSTORE_CONFIG")
        .env_remove("HYBRIDSTORE_BACKUP_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hybridstore");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn put_get_head_ls_rm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = run_with_stdin(&data, &["put", "notes/a.txt"], Some(b"alpha\n"));
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = hybridstore(&data, &["get", "notes/a.txt"]);
    assert_eq!((code(&o), o.stdout.as_slice()), (0, &b"alpha\n"[..]));

    let src = dir.path().join("page.html");
    std::fs::write(&src, b"<p>x</p>").unwrap();
    assert_eq!(
        code(&hybridstore(
            &data,
            &["put", "notes/page", src.to_str().unwrap()]
        )),
        0
    );
    let head: serde_json::Value =
        serde_json::from_slice(&hybridstore(&data, &["--json", "head", "notes/page"]).stdout)
            .unwrap();
    assert_eq!(head["size"], 8);
    assert_eq!(head["content_type"], "text/html");
    assert_eq!(head["sha256"].as_str().unwrap().len(), 64);

    assert_eq!(
        stdout(&hybridstore(&data, &["ls", "notes/"])),
        "notes/a.txt\nnotes/page\n"
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&hybridstore(&data, &["--json", "ls", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    assert_eq!(code(&hybridstore(&data, &["rm", "notes/a.txt"])), 0);
    let o = hybridstore(&data, &["get", "notes/a.txt"]);
    assert_eq!(code(&o), 3, "missing key is exit code 3");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no key notes/a.txt"));
    assert_eq!(code(&hybridstore(&data, &["rm", "notes/a.txt"])), 3);
}

#[test]
fn binary_keys_round_trip_through_hex() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(
        code(&run_with_stdin(&data, &["put", "hex:00ff"], Some(b"bin"))),
        0
    );
    assert_eq!(stdout(&hybridstore(&data, &["ls"])), "hex:00ff\n");
    assert_eq!(hybridstore(&data, &["get", "hex:00ff"]).stdout, b"bin");
    assert_eq!(
        code(&hybridstore(&data, &["get", "hex:zz"])),
        2,
        "bad hex is invalid input"
    );
    assert_eq!(
        code(&hybridstore(&data, &["get", ""])),
        2,
        "empty key is invalid input"
    );
}

#[test]
fn ingest_export_verify_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out, data) = (
        dir.path().join("src"),
        dir.path().join("out"),
        dir.path().join("data"),
    );
    // a.html is large enough to be a chunk in a pack; the others stay inline.
    let a_html = "<p>A</p>".repeat(1000);
    for (rel, body) in [
        ("a.html", a_html.as_str()),
        ("sub/b.css", "B"),
        ("sub/deeper/c.js", "C"),
    ] {
        std::fs::create_dir_all(src.join(rel).parent().unwrap()).unwrap();
        std::fs::write(src.join(rel), body).unwrap();
    }
    let o = hybridstore(&data, &["--json", "ingest", src.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (report["files"].as_u64(), report["bytes"].as_u64()),
        (Some(3), Some(8002))
    );

    assert_eq!(
        code(&hybridstore(&data, &["export", out.to_str().unwrap()])),
        0
    );
    assert_eq!(std::fs::read(out.join("sub/deeper/c.js")).unwrap(), b"C");
    let o = hybridstore(&data, &["verify"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("verified 3 keys"), "{}", stdout(&o));

    // Damage a.html's chunk: the one pack file ends with a.html's blob, the 48-byte index
    // entry and the 12-byte footer (see hybridstore-dedup's `pack` module).
    let packs: Vec<_> = walk_files(&data.join("chunks/objects"));
    assert_eq!(packs.len(), 1, "one pack expected: {packs:?}");
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let last_blob_byte = bytes.len() - 12 - 48 - 1;
    bytes[last_blob_byte] ^= 1;
    std::fs::write(&packs[0], bytes).unwrap();
    let o = hybridstore(&data, &["verify"]);
    assert_eq!(code(&o), 4, "damage is exit code 4");
    assert!(stdout(&o).contains("DAMAGED a.html"), "{}", stdout(&o));
    assert_eq!(code(&hybridstore(&data, &["get", "a.html"])), 4);

    let o = hybridstore(
        &data,
        &["ingest", dir.path().join("nope").to_str().unwrap()],
    );
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a directory"));
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_busy_data_directory_is_exit_code_5() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _held = rt
        .block_on(hybridstore::HybridStorageSystem::open(
            hybridstore::StorageConfig::with_data_dir(&data),
        ))
        .unwrap();
    let o = hybridstore(&data, &["ls"]);
    assert_eq!(code(&o), 5);
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another process"));
}

#[test]
fn configuration_from_environment_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let o = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .args(["--json", "init"])
        .env("HYBRIDSTORE_DATA_DIR", &data)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // The default embedded stack: SQLite for keys and manifests, a FileStore for chunk packs.
    assert!(data.join("kv.db").exists());
    assert!(data.join("chunks/FORMAT").exists());

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "io_concurrency = \"many\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--config")
        .arg(&config)
        .arg("stats")
        .env_remove("HYBRIDSTORE_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid configuration"));
}

/// `analytics report | sql | export` read the analytics database while another process has
/// the data directory open and keeps recording events.
#[test]
fn analytics_commands_work_while_another_process_holds_the_store() {
    use hybridstore::core::{Key, KvStore};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let system = rt
        .block_on(hybridstore::HybridStorageSystem::open(
            hybridstore::StorageConfig::with_data_dir(&data),
        ))
        .unwrap();
    rt.block_on(async {
        let hot = Key::new("docs/hot.html").unwrap();
        system.kv().put(&hot, "<p>hot</p>".into()).await.unwrap();
        for _ in 0..30 {
            system.kv().get(&hot).await.unwrap();
        }
        system
            .kv()
            .get(&Key::new("docs/cold").unwrap())
            .await
            .unwrap();
    });
    system.analytics().unwrap().flush().unwrap();

    let o = hybridstore(&data, &["--json", "analytics", "report"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["hot_keys"][0]["key"], "docs/hot.html");
    assert_eq!(report["hot_keys"][0]["reads"], 30);
    assert_eq!(report["cache"]["l1_hits"], 29, "{}", report["cache"]);
    assert!(
        report["latency"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["operation"] == "get")
    );

    let o = hybridstore(&data, &["analytics", "report"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    assert!(
        text.contains("Hot keys") && text.contains("docs/hot.html"),
        "{text}"
    );
    assert!(text.contains("p99"), "{text}");

    let o = hybridstore(
        &data,
        &[
            "--json",
            "analytics",
            "sql",
            "SELECT count(*) AS n FROM access_events WHERE operation = 'get'",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["n"], 31);

    let o = hybridstore(&data, &["analytics", "sql", "DELETE FROM access_events"]);
    assert_eq!(code(&o), 2, "writes are refused");
    assert!(String::from_utf8_lossy(&o.stderr).contains("read-only"));

    let out = dir.path().join("events.parquet");
    let o = hybridstore(
        &data,
        &[
            "analytics",
            "export",
            "access_events",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("rows"), "{}", stdout(&o));
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    let o = hybridstore(
        &data,
        &[
            "analytics",
            "export",
            "no_such_table",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2);
    drop(system);
}

#[test]
fn analytics_without_a_database_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let o = hybridstore(&dir.path().join("none"), &["analytics", "report"]);
    assert_eq!(code(&o), 3);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no analytics database"));
}

#[test]
fn search_finds_ingested_passages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("ownership.md"),
        "# Ownership\n\nEach value has an owner; the borrow checker enforces the rules.\n",
    )
    .unwrap();
    std::fs::write(src.join("other.txt"), "Nothing about that here.\n").unwrap();
    assert_eq!(
        code(&hybridstore(&data, &["ingest", src.to_str().unwrap()])),
        0
    );
    let o = hybridstore(&data, &["search", "borrow checker"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("ownership.md"), "{}", stdout(&o));
    let o = hybridstore(&data, &["--json", "search", "owner", "-n", "1"]);
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["key"], "ownership.md");
    let o = hybridstore(&data, &["search", "zebra"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("no passages match"));
}

fn write_npy(path: &Path, rows: u64, dimension: u64, values: &[f32]) {
    use npyz::WriterBuilder;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[rows, dimension])
        .writer(file)
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
}

#[test]
fn vectors_import_list_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 50 vectors of 4 dimensions, each pointing a different way: row i is (i+1, 1, -i, 2).
    let values: Vec<f32> = (0..50u16)
        .flat_map(|i| [f32::from(i) + 1.0, 1.0, -f32::from(i), 2.0])
        .collect();
    let file = dir.path().join("emb.npy");
    write_npy(&file, 50, 4, &values);

    let o = hybridstore(
        &data,
        &[
            "--json",
            "vectors",
            "import",
            file.to_str().unwrap(),
            "-c",
            "emb",
            "--row-ids",
            "e",
            "--distance",
            "l2",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&report["rows"], &report["dimension"], &report["created"]),
        (&50.into(), &4.into(), &true.into())
    );

    let o = hybridstore(&data, &["--json", "vectors", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let emb = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["spec"]["name"] == "emb")
        .expect("emb listed");
    assert_eq!(
        (&emb["rows"], &emb["spec"]["distance"]),
        (&50.into(), &"l2".into())
    );
    let o = hybridstore(&data, &["vectors", "list"]);
    assert!(stdout(&o).contains("emb"), "{}", stdout(&o));

    // The nearest to e17 is e17, then its neighbours e16 and e18 (equally far).
    let o = hybridstore(
        &data,
        &[
            "--json", "vectors", "query", "emb", "--like", "e17", "-n", "3", "--exact",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "e17");
    let mut rest = ids[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, ["e16", "e18"]);

    // An explicit vector; a wrong dimension is invalid input; an unknown id is not found.
    let o = hybridstore(
        &data,
        &[
            "--json",
            "vectors",
            "query",
            "emb",
            "--vector",
            "[1, 1, 0, 2]",
            "-n",
            "1",
        ],
    );
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hits[0]["id"], "e0");
    let o = hybridstore(&data, &["vectors", "query", "emb", "--vector", "[1, 2]"]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    let o = hybridstore(&data, &["vectors", "query", "emb", "--like", "nope"]);
    assert_eq!(code(&o), 3);

    // Not a vector file: invalid input, and no collection made.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,vector\n").unwrap();
    let o = hybridstore(
        &data,
        &["vectors", "import", bad.to_str().unwrap(), "-c", "bad"],
    );
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a Parquet"));
}

/// Regression (issue 15, defect 8): a reader that closes the pipe early made `get` exit 5
/// ("data directory in use") and a missing input file made `put` exit 3 ("key not found").
/// Now the first ends quietly with 0, as `cat` does, and the second is invalid input, 2.
#[test]
fn exit_codes_mean_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let big = vec![b'x'; 4 << 20];
    let o = run_with_stdin(&data, &["put", "big"], Some(&big));
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));

    // `hybridstore get big | head -c1`: the reader goes away after one byte.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--data-dir")
        .arg(&data)
        .args(["get", "big"])
        .env_remove("HYBRIDSTORE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        code(&o),
        0,
        "a closed output pipe is not a failure: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let missing = dir.path().join("no-such-file");
    let o = hybridstore(&data, &["put", "k", missing.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-file"));

    // A missing key is still 3, and a missing configuration file is 2.
    assert_eq!(code(&hybridstore(&data, &["get", "absent"])), 3);
    let o = hybridstore(&data, &["--config", missing.to_str().unwrap(), "ls"]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
}

/// Regression (issue 15, defect 3): the CLI's own `HYBRIDSTORE_CONFIG` was read as a
/// configuration field, so every command exited 2.
#[test]
fn hybridstore_config_names_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("store.toml");
    std::fs::write(&file, "io_concurrency = 3\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--data-dir")
        .arg(&data)
        .args(["ls"])
        .env("HYBRIDSTORE_CONFIG", &file)
        .env(
            "HYBRIDSTORE_TEST_POSTGRES_URL",
            "postgres://x@127.0.0.1:1/y",
        )
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--data-dir")
        .arg(&data)
        .args(["ls"])
        .env("HYBRIDSTORE_IO_CONCURENCY", "3")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("HYBRIDSTORE_IO_CONCURENCY"));
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(code(o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Two data directories synced through a remote directory with the `sync` commands.
#[test]
fn sync_push_pull_status_dry_run_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let remote = dir.path().join("remote");
    let remote = remote.to_str().unwrap();
    for (k, v) in [
        ("notes/one.md", "# one"),
        ("notes/two.md", "# two"),
        ("bin", "\u{1}\u{2}"),
    ] {
        let o = run_with_stdin(&a, &["put", k], Some(v.as_bytes()));
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    }
    let pushed = json(&hybridstore(
        &a,
        &["--json", "sync", "push", "--remote", remote],
    ));
    assert_eq!(pushed["uploaded"], 3);
    assert_eq!(pushed["segments_sent"], 1);

    let status = json(&hybridstore(
        &b,
        &["--json", "sync", "status", "--remote", remote],
    ));
    assert_eq!(status["pending_downloads"], 3);
    let pulled = json(&hybridstore(
        &b,
        &["--json", "sync", "pull", "--remote", remote],
    ));
    assert_eq!(pulled["downloaded"], 3);
    assert_eq!(stdout(&hybridstore(&b, &["get", "notes/two.md"])), "# two");
    let human = hybridstore(&b, &["sync", "both", "--remote", remote]);
    assert_eq!(code(&human), 0);
    assert!(stdout(&human).contains("0 uploaded"), "{}", stdout(&human));

    assert_eq!(code(&hybridstore(&a, &["rm", "notes/one.md"])), 0);
    json(&hybridstore(
        &a,
        &["--json", "sync", "push", "--remote", remote],
    ));
    // A dry run reports the deletion and keeps the key.
    let dry = json(&hybridstore(
        &b,
        &["--json", "sync", "pull", "--dry-run", "--remote", remote],
    ));
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["deleted_local"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(code(&hybridstore(&b, &["get", "notes/one.md"])), 0);
    let pulled = json(&hybridstore(
        &b,
        &["--json", "sync", "pull", "--remote", remote],
    ));
    assert_eq!(pulled["deleted_local"], 1);
    assert_eq!(code(&hybridstore(&b, &["get", "notes/one.md"])), 3);

    // Bad input is exit code 2: an unknown policy, no remote at all.
    let bad = hybridstore(
        &b,
        &["sync", "both", "--policy", "older", "--remote", remote],
    );
    assert_eq!(code(&bad), 2);
    let none = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--data-dir")
        .arg(&b)
        .args(["sync", "push"])
        .env_remove("S3_BUCKET")
        .env_remove("S3_BACKUP_BUCKET")
        .output()
        .unwrap();
    assert_eq!(code(&none), 2, "{}", String::from_utf8_lossy(&none.stderr));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--remote"));
}

/// In "local primary + S3 backup" mode the CLI is a command, not a long-running process: it
/// never pulls at startup nor pushes in the background, so `put` and `get` work with the
/// backup remote unreachable; `sync push`, asked for, reaches for it and fails as
/// unavailable (exit code 1), naming the remote.
#[test]
fn backup_mode_commands_stay_local_until_sync_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nothing listens on port 1 of the loopback: any S3 request is refused at once.
    let with_backup = |args: &[&str], stdin: Option<&[u8]>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env_remove("HYBRIDSTORE_CONFIG")
            .env("S3_BACKUP_ENABLED", "true")
            .env("S3_BACKUP_BUCKET", "backups")
            .env("SYNC_ON_STARTUP", "true")
            .env("S3_ENDPOINT", "http://127.0.0.1:1")
            .env("S3_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "hybridstore")
            .env("AWS_SECRET_ACCESS_KEY", "hybridstore")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or_default()).unwrap();
        drop(pipe);
        child.wait_with_output().unwrap()
    };
    let o = with_backup(&["put", "notes/a.md"], Some(b"# a"));
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = with_backup(&["get", "notes/a.md"], None);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "# a");
    let o = with_backup(&["sync", "push"], None);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("s3://backups/hybridstore-backup"),
        "{stderr}"
    );
}

fn hybridstore_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("HYBRIDSTORE_DATA_DIR")
        .env_remove("HYBRIDSTORE_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run hybridstore")
}

/// Bytes that neither dedup nor compression can shorten: a xorshift sequence.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A large value damaged in its middle, in both stacks that stream it (dedup packs; a plain
/// file store): `get -o` exits 4 (corrupted), leaves the target as it was and no partial
/// file beside it, and `get` to standard output exits 4 too, whatever it wrote before.
#[test]
fn get_o_of_a_value_damaged_in_its_middle_exits_4_and_leaves_no_file() {
    for (stack, env) in [
        ("dedup", &[][..]),
        (
            "file",
            &[
                ("HYBRIDSTORE_PRIMARY", "file"),
                ("HYBRIDSTORE_DEDUP", "false"),
            ][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let src = dir.path().join("big.bin");
        std::fs::write(&src, incompressible(8 << 20, 11)).unwrap();
        let o = hybridstore_env(&data, &["put", "big", src.to_str().unwrap()], env);
        assert_eq!(
            code(&o),
            0,
            "{stack}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let files = walk_files(&data)
            .into_iter()
            .filter(|p| std::fs::metadata(p).unwrap().len() > 4 << 20)
            .collect::<Vec<_>>();
        assert_eq!(
            files.len(),
            1,
            "{stack}: one file holds the value: {files:?}"
        );
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&files[0], bytes).unwrap();

        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let target = out_dir.join("big.bin");
        std::fs::write(&target, b"the previous file").unwrap();
        let o = hybridstore_env(&data, &["get", "big", "-o", target.to_str().unwrap()], env);
        assert_eq!(
            code(&o),
            4,
            "{stack}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"the previous file",
            "{stack}"
        );
        assert_eq!(
            walk_files(&out_dir),
            vec![target.clone()],
            "{stack}: a partial file was left"
        );
        let o = hybridstore_env(&data, &["get", "big"], env);
        assert_eq!(code(&o), 4, "{stack}: get to stdout");
        assert!(o.stdout.len() < 8 << 20, "{stack}: every byte went out");
    }
}

/// Files from 16 MiB on are streamed by ingest and export: a 20 MiB file comes back
/// byte for byte beside small ones, and verify reads it as a stream.
#[test]
fn ingest_and_export_stream_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out, data) = (
        dir.path().join("src"),
        dir.path().join("out"),
        dir.path().join("data"),
    );
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let big = incompressible(20 << 20, 12);
    std::fs::write(src.join("sub/big.bin"), &big).unwrap();
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    let o = hybridstore(&data, &["--json", "ingest", src.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["bytes"].as_u64(), Some(big.len() as u64 + 5));
    let o = hybridstore(&data, &["export", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(out.join("sub/big.bin")).unwrap() == big);
    assert_eq!(std::fs::read(out.join("small.txt")).unwrap(), b"small");
    assert_eq!(walk_files(&out).len(), 2, "no partial files");
    let o = hybridstore(&data, &["verify"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("verified 2 keys"), "{}", stdout(&o));
}

/// `backup`: create, list, diff, verify, restore and forget + prune, with the exit codes a
/// script relies on.
/// `health` prints each engine and exits by the system's status: 0 ok; with a Redis tier
/// that does not answer, 6 (degraded: keys are still served).
#[test]
fn health_reports_each_engine_and_exits_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = hybridstore(&data, &["--json", "health"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    let engines: Vec<&str> = report["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["engine"].as_str().unwrap())
        .collect();
    assert!(
        engines.contains(&"sqlite") && engines.contains(&"disk"),
        "{engines:?}"
    );

    let dead = hybridstore_core::services::PortLease::new();
    let o = Command::new(env!("CARGO_BIN_EXE_hybridstore"))
        .args(["--data-dir", data.to_str().unwrap(), "health"])
        .env_remove("HYBRIDSTORE_CONFIG")
        .env(
            "HYBRIDSTORE_REDIS_URL",
            format!("redis://127.0.0.1:{}", dead.port()),
        )
        .output()
        .unwrap();
    assert_eq!(
        code(&o),
        6,
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout(&o).contains("redis") && stdout(&o).contains("down"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("system         degraded"),
        "{}",
        stdout(&o)
    );
}

/// An encrypted repository: created under `--password-file`, refused without its password
/// or with a wrong one (exit code 2), opened by `HYBRIDSTORE_BACKUP_PASSWORD` too.
#[test]
fn encrypted_backup_repositories_open_only_with_their_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    let repo_s = repo.to_str().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2-but-longer\n").unwrap();
    let pw_s = pw.to_str().unwrap();
    let o = run_with_stdin(
        &data,
        &["put", "secret/note"],
        Some(b"the plaintext marker"),
    );
    assert_eq!(code(&o), 0);
    let o = hybridstore(
        &data,
        &["backup", "init", "--repo", repo_s, "--password-file", pw_s],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("(encrypted)"), "{}", stdout(&o));
    let o = hybridstore(
        &data,
        &[
            "backup",
            "create",
            "--repo",
            repo_s,
            "--password-file",
            pw_s,
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    for file in walk_files(&repo) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(20).any(|w| w == b"the plaintext marker"),
            "plaintext in {}",
            file.display()
        );
    }

    let o = hybridstore(&data, &["backup", "list", "--repo", repo_s]);
    assert_eq!(
        code(&o),
        2,
        "no password: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("password"));
    let list = |password: &str| {
        Command::new(env!("CARGO_BIN_EXE_hybridstore"))
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--json",
                "backup",
                "list",
            ])
            .args(["--repo", repo_s])
            .env_remove("HYBRIDSTORE_CONFIG")
            .env("HYBRIDSTORE_BACKUP_PASSWORD", password)
            .output()
            .unwrap()
    };
    let o = list("wrong");
    assert_eq!(
        code(&o),
        2,
        "a wrong password: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = list("hunter2-but-longer");
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let snapshots: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 1);

    let restored = dir.path().join("restored");
    let o = hybridstore(
        &data,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo_s,
            "--password-file",
            pw_s,
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = hybridstore(&restored, &["get", "secret/note"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "the plaintext marker"));
}

#[test]
fn backup_create_list_verify_restore_forget_prune() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    let repo_s = repo.to_str().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.md"), "# A\n\nThe first page.").unwrap();
    std::fs::write(src.join("b.txt"), vec![b'x'; 100_000]).unwrap();
    assert_eq!(
        code(&hybridstore(
            &data,
            &["ingest", src.to_str().unwrap(), "--prefix", "s/"]
        )),
        0
    );

    let o = hybridstore(&data, &["backup", "init", "--repo", repo_s]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let again = hybridstore(&data, &["backup", "init", "--repo", repo_s]);
    assert_ne!(code(&again), 0, "a second init is refused");

    let o = hybridstore(
        &data,
        &[
            "--json", "backup", "create", "--repo", repo_s, "--tag", "first",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["snapshot"]["summary"]["keys"], 2);

    let o = run_with_stdin(&data, &["put", "s/c.txt"], Some(b"added"));
    assert_eq!(code(&o), 0);
    let o = hybridstore(&data, &["--json", "backup", "create", "--repo", repo_s]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let second_id = second["id"].as_str().unwrap().to_string();

    let o = hybridstore(&data, &["--json", "backup", "list", "--repo", repo_s]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["id"], first_id.as_str(), "oldest first");

    let o = hybridstore(
        &data,
        &[
            "backup",
            "diff",
            &first_id[..8],
            &second_id[..8],
            "--repo",
            repo_s,
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("+ s/c.txt"), "{}", stdout(&o));

    let o = hybridstore(
        &data,
        &["backup", "verify", "--repo", repo_s, "--read-data"],
    );
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );

    // Restore the first snapshot and read a key back from it.
    let restored = dir.path().join("restored");
    let o = hybridstore(
        &data,
        &[
            "backup",
            "restore",
            &first_id[..8],
            "--repo",
            repo_s,
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = hybridstore(&restored, &["get", "s/a.md"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "# A\n\nThe first page.")
    );
    assert_eq!(
        code(&hybridstore(&restored, &["get", "s/c.txt"])),
        3,
        "not in the first snapshot"
    );
    // Into a directory that is not empty: invalid input, exit code 2.
    let o = hybridstore(
        &data,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo_s,
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    // An empty policy is refused (exit code 2).
    let o = hybridstore(&data, &["backup", "forget", "--repo", repo_s]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));

    let o = hybridstore(
        &data,
        &[
            "--json",
            "backup",
            "forget",
            "--repo",
            repo_s,
            "--keep-last",
            "1",
            "--prune",
            "--grace",
            "0s",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["forget"]["removed"], 1);
    let o = hybridstore(&data, &["--json", "backup", "list", "--repo", repo_s]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["id"], second_id.as_str());
    let o = hybridstore(
        &data,
        &[
            "backup",
            "verify",
            "--repo",
            repo_s,
            "--read-data-subset",
            "50%",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));

    // A damaged snapshot record: verify exits 4 and names it.
    let snapshots = repo.join("objects");
    let mut damaged = false;
    for entry in walk_files(&snapshots) {
        let bytes = std::fs::read(&entry).unwrap();
        if let Some(at) = bytes.windows(8).position(|w| w == b"\"host\": ") {
            let mut bytes = bytes;
            bytes[at + 10] ^= 0x20;
            std::fs::write(&entry, bytes).unwrap();
            damaged = true;
        }
    }
    assert!(damaged, "found the snapshot record");
    let o = hybridstore(&data, &["backup", "verify", "--repo", repo_s]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(stdout(&o).contains(&second_id[..12]), "{}", stdout(&o));
}

/// `config show` prints every setting with its source, hides URL passwords, opens nothing,
/// and `--json` gives the same as data.
#[test]
fn config_show_prints_each_value_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("store.toml");
    std::fs::write(&file, "io_concurrency = 3\n").unwrap();
    let o = hybridstore_env(
        &data,
        &["--config", file.to_str().unwrap(), "config", "show"],
        &[
            ("HYBRIDSTORE_REDIS_URL", "redis://:hunter2@127.0.0.1:1/"),
            ("LANCEDB_URI", "/srv/lance"),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(!text.contains("hunter2"), "a password leaked: {text}");
    let line = |field: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .unwrap_or_else(|| panic!("no line for {field}: {text}"))
            .to_string()
    };
    assert!(
        line("io_concurrency").contains(&format!("file {}", file.display())),
        "{text}"
    );
    assert!(
        line("redis_url").contains("environment variable HYBRIDSTORE_REDIS_URL"),
        "{text}"
    );
    assert!(
        line("redis_url").contains("redis://:***@127.0.0.1:1/"),
        "{text}"
    );
    assert!(
        line("lancedb_uri").contains("environment variable LANCEDB_URI"),
        "{text}"
    );
    assert!(line("data_dir").contains("flag --data-dir"), "{text}");
    assert!(line("dedup").ends_with("default"), "{text}");
    assert!(!data.exists(), "config show opened the data directory");

    let o = hybridstore_env(&data, &["--json", "config", "show"], &[]);
    let shown = json(&o);
    assert_eq!(shown["mode"], "local", "{shown}");
    let dedup = shown["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "dedup")
        .unwrap();
    assert_eq!(dedup["value"], "true");
    assert_eq!(dedup["source"]["kind"], "default");
}

/// `migrate` copies a FileStore data directory into a new SQLite one with every key's
/// metadata, verified; `--dry-run` writes nothing; a second run copies nothing.
#[test]
fn migrate_copies_a_data_directory_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("files"), dir.path().join("sqlite"));
    let file_primary = [("HYBRIDSTORE_PRIMARY", "file")];
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("book")).unwrap();
    std::fs::write(src.join("book/a.html"), "<p>a</p>".repeat(100)).unwrap();
    std::fs::write(src.join("b.txt"), incompressible(3 << 20, 9)).unwrap();
    let o = hybridstore_env(&from, &["ingest", src.to_str().unwrap()], &file_primary);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let (f, t) = (from.to_str().unwrap(), to.to_str().unwrap());

    let dry = json(&hybridstore_env(
        &from,
        &["--json", "migrate", "--from", f, "--to", t, "--dry-run"],
        &[],
    ));
    assert_eq!(dry["report"]["to_copy"], 2, "{dry}");
    assert_eq!(dry["report"]["copied"], 0, "{dry}");

    let done = json(&hybridstore_env(
        &from,
        &["--json", "migrate", "--from", f, "--to", t],
        &[],
    ));
    assert_eq!(done["report"]["copied"], 2, "{done}");
    assert!(done["from"].as_str().unwrap().contains("file"), "{done}");
    assert!(done["to"].as_str().unwrap().contains("sqlite"), "{done}");
    let o = hybridstore(&to, &["get", "b.txt"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stdout == incompressible(3 << 20, 9),
        "b.txt differs after the migration"
    );
    let head_from = json(&hybridstore_env(
        &from,
        &["--json", "head", "book/a.html"],
        &file_primary,
    ));
    let head_to = json(&hybridstore(&to, &["--json", "head", "book/a.html"]));
    assert_eq!(head_from, head_to, "metadata differs after the migration");

    let again = json(&hybridstore_env(
        &from,
        &["--json", "migrate", "--from", f, "--to", t],
        &[],
    ));
    assert_eq!(again["report"]["already_migrated"], 2, "{again}");
    assert_eq!(again["report"]["copied"], 0, "{again}");

    let o = hybridstore_env(&from, &["migrate", "--from", f, "--to", "ftp://x/y"], &[]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
}

/// `--tenant` scopes the key commands to a tenant's namespace and quota; `tenants` lists,
/// reports usage, sets quotas and deletes across every engine (exit 3 for a tenant that was
/// never registered).
#[test]
fn tenants_scope_the_key_commands_and_are_listed_quotaed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = hybridstore(&data, &["tenants", "quota", "acme", "--max-bytes", "10"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_with_stdin(&data, &["--tenant", "acme", "put", "plan"], Some(b"acme's"));
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_with_stdin(
        &data,
        &["--tenant", "globex", "put", "plan"],
        Some(b"globex's plan"),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // Over acme's quota of 10 bytes: refused, and nothing changed.
    let o = run_with_stdin(&data, &["--tenant", "acme", "put", "more"], Some(b"12345"));
    assert_eq!(code(&o), 1, "QuotaExceeded is a failure: {}", stdout(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("quota"),
        "{o:?}"
    );
    assert_eq!(
        stdout(&hybridstore(&data, &["--tenant", "acme", "get", "plan"])),
        "acme's"
    );
    assert_eq!(
        stdout(&hybridstore(&data, &["--tenant", "globex", "get", "plan"])),
        "globex's plan"
    );
    assert_eq!(
        code(&hybridstore(&data, &["get", "plan"])),
        3,
        "the system's own keys are apart"
    );
    assert_eq!(
        stdout(&hybridstore(&data, &["--tenant", "acme", "ls"])).trim(),
        "plan"
    );

    let list = json(&hybridstore(&data, &["--json", "tenants", "list"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    assert_eq!(list[0]["quota"]["max_bytes"], 10);
    let usage = json(&hybridstore(&data, &["--json", "tenants", "usage", "acme"]));
    assert_eq!(
        (usage["keys"].as_u64(), usage["bytes"].as_u64()),
        (Some(1), Some(6)),
        "{usage}"
    );

    let deleted = json(&hybridstore(
        &data,
        &["--json", "tenants", "delete", "acme"],
    ));
    assert_eq!(deleted["keys"], 1, "{deleted}");
    assert_eq!(
        code(&hybridstore(&data, &["--tenant", "acme", "get", "plan"])),
        3
    );
    assert_eq!(
        stdout(&hybridstore(&data, &["--tenant", "globex", "get", "plan"])),
        "globex's plan"
    );
    assert_eq!(
        code(&hybridstore(&data, &["tenants", "delete", "never"])),
        3
    );
    assert_eq!(
        code(&hybridstore(&data, &["--tenant", "no/slash", "ls"])),
        2
    );
}

/// Hostile keys through the CLI: every hostile key of the conformance suite that can be a
/// UTF-8 file name (no `/`, no NUL, not `.` or `..`) is ingested from a file of that name at
/// the top and under three directories (over 500 keys) and exported back byte for byte;
/// names that are not UTF-8 are refused by `ingest` (exit code 4, each named) and stored
/// nowhere; keys that are not safe relative paths
/// (traversal, absolute, NUL), put as `hex:`, are refused by `export` (exit code 4) and
/// written nowhere; a canary beside the directories is unchanged.
#[test]
fn hostile_keys_through_the_cli_never_leave_their_directories() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let (data, src, out) = (
        dir.path().join("data"),
        dir.path().join("src"),
        dir.path().join("out"),
    );
    std::fs::create_dir(&src).unwrap();
    std::fs::write(dir.path().join("canary"), b"untouched").unwrap();
    let names: Vec<Vec<u8>> = hybridstore_core::conformance::hostile_keys(255)
        .into_iter()
        .filter(|k| !k.contains(&b'/') && !k.contains(&0) && k != b"." && k != b"..")
        .collect();
    let (names, not_utf8): (Vec<Vec<u8>>, Vec<Vec<u8>>) = names
        .into_iter()
        .partition(|n| std::str::from_utf8(n).is_ok());
    assert!(!not_utf8.is_empty());
    let parents = ["", "sub", "nested dir", "deep/er"];
    assert!(
        names.len() * parents.len() >= 500,
        "{} file names",
        names.len()
    );
    for parent in parents {
        std::fs::create_dir_all(src.join(parent)).unwrap();
        for (i, name) in names.iter().enumerate() {
            let path = src.join(parent).join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(path, format!("{parent}{i}")).unwrap();
        }
    }
    for name in &not_utf8 {
        std::fs::write(src.join(std::ffi::OsStr::from_bytes(name)), b"refused").unwrap();
    }
    let o = hybridstore(&data, &["--quiet", "ingest", src.to_str().unwrap()]);
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    let refused = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains("not valid UTF-8"))
        .count();
    assert_eq!(
        refused,
        not_utf8.len(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let traversal = [
        "../../escaped",
        "/etc/hybridstore-escaped",
        "a/../../escaped",
        "x\0y",
    ];
    for t in traversal {
        let hex = format!(
            "hex:{}",
            t.bytes().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let o = run_with_stdin(&data, &["put", &hex], Some(b"should stay inside"));
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = hybridstore(&data, &["--quiet", "export", out.to_str().unwrap()]);
    assert_eq!(
        code(&o),
        4,
        "the unsafe keys are refused: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for parent in parents {
        for (i, name) in names.iter().enumerate() {
            let path = out.join(parent).join(std::ffi::OsStr::from_bytes(name));
            let exported = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{:?} not exported: {e}", String::from_utf8_lossy(name))
            });
            assert_eq!(exported, format!("{parent}{i}").into_bytes());
        }
    }
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        names.len() + 3,
        "nothing else in out/ (the names, sub/, nested dir/ and deep/)"
    );
    assert_eq!(
        std::fs::read(dir.path().join("canary")).unwrap(),
        b"untouched"
    );
    let top: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        top,
        ["canary", "data", "out", "src"],
        "nothing written beside them"
    );
    assert!(!std::path::Path::new("/etc/hybridstore-escaped").exists());
}
