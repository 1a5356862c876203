//! Recovery at open: temporary files of interrupted writes removed, committed journal
//! entries of interrupted batches applied.

use super::*;

/// Completes committed batches and removes temporary files left by a crash.
pub(crate) fn recover(objects: &Path, journal_dir: &Path) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let mut journals = Vec::new();
    for entry in fs::read_dir(journal_dir).map_err(|e| io_err(e, journal_dir))? {
        let entry = entry.map_err(|e| io_err(e, journal_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            remove_temp(&entry.path(), &mut report)?;
        } else if name.ends_with(".batch") {
            journals.push(entry.path());
        }
    }
    journals.sort();
    for path in &journals {
        let bytes = fs::read(path).map_err(|e| io_err(e, path))?;
        let entries =
            journal::decode(&bytes).map_err(|e| e.with_context("path", path.display()))?;
        apply_journal(objects, &entries)?;
        fs::remove_file(path).map_err(|e| io_err(e, path))?;
        report.replayed_batches += 1;
    }
    if !journals.is_empty() {
        fsync_dir(journal_dir)?;
    }
    for entry in fs::read_dir(objects).map_err(|e| io_err(e, objects))? {
        let dir = entry.map_err(|e| io_err(e, objects))?.path();
        if !dir.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir).map_err(|e| io_err(e, &dir))? {
            let entry = entry.map_err(|e| io_err(e, &dir))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                remove_temp(&entry.path(), &mut report)?;
            }
        }
    }
    Ok(report)
}

pub(crate) fn remove_temp(path: &Path, report: &mut RecoveryReport) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            report.removed_temp_files += 1;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e, path)),
    }
}

/// Applies journaled renames and unlinks (idempotently) and syncs the touched directories.
pub(crate) fn apply_journal(objects: &Path, entries: &[JournalEntry]) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for entry in entries {
        match entry {
            JournalEntry::Put { key, temp } => {
                let target = layout::record_path(objects, key);
                let dir = parent(&target)?;
                match fs::rename(dir.join(temp), &target) {
                    Ok(()) => {}
                    // Renamed before the crash.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e, &target)),
                }
                dirs.insert(dir.to_path_buf());
            }
            JournalEntry::Delete { key } => {
                let target = layout::record_path(objects, key);
                match fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e, &target)),
                }
                dirs.insert(parent(&target)?.to_path_buf());
            }
        }
    }
    for dir in dirs {
        if dir.exists() {
            fsync_dir(&dir)?;
        }
    }
    Ok(())
}
