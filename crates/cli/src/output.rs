//! How metadata and sizes are shown to people and to JSON readers.

use std::time::SystemTime;

use hybridstore::core::{Key, ObjectMeta};
use serde::Serialize;

/// Sizes for people: binary units (KiB, MiB, …), as indicatif shows them in progress bars.
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// One key's metadata as printed by `head`, `put` and `ls`.
#[derive(Debug, Serialize)]
pub struct MetaView {
    /// The key, `hex:`-encoded if not printable UTF-8.
    pub key: String,
    /// Value size in bytes.
    pub size: u64,
    /// SHA-256 of the value, hex.
    pub sha256: String,
    /// MIME type, if recorded.
    pub content_type: Option<String>,
    /// First write, RFC 3339 (UTC).
    pub created: String,
    /// Last write, RFC 3339 (UTC).
    pub modified: String,
}

impl MetaView {
    pub fn new(key: &Key, meta: &ObjectMeta) -> Self {
        MetaView {
            key: key.to_string(),
            size: meta.size,
            sha256: meta.checksum.to_hex(),
            content_type: meta.content_type.clone(),
            created: rfc3339(meta.created),
            modified: rfc3339(meta.modified),
        }
    }

    /// `ls --long`: size, modified, content type, key.
    pub fn long_line(&self) -> String {
        format!(
            "{:>12}  {}  {:<24}  {}",
            self.size,
            self.modified,
            self.content_type.as_deref().unwrap_or("-"),
            self.key
        )
    }

    /// `head`: one field per line.
    pub fn block(&self) -> String {
        format!(
            "key           {}\nsize          {} ({} bytes)\nsha256        {}\ncontent type  {}\ncreated       {}\nmodified      {}\n",
            self.key,
            human_bytes(self.size),
            self.size,
            self.sha256,
            self.content_type.as_deref().unwrap_or("-"),
            self.created,
            self.modified
        )
    }
}
