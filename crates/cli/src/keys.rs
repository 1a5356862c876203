//! The key/value commands: `put`, `get`, `rm`, `ls`, `head`.

use std::io::{Read, Write};
use std::path::PathBuf;

use futures::TryStreamExt;
use hybridstore::core::{Error, Key, KeyRange, KvStore, PutOptions};

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
    let (value, guessed) = match file.as_deref() {
        None => (read_stdin()?, None),
        Some(p) if p.as_os_str() == "-" => (read_stdin()?, None),
        Some(p) => (
            tokio::fs::read(p)
                .await
                .map_err(|e| Failure::input(Error::from(e).with_context("path", p.display())))?,
            hybridstore::guess_content_type(p),
        ),
    };
    let options = content_type
        .or(guessed)
        .map(PutOptions::with_content_type)
        .unwrap_or_default();
    let meta = kv.put_with(&key, value.into(), &options).await?;
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
    let value = kv
        .get(&key)
        .await?
        .ok_or_else(|| Error::not_found(format!("no key {key}")))?;
    match output_path {
        Some(path) => tokio::fs::write(&path, &value)
            .await
            .map_err(|e| Error::from(e).with_context("path", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            output(out.write_all(&value))?;
            output(out.flush())?;
        }
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

fn read_stdin() -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    std::io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}
