//! The key/value commands: `put`, `get`, `rm`, `ls`, `head`.

use std::io::Write;
use std::path::PathBuf;

use futures::TryStreamExt;
use hybridstore::core::{Error, Key, KeyRange, KvStore, PutOptions};
use hybridstore::{WriteStreamError, write_stream};

use crate::Ui;
use crate::failure::{ExitCode, Failure, output};
use crate::output::{MetaView, human_bytes};

/// Parses a key typed on the command line; `hex:<hex>` spells binary keys.
fn parse_key(text: &str) -> Result<Key, Error> {
    match text.strip_prefix("hex:") {
        Some(h) => Key::new(
            hex::decode(h)
                .map_err(|e| Error::invalid_input(format!("bad hex key {text:?}: {e}")))?,
        ),
        None => Key::new(text.to_string()),
    }
}

/// `put KEY [FILE]`: stores a file (or standard input, also for `-`).
pub(crate) async fn put(
    kv: &dyn KvStore,
    key: String,
    file: Option<PathBuf>,
    content_type: Option<String>,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    let key = parse_key(&key)?;
    // Streamed: the value is never whole in memory (the store bounds what it buffers).
    let (mut reader, guessed): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, _) =
        match file.as_deref() {
            None => (Box::new(tokio::io::stdin()), None),
            Some(p) if p.as_os_str() == "-" => (Box::new(tokio::io::stdin()), None),
            Some(p) => (
                Box::new(tokio::fs::File::open(p).await.map_err(|e| {
                    Failure::input(Error::from(e).with_context("path", p.display()))
                })?),
                hybridstore::guess_content_type(p),
            ),
        };
    let options = content_type
        .or(guessed)
        .map(PutOptions::with_content_type)
        .unwrap_or_default();
    let meta = kv.put_stream(&key, &mut reader, &options).await?;
    if ui.json {
        ui.print_json(&MetaView::new(&key, &meta))?;
    } else {
        println!(
            "stored {key} ({}, sha256 {})",
            human_bytes(meta.size),
            meta.checksum
        );
    }
    Ok(ExitCode::Ok)
}

/// `get KEY [-o FILE]`: a value to standard output or a file.
pub(crate) async fn get(
    kv: &dyn KvStore,
    key: String,
    output_path: Option<PathBuf>,
) -> Result<ExitCode, Failure> {
    let key = parse_key(&key)?;
    let stream = kv
        .get_stream(&key, None)
        .await?
        .ok_or_else(|| Error::not_found(format!("no key {key}")))?;
    match output_path {
        // Into a temporary file beside the target, renamed over it once every byte is
        // written and synced: a failed or damaged read never leaves a partial file there.
        // `sync_data` every 64 MiB has the disk write while the value is still being read.
        Some(path) => {
            let io = |e: std::io::Error| Error::from(e).with_context("path", path.display());
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let partial = tempfile::Builder::new()
                .prefix(".hybridstore-get-")
                .tempfile_in(&dir)
                .map_err(io)?;
            let file = partial.as_file().try_clone().map_err(io)?;
            let (file, _) = write_stream(stream.body, file, Some(std::fs::File::sync_data))
                .await
                .map_err(|e| match e {
                    WriteStreamError::Read(e) => e,
                    WriteStreamError::Write(e) => io(e),
                })?;
            tokio::task::spawn_blocking(move || file.sync_all())
                .await
                .map_err(|e| Error::backend(format!("get worker failed: {e}")))?
                .map_err(io)?;
            partial.persist(&path).map_err(|e| io(e.error))?;
        }
        None => match write_stream(stream.body, std::io::stdout(), None).await {
            Ok(_) => {}
            Err(WriteStreamError::Read(e)) => return Err(e.into()),
            Err(WriteStreamError::Write(e)) => output(Err(e))?,
        },
    }
    Ok(ExitCode::Ok)
}

/// `rm KEY`: removes a key; `NotFound` if there is none.
pub(crate) async fn rm(kv: &dyn KvStore, key: String, ui: &Ui) -> Result<ExitCode, Failure> {
    let key = parse_key(&key)?;
    if kv.head(&key).await?.is_none() {
        return Err(Error::not_found(format!("no key {key}")).into());
    }
    kv.delete(&key).await?;
    if ui.json {
        ui.print_json(&serde_json::json!({ "removed": key.to_string() }))?;
    } else {
        println!("removed {key}");
    }
    Ok(ExitCode::Ok)
}

/// `ls [PREFIX]`: keys in order, with their metadata when `long`.
pub(crate) async fn ls(
    kv: &dyn KvStore,
    prefix: Option<String>,
    limit: Option<usize>,
    long: bool,
    ui: &Ui,
) -> Result<ExitCode, Failure> {
    let range = KeyRange::prefix(prefix.unwrap_or_default());
    let mut stream = kv.scan_meta(range, limit);
    let mut views = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some(entry) = stream.try_next().await? {
        let view = MetaView::new(&entry.key, &entry.meta);
        if ui.json {
            views.push(view);
        } else if long {
            output(writeln!(out, "{}", view.long_line()))?;
        } else {
            output(writeln!(out, "{}", entry.key))?;
        }
    }
    drop(out);
    if ui.json {
        ui.print_json(&views)?;
    }
    Ok(ExitCode::Ok)
}

/// `head KEY`: a key's metadata.
pub(crate) async fn head(kv: &dyn KvStore, key: String, ui: &Ui) -> Result<ExitCode, Failure> {
    let key = parse_key(&key)?;
    let meta = kv
        .head(&key)
        .await?
        .ok_or_else(|| Error::not_found(format!("no key {key}")))?;
    let view = MetaView::new(&key, &meta);
    if ui.json {
        ui.print_json(&view)?;
    } else {
        print!("{}", view.block());
    }
    Ok(ExitCode::Ok)
}
