//! The blocking operations on the objects directory, one record file per key: reads,
//! puts, deletes and write batches (run on the blocking pool by `FileStore`).

use super::*;

/// Opens the record of `key`, checks its header belongs to `key`.
pub(crate) fn open_record(path: &Path, key: &Key) -> Result<Option<(File, record::RecordHeader)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e, path)),
    };
    let header =
        record::read_header(&mut file).map_err(|e| e.with_context("path", path.display()))?;
    if header.key != *key {
        return Err(
            Error::corrupted("record belongs to another key").with_context("path", path.display())
        );
    }
    Ok(Some((file, header)))
}

/// The creation time of the record at `target`, kept across overwrites; a damaged old record
/// does not block a put.
pub(crate) fn previous_created(target: &Path, key: &Key) -> Option<std::time::SystemTime> {
    open_record(target, key)
        .ok()
        .flatten()
        .map(|(_, h)| h.meta.created)
}

pub(crate) fn head_blocking(objects: &Path, key: &Key) -> Result<Option<ObjectMeta>> {
    Ok(open_record(&layout::record_path(objects, key), key)?.map(|(_, h)| h.meta))
}

pub(crate) fn get_blocking(objects: &Path, key: &Key, verify: bool) -> Result<Option<Bytes>> {
    let path = layout::record_path(objects, key);
    let Some((mut file, header)) = open_record(&path, key)? else {
        return Ok(None);
    };
    let value = record::read_value(&mut file, &header, verify)
        .map_err(|e| e.with_context("path", path.display()))?;
    Ok(Some(Bytes::from(value)))
}

/// Reads `range` of the value of `key` with one positioned read after the header; the
/// whole-value checksum is not checked (see `KvStore::get_range`), the length is.
pub(crate) fn get_range_blocking(
    objects: &Path,
    key: &Key,
    range: std::ops::Range<u64>,
) -> Result<Option<Bytes>> {
    use std::os::unix::fs::FileExt;
    let path = layout::record_path(objects, key);
    let Some((file, header)) = open_record(&path, key)? else {
        return Ok(None);
    };
    hybridstore_core::raw::check_range(&range, header.meta.size)?;
    record::check_length(&file, &header).map_err(|e| e.with_context("path", path.display()))?;
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| Error::invalid_input("range larger than the address space"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, header.header_len + range.start)
        .map_err(|e| io_err(e, &path))?;
    Ok(Some(Bytes::from(buf)))
}

/// Writes a synced temporary record for `key` beside its target and returns the temp path.
pub(crate) fn stage_record(
    objects: &Path,
    key: &Key,
    value: &[u8],
    options: &PutOptions,
) -> Result<(PathBuf, ObjectMeta)> {
    let target = layout::record_path(objects, key);
    let dir = parent(&target)?;
    ensure_dir(objects, dir)?;
    let meta = ObjectMeta::for_value(value, options, previous_created(&target, key));
    let temp = write_synced_temp(dir, |f| record::write_record(f, key, &meta, value))?;
    Ok((temp, meta))
}

pub(crate) fn put_blocking(
    objects: &Path,
    key: &Key,
    value: &[u8],
    options: &PutOptions,
) -> Result<ObjectMeta> {
    let (temp, meta) = stage_record(objects, key, value, options)?;
    let target = layout::record_path(objects, key);
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(io_err(e, &target));
    }
    fsync_dir(parent(&target)?)?;
    Ok(meta)
}

pub(crate) fn delete_blocking(objects: &Path, key: &Key) -> Result<()> {
    let target = layout::record_path(objects, key);
    match fs::remove_file(&target) {
        Ok(()) => fsync_dir(parent(&target)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e, &target)),
    }
}

pub(crate) fn batch_blocking(inner: &Inner, plan: BatchPlan) -> Result<()> {
    let (objects, journal_dir) = (inner.objects.as_path(), inner.journal.as_path());
    plan.verify_checks(|k| head_blocking(objects, k))?;
    let mut writes = plan.writes;
    if writes.len() <= 1 {
        // One rename or unlink is atomic by itself; no journal needed.
        return match writes.pop() {
            Some((key, Mutation::Put { value, options })) => {
                put_blocking(objects, &key, &value, &options).map(|_| ())
            }
            Some((key, Mutation::Delete)) => delete_blocking(objects, &key),
            None => Ok(()),
        };
    }
    // 1. Stage every value in a synced temporary file and make their entries durable.
    let mut entries = Vec::with_capacity(writes.len());
    let mut temps = Vec::new();
    let mut staged_dirs = BTreeSet::new();
    let staged: Result<()> = (|| {
        for (key, mutation) in writes {
            match mutation {
                Mutation::Put { value, options } => {
                    let (temp, _) = stage_record(objects, &key, &value, &options)?;
                    let name = temp
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    staged_dirs.insert(parent(&temp)?.to_path_buf());
                    temps.push(temp);
                    entries.push(JournalEntry::Put { key, temp: name });
                }
                Mutation::Delete => entries.push(JournalEntry::Delete { key }),
            }
        }
        for dir in &staged_dirs {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    let cleanup = |temps: &[PathBuf]| {
        for t in temps {
            let _ = fs::remove_file(t);
        }
    };
    if let Err(e) = staged {
        cleanup(&temps);
        return Err(e);
    }
    // 2. Commit: the journal becomes durable.
    let name = format!(
        "{:020}-{:016x}.batch",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        rand::random::<u64>()
    );
    let journal_path = match write_durably(journal_dir, &name, &journal::encode(&entries)) {
        Ok(p) => p,
        Err(e) => {
            cleanup(&temps);
            return Err(e);
        }
    };
    // 3. Apply. 4. Retire the journal durably before anyone can write again. If either
    // fails, the committed journal stays on disk and the next open replays it, so no later
    // write may be acknowledged before then: the store refuses them until it is reopened.
    if let Err(e) = apply_journal(objects, &entries) {
        const WHY: &str = "a write batch is committed but could not be fully applied";
        inner.fail(format!("{WHY} ({e})"), true);
        return Err(Error::backend(format!(
            "{WHY}; it completes when the store is next opened, and until then the store refuses reads and writes"
        ))
        .with_source(e));
    }
    let retired = fs::remove_file(&journal_path)
        .map_err(|e| io_err(e, &journal_path))
        .and_then(|()| fsync_dir(journal_dir));
    if let Err(e) = retired {
        const WHY: &str = "a write batch is applied but its journal could not be retired";
        inner.fail(format!("{WHY} ({e})"), false);
        return Err(Error::backend(format!(
            "{WHY}; the store refuses writes until it is reopened (which replays the batch again, harmlessly)"
        ))
        .with_source(e));
    }
    Ok(())
}
