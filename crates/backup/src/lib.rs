//! Backup repositories for hybridstore: content-addressed snapshots of a key/value store and
//! a set of files, kept in any [`KvStore`](hybridstore_core::KvStore) (a local directory
//! through `FileStore`, S3 through `ObjectStoreKv`), with verify, retention, prune and
//! restore.
//!
//! The layout follows restic's design (<https://restic.readthedocs.io/en/stable/100_references.html#design>):
//! content goes into chunks named by their SHA-256 and grouped into packs of about 16 MiB,
//! each pack carrying its own index; a snapshot record names everything the snapshot needs
//! and is itself named by its SHA-256. The chunks are the dedup layer's
//! ([`hybridstore_dedup::ChunkStore`], same ids and pack format), so a backup of a
//! deduplicated store copies each chunk once and a later backup copies only chunks that are
//! new since.
//!
//! ```text
//! backup:  keys (manifests → chunk lists) + files ─▶ new chunks ─▶ packs ─▶ key tree
//!          ─▶ snapshot record (the commit point)
//! restore: snapshot record ─▶ key tree ─▶ chunks (each checked) ─▶ values (each checked)
//! ```
//!
//! - [`Repository`]: init, open (with a password if encrypted), snapshots, locks ([`repo`]
//!   has the layout).
//! - [`backup`] with a [`BackupSource`]: what the caller captured at one moment.
//! - [`verify()`]: structure, and with [`ReadData`] every pack or a share of them.
//! - [`forget`] with a [`RetentionPolicy`] (restic's rules, [`policy`]), then [`prune`]
//!   (two phases with a grace period).
//! - [`restore_keys`], [`restore_file`], [`read_tree`], [`diff()`]; [`SnapshotStore`]: a
//!   snapshot's keys as a read-only `KvStore`, without restoring.
//!
//! Capturing a whole hybridstore system (the write barrier, the SQL database, the LanceDB
//! tables, the DuckDB file) is the facade's job (`hybridstore::backup`); this crate knows
//! no engine.
//!
//! **Concurrency.** Backup, verify and restore take a shared lock, forget and prune an
//! exclusive one (`locks/`); a lock is refreshed every 5 minutes and is stale after 30
//! (restic's rules), or at once when its process on this host is gone.
//!
//! **Encryption.** [`Repository::init_with`] a [`Password`] makes an encrypted repository:
//! a random master key wrapped under an Argon2id key in `keys/`, and every other value
//! sealed with XChaCha20-Poly1305 in 64 KiB STREAM segments by [`EncryptedStore`]
//! ([`crypto`] has the format). Key names and sizes stay visible.

pub mod create;
pub mod crypto;
pub mod diff;
pub mod mount;
pub mod policy;
pub mod prune;
pub mod record;
pub mod repo;
pub mod restore;
pub mod verify;

pub use create::{
    BackupProgress, BackupReport, BackupSource, FileSource, KEYS_ITEM, KeySource, SourceEntry,
    SourceValue, backup,
};
pub use crypto::{EncryptedStore, KeyFile, MasterKey, Password};
pub use diff::{DiffReport, diff};
pub use mount::SnapshotStore;
pub use policy::{
    CalendarSpan, PolicyDecision, PolicySnapshot, RetentionPolicy, UNLIMITED, apply_policy,
};
pub use prune::{ForgetReport, PruneOptions, PruneReport, forget, prune};
pub use record::{Item, ItemKind, Snapshot, SnapshotId, Summary, TreeEntry};
pub use repo::{RepoLock, Repository, host_name};
pub use restore::{
    RestoreProgress, RestoreReport, read_tree, read_value, restore_file, restore_keys,
};
pub use verify::{ReadData, VerifyProblem, VerifyReport, verify};
