//! Durable file writes: a temporary file written and fsynced, renamed into place, and its
//! directory fsynced (the sequence `rename(2)` needs to survive a power loss:
//! <https://lwn.net/Articles/457667/>).

use super::*;

/// Creates `.tmp.<random>` in `dir`, fills it with `write`, and `sync_all`s it. On any error
/// the temporary file is removed. The one place the temp-file half of the write protocol lives.
pub(crate) fn write_synced_temp(
    dir: &Path,
    write: impl FnOnce(&mut File) -> Result<()>,
) -> Result<PathBuf> {
    let temp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        Ok::<_, Error>(())
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e.with_context("path", temp.display()))
        }
    }
}

/// Writes `name` in `dir` via temp + fsync + rename + fsync(dir).
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let temp = write_synced_temp(dir, |f| Ok(io::Write::write_all(f, bytes)?))?;
    let target = dir.join(name);
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(io_err(e, &target));
    }
    fsync_dir(dir)?;
    Ok(target)
}

pub(crate) fn parent(path: &Path) -> Result<&Path> {
    path.parent()
        .ok_or_else(|| Error::backend(format!("{} has no parent", path.display())))
}

/// Creates the key's directory if needed, making its entry durable. An entry that is there
/// but is not a directory of its own (a symbolic link planted in the data directory, which
/// would carry the write outside it) is refused with `Corrupted`.
pub(crate) fn ensure_dir(objects: &Path, dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(objects),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_real_dir(dir),
        Err(e) => Err(io_err(e, dir)),
    }
}

/// `Ok` if `dir` is a directory itself, not a symbolic link (to one or to anything else)
/// nor another kind of file: what every directory inside the store must be, so no write
/// follows a link out of the data directory.
pub(crate) fn check_real_dir(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(|e| io_err(e, dir))?;
    if meta.file_type().is_dir() {
        return Ok(());
    }
    let what = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else {
        "not a directory"
    };
    Err(Error::corrupted(format!(
        "{} is {what}: the store's directories must be its own (remove it; a link could carry          writes out of the data directory)",
        dir.display()
    )))
}
