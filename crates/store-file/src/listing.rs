//! Listing the objects directory in key order, and statistics from the record headers.

use super::*;

/// First key bytes whose directories exist and may hold keys in `range`, ascending.
pub(crate) fn list_dirs(objects: &Path, range: &KeyRange) -> Result<Vec<u8>> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(objects).map_err(|e| io_err(e, objects))? {
        let entry = entry.map_err(|e| io_err(e, objects))?;
        if let Some(first) = layout::parse_dir_name(&entry.file_name().to_string_lossy())
            && dir_may_intersect(range, first)
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Whether any key starting with `first` can lie in `range`.
pub(crate) fn dir_may_intersect(range: &KeyRange, first: u8) -> bool {
    use std::ops::Bound;
    let lowest = [first];
    let below_end = match range.end() {
        Bound::Unbounded => true,
        Bound::Included(e) => e >= &lowest[..],
        Bound::Excluded(e) => e > &lowest[..],
    };
    let above_start = match range.start() {
        Bound::Unbounded => true,
        Bound::Included(s) | Bound::Excluded(s) => s.is_empty() || s[0] <= first,
    };
    below_end && above_start
}

/// The records of directory `first` in `range`, sorted by key.
pub(crate) fn list_dir(objects: &Path, first: u8, range: &KeyRange) -> Result<Vec<(Key, PathBuf)>> {
    let dir = objects.join(layout::dir_name(first));
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e, &dir)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| io_err(e, &dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let key = match layout::parse_name(first, name) {
            NameKind::Direct(bytes) => match Key::new(bytes) {
                Ok(k) => k,
                Err(_) => continue,
            },
            NameKind::Hashed => {
                let path = entry.path();
                let mut file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(e, &path)),
                };
                record::read_header(&mut file)
                    .map_err(|e| e.with_context("path", path.display()))?
                    .key
            }
            NameKind::Temp | NameKind::Foreign => continue,
        };
        if range.contains(key.as_bytes()) {
            out.push((key, entry.path()));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub(crate) type Record = (Key, ObjectMeta, Option<Bytes>);

/// Reads listed records; a record deleted since the listing is skipped.
pub(crate) fn read_records(
    paths: Vec<(Key, PathBuf)>,
    with_values: bool,
    verify: bool,
) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity(paths.len());
    for (key, path) in paths {
        let Some((mut file, header)) = open_record(&path, &key)? else {
            continue;
        };
        let value = if with_values {
            Some(Bytes::from(
                record::read_value(&mut file, &header, verify)
                    .map_err(|e| e.with_context("path", path.display()))?,
            ))
        } else {
            None
        };
        out.push((key, header.meta, value));
    }
    Ok(out)
}

pub(crate) fn stats_blocking(objects: &Path) -> Result<StoreStats> {
    let mut stats = StoreStats {
        stored_bytes: Some(0),
        ..StoreStats::default()
    };
    for first in list_dirs(objects, &KeyRange::all())? {
        for (key, path) in list_dir(objects, first, &KeyRange::all())? {
            let Some((file, header)) = open_record(&path, &key)? else {
                continue;
            };
            stats.keys += 1;
            stats.logical_bytes += header.meta.size;
            let len = file.metadata().map_err(|e| io_err(e, &path))?.len();
            stats.stored_bytes = stats.stored_bytes.map(|s| s + len);
        }
    }
    Ok(stats)
}
