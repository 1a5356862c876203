//! What a sync does with each key: a three-way comparison of the local version, the remote
//! version and the version both had at the last sync (the base), as rclone bisync and
//! Unison compare them. A pure function, tested on its own.

use std::time::SystemTime;

use hybridstore_core::Sha256Digest;
use serde::Serialize;

/// Which way a sync moves changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local changes go to the remote; remote changes stay there until a pull.
    Push,
    /// Remote changes come to the local store; local changes stay until a push.
    Pull,
    /// Both ways.
    Both,
}

impl Direction {
    fn pushes(self) -> bool {
        matches!(self, Direction::Push | Direction::Both)
    }
    fn pulls(self) -> bool {
        matches!(self, Direction::Pull | Direction::Both)
    }
}

/// How a key changed on both sides since the last sync (to different versions) is
/// resolved. Identical changes are not conflicts. A change always wins over a deletion,
/// except under `Local` and `Remote`, which pick their side whatever it did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The version with the later modified time wins (the local one on a tie). The default,
    /// as rclone bisync's `--conflict-resolve newer`.
    #[default]
    Newer,
    /// The local version wins.
    Local,
    /// The remote version wins.
    Remote,
    /// The newer version stays under the key and the other is kept under a conflict key,
    /// `<key>.conflict-<local|remote>-<its modified time, RFC 3339>`, on both sides.
    KeepBoth,
}

impl std::str::FromStr for ConflictPolicy {
    type Err = hybridstore_core::Error;
    fn from_str(s: &str) -> hybridstore_core::Result<Self> {
        match s {
            "newer" => Ok(ConflictPolicy::Newer),
            "local" => Ok(ConflictPolicy::Local),
            "remote" => Ok(ConflictPolicy::Remote),
            "keep-both" => Ok(ConflictPolicy::KeepBoth),
            _ => Err(hybridstore_core::Error::invalid_input(format!(
                "conflict policy {s:?}: expected newer, local, remote or keep-both"
            ))),
        }
    }
}

/// One side's version of a key: its checksum and modified time, `None` when absent
/// (deleted or never written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// SHA-256 of the value.
    pub checksum: Sha256Digest,
    /// When the value was last written.
    pub modified: SystemTime,
}

/// Which side a resolution keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// This device's store.
    Local,
    /// The remote.
    Remote,
}

/// What to do with one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: unchanged, or changed only on a side this direction does not carry.
    Nothing,
    /// Both sides changed to the same version: record it as the base, move nothing.
    RecordBase,
    /// Send the local version (a value, or a tombstone when the local key is gone).
    Upload,
    /// Bring the remote version (a value, or delete the local key for a tombstone).
    Download,
    /// A conflict resolved by keeping both: the winner's version under the key on both
    /// sides, the loser's under the conflict key on both sides.
    KeepBoth {
        /// Whose version stays under the key.
        winner: Side,
    },
}

/// The decision for one key, and whether it was a conflict (and who won).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// `Some(winner)` when the key changed on both sides to different versions.
    pub conflict: Option<Side>,
}

