//! The DuckDB library the analytics crate links, fetched from the npm registry and checked
//! against a pinned SHA-512 on first use.

use super::*;

/// The DuckDB release hybridstore-analytics links: the official `libduckdb.so` 1.5.6 for
/// linux-x64, as DuckDB publishes it in the npm registry (`@duckdb/node-bindings-linux-x64`),
/// pinned by the SHA-512 of the package. Linking it (duckdb-rs's `DUCKDB_LIB_DIR`) instead of
/// compiling the bundled C++ spares about 50 minutes per build profile on two cores.
const DUCKDB_NPM_PACKAGE: &str = "@duckdb/node-bindings-linux-x64@1.5.6-r.1";
const DUCKDB_NPM_TARBALL: &str = "https://registry.npmjs.org/@duckdb/node-bindings-linux-x64/-/node-bindings-linux-x64-1.5.6-r.1.tgz";
const DUCKDB_NPM_SHA512: &str = "21772b64913a904a8cd19e30c1d5671811d7fdface4b7dd53cd0300d743f43e16cf386f4e7c41ef78721ac208870d2651bc6375072145387817824315b998dd5";

/// The directory holding `libduckdb.so`: `DUCKDB_LIB_DIR` if set and holding it, else
/// `<target>/duckdb/1.5.6-r.1`, fetched and verified on first use. `None` (said on stderr)
/// when it cannot be had; builds then fail to link unless duckdb's `bundled` feature is on.
pub(crate) fn duckdb_lib_dir() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
            let dir = PathBuf::from(dir);
            if dir.join("libduckdb.so").is_file() {
                return Some(dir);
            }
            // A variable naming no library (a stale shell setting) would fail every link
            // after the whole build: fetch the pinned one instead, as for PROTOC.
            eprintln!(
                "xtask: DUCKDB_LIB_DIR={} holds no libduckdb.so; using the pinned one",
                dir.display()
            );
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
pub(crate) fn library_path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_default()
}
