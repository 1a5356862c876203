//! The files of a source directory tree and their keys: what `ingest` stores and what the
//! passage index cuts, walked the same way for both.

use std::path::{Component, Path, PathBuf};

use hybridstore_core::{Error, Key};
use serde::Serialize;

/// One file that could not be transferred.
#[derive(Clone, Debug, Serialize)]
pub struct FileError {
    /// The source path (ingest) or key (export).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The regular files of a tree, and what the walk passed over.
#[derive(Default)]
pub(crate) struct SourceTree {
    pub(crate) files: Vec<SourceFile>,
    /// Entries passed over on purpose (symbolic links, sockets, devices).
    pub(crate) skipped: u64,
    pub(crate) errors: Vec<FileError>,
}

#[derive(Clone)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) key: Key,
    pub(crate) size: u64,
}

/// Lists regular files under `source`, sorted by path, with their keys (`prefix` + relative
/// path, `/`-separated); symbolic links and special files are counted as skipped, entries
/// that cannot be read or named as a key are listed as errors.
pub(crate) fn walk(source: &Path, prefix: &str) -> SourceTree {
    let mut tree = SourceTree::default();
    for entry in walkdir::WalkDir::new(source)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tree.errors.push(FileError {
                    path: e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            tracing::warn!(path = %entry.path().display(), "skipping: not a regular file");
            tree.skipped += 1;
            continue;
        }
        let path = entry.path().to_path_buf();
        let key = path
            .strip_prefix(source)
            .ok()
            .and_then(relative_key)
            .ok_or_else(|| Error::invalid_input("path is not valid UTF-8"))
            .and_then(|rel| Key::new(format!("{prefix}{rel}")));
        let size = entry.metadata().map(|m| m.len());
        match (key, size) {
            (Ok(key), Ok(size)) => tree.files.push(SourceFile { path, key, size }),
            (Err(e), _) => tree.errors.push(FileError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            (_, Err(e)) => tree.errors.push(FileError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
    tree
}

/// The `/`-separated form of a relative path, if every component is UTF-8.
fn relative_key(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    Some(parts?.join("/"))
}