/// Decides what `direction` does with a key whose local, remote and base versions are
/// given (`None`: absent).
pub fn decide(
    direction: Direction,
    policy: ConflictPolicy,
    local: Option<Version>,
    remote: Option<Version>,
    base: Option<Sha256Digest>,
) -> Decision {
    let l = local.map(|v| v.checksum);
    let r = remote.map(|v| v.checksum);
    let (local_changed, remote_changed) = (l != base, r != base);
    let plain = |action| Decision {
        action,
        conflict: None,
    };
    match (local_changed, remote_changed) {
        (false, false) => plain(Action::Nothing),
        (true, false) if direction.pushes() => plain(Action::Upload),
        (false, true) if direction.pulls() => plain(Action::Download),
        (true, false) | (false, true) => plain(Action::Nothing),
        (true, true) if l == r => plain(Action::RecordBase),
        (true, true) => {
            let winner = match (policy, local, remote) {
                (ConflictPolicy::Local, _, _) => Side::Local,
                (ConflictPolicy::Remote, _, _) => Side::Remote,
                // A change wins over a deletion.
                (_, Some(_), None) => Side::Local,
                (_, None, Some(_)) => Side::Remote,
                (_, Some(lv), Some(rv)) if rv.modified > lv.modified => Side::Remote,
                _ => Side::Local,
            };
            let both_present = local.is_some() && remote.is_some();
            let action = match winner {
                _ if policy == ConflictPolicy::KeepBoth && both_present => {
                    // Keeping both writes on both sides; a one-way sync keeps what it can
                    // carry and leaves the rest for a later sync.
                    match direction {
                        Direction::Both => Action::KeepBoth { winner },
                        Direction::Push if winner == Side::Local => Action::Upload,
                        Direction::Pull if winner == Side::Remote => Action::Download,
                        _ => Action::Nothing,
                    }
                }
                Side::Local if direction.pushes() => Action::Upload,
                Side::Remote if direction.pulls() => Action::Download,
                _ => Action::Nothing,
            };
            Decision {
                action,
                conflict: Some(winner),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn v(byte: u8, secs: u64) -> Option<Version> {
        Some(Version {
            checksum: Sha256Digest([byte; 32]),
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        })
    }
    fn base(byte: u8) -> Option<Sha256Digest> {
        Some(Sha256Digest([byte; 32]))
    }
    use ConflictPolicy::*;
    use Direction::*;

    #[test]
    fn one_sided_changes_move_in_their_direction_only() {
        let d = |dir, l, r, b| decide(dir, Newer, l, r, b).action;
        assert_eq!(d(Push, v(2, 2), v(1, 1), base(1)), Action::Upload);
        assert_eq!(d(Pull, v(2, 2), v(1, 1), base(1)), Action::Nothing);
        assert_eq!(d(Pull, v(1, 1), v(2, 2), base(1)), Action::Download);
        assert_eq!(d(Push, v(1, 1), v(2, 2), base(1)), Action::Nothing);
        assert_eq!(d(Both, None, v(1, 1), base(1)), Action::Upload); // a local delete
        assert_eq!(d(Both, v(1, 1), None, base(1)), Action::Download); // a remote delete
        assert_eq!(d(Both, v(1, 1), v(1, 1), base(1)), Action::Nothing);
        assert_eq!(d(Both, None, None, None), Action::Nothing);
        assert_eq!(d(Both, v(3, 3), v(3, 5), base(1)), Action::RecordBase);
        assert_eq!(d(Both, v(3, 3), v(3, 5), None), Action::RecordBase);
    }

    #[test]
    fn conflicts_follow_the_policy() {
        let (older_local, newer_remote) = (v(2, 10), v(3, 20));
        let c = |dir, policy| decide(dir, policy, older_local, newer_remote, base(1));
        assert_eq!(c(Both, Newer).action, Action::Download);
        assert_eq!(c(Both, Newer).conflict, Some(Side::Remote));
        assert_eq!(c(Both, Local).action, Action::Upload);
        assert_eq!(c(Both, Remote).action, Action::Download);
        assert_eq!(
            c(Both, KeepBoth).action,
            Action::KeepBoth {
                winner: Side::Remote
            }
        );
        // A push cannot bring the newer remote version: it leaves the key for later.
        assert_eq!(c(Push, Newer).action, Action::Nothing);
        assert_eq!(c(Push, Newer).conflict, Some(Side::Remote));
        assert_eq!(c(Push, Local).action, Action::Upload);
        // Ties go to the local version.
        assert_eq!(
            decide(Both, Newer, v(2, 5), v(3, 5), base(1)).action,
            Action::Upload
        );
        // A change beats a deletion, unless the policy picks the deleting side.
        assert_eq!(
            decide(Both, Newer, None, v(3, 1), base(1)).action,
            Action::Download
        );
        assert_eq!(
            decide(Both, KeepBoth, None, v(3, 1), base(1)).action,
            Action::Download
        );
        assert_eq!(
            decide(Both, Local, None, v(3, 1), base(1)).action,
            Action::Upload
        );
        assert_eq!(
            decide(Both, Newer, v(3, 1), None, base(1)).action,
            Action::Upload
        );
    }

    #[test]
    fn policies_parse() {
        for (s, p) in [
            ("newer", Newer),
            ("local", Local),
            ("remote", Remote),
            ("keep-both", KeepBoth),
        ] {
            assert_eq!(s.parse::<ConflictPolicy>().unwrap(), p);
        }
        assert!("older".parse::<ConflictPolicy>().is_err());
    }
}
