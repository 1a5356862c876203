//! Encrypted repositories: a master key wrapped by a password-derived key, and
//! [`EncryptedStore`], a `KvStore` layer that encrypts every value it stores.
//!
//! **Keys.** `keys/<random>` (in the store below the layer, readable without a password)
//! holds a [`KeyFile`]: Argon2id parameters, a salt, and the repository's random 256-bit
//! master key sealed with XChaCha20-Poly1305 under the key Argon2id derives from the
//! password. Several key files may open one repository (as restic's `keys/`); opening tries
//! each one the password unlocks.
//!
//! **Values.** Every value is sealed in the STREAM construction (Hoang, Reyhanitabar,
//! Rogaway and Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance", CRYPTO 2015, <https://eprint.iacr.org/2015/189>), as RustCrypto's
//! `aead::stream::StreamBE32` implements it over XChaCha20-Poly1305 (a 19-byte random nonce
//! prefix per value, a 32-bit big-endian segment counter and a last-segment flag), in
//! segments of 64 KiB of plaintext, the segment size of the age format
//! (<https://age-encryption.org/v1>):
//!
//! ```text
//! "hse1"                     4 bytes, the format
//! nonce prefix               19 random bytes
//! segment 0 .. k-1           min(65536, rest) bytes of plaintext + 16-byte tag each
//! trailer                    SHA-256 of the plaintext (32 bytes) + 16-byte tag, sealed
//!                            at position k with the last-segment flag
//! ```
//!
//! Every segment's associated data is the key the value is stored under, so a value moved
//! to another key, a segment moved, dropped or reordered, or a value cut short fails to
//! open (`Corrupted`). A range read decrypts only the segments it covers. What stays
//! visible to whoever holds the store: key names, value sizes (to 16 bytes per 64 KiB),
//! times and content types.

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::raw::{check_range, conflict, cpu_bound, spawn_cpu};
use hybridstore_core::{
    BatchOp, Capabilities, Entry, EntryStream, Error, ErrorKind, Expect, Key, KeyRange, KvStore,
    MetaEntry, MetaStream, ObjectMeta, PutOptions, Result, Sha256Digest, ValueReader, ValueStream,
    WriteBatch,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

/// Key prefix of key files, in the store below the encryption layer.
pub const KEY_PREFIX: &str = "keys/";
/// Reads of a value's metadata before giving up when it keeps being replaced meanwhile.
const PLAIN_META_ATTEMPTS: usize = 8;
/// Plaintext bytes per sealed segment: 64 KiB, age's chunk size.
pub const SEGMENT_LEN: usize = 64 * 1024;
/// Argon2id memory for new keys, in KiB (64 MiB): the second recommended option of RFC 9106
/// §4 (<https://www.rfc-editor.org/rfc/rfc9106#section-4>), with [`ARGON2_ITERATIONS`] and
/// [`ARGON2_PARALLELISM`].
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes for new keys (RFC 9106 §4: 3).
pub const ARGON2_ITERATIONS: u32 = 3;
/// Argon2id lanes for new keys (RFC 9106 §4: 4).
pub const ARGON2_PARALLELISM: u32 = 4;
/// Key files opening tries at most; more is a damaged or hostile repository.
pub const MAX_KEY_FILES: usize = 64;
/// Longest password file read, in bytes.
pub const MAX_PASSWORD_FILE_LEN: u64 = 4096;

const MAGIC: &[u8; 4] = b"hse1";
const PREFIX_LEN: usize = 19;
const HEADER_LEN: u64 = (MAGIC.len() + PREFIX_LEN) as u64;
const TAG_LEN: u64 = 16;
const SEALED_SEGMENT: u64 = SEGMENT_LEN as u64 + TAG_LEN;
const TRAILER_LEN: u64 = 32 + TAG_LEN;
const KEY_FILE_VERSION: u32 = 1;
const KEY_WRAP_AAD: &[u8] = b"hybridstore backup master key v1";
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// A repository password. `Debug` never shows it; the bytes are wiped on drop.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// A password from text.
    ///
    /// # Errors
    /// `InvalidInput` for an empty password.
    pub fn new(text: impl Into<String>) -> Result<Password> {
        let text = Zeroizing::new(text.into());
        if text.is_empty() {
            return Err(Error::invalid_input("an empty password is refused"));
        }
        Ok(Password(text))
    }

    /// The password in `path`: its first line, without the line ending (as restic's
    /// `--password-file`).
    ///
    /// # Errors
    /// `InvalidInput` if the file cannot be read, is longer than
    /// [`MAX_PASSWORD_FILE_LEN`] bytes, is not UTF-8 or holds an empty first line.
    pub fn from_file(path: &Path) -> Result<Password> {
        let invalid = |what: String| Error::invalid_input(format!("{}: {what}", path.display()));
        // One bounded read (one byte past the limit tells a longer file), into a buffer
        // reserved up front so no reallocation leaves an unwiped copy behind.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PASSWORD_FILE_LEN as usize + 1));
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PASSWORD_FILE_LEN + 1).read_to_end(&mut bytes))
            .map_err(|e| invalid(format!("cannot read the password file: {e}")))?;
        if bytes.len() as u64 > MAX_PASSWORD_FILE_LEN {
            return Err(invalid(format!(
                "longer than {MAX_PASSWORD_FILE_LEN} bytes, the most a password file holds"
            )));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not UTF-8".into()))?;
        let line = text.lines().next().unwrap_or("");
        Password::new(line).map_err(|_| invalid("the first line is empty".into()))
    }

    /// The password bytes, for the key derivation.
    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A key file (`keys/<id>`, JSON): how to derive the key that unwraps the master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version (1).
    pub version: u32,
    /// Always `"argon2id"`.
    pub kdf: String,
    /// Argon2id memory in KiB (at most 4 GiB accepted when opening).
    pub memory_kib: u32,
    /// Argon2id passes (at most 64 accepted).
    pub iterations: u32,
    /// Argon2id lanes (1 to 64 accepted).
    pub parallelism: u32,
    /// Salt, hex (16 random bytes when created; 16 to 64 accepted).
    pub salt: String,
    /// The master key sealed with XChaCha20-Poly1305: 24-byte nonce, 32-byte key, 16-byte
    /// tag, hex.
    pub data: String,
    /// When the key was added (RFC 3339).
    pub created: String,
    /// The host it was added on.
    pub host: String,
}

/// A repository's 256-bit master key, wiped on drop.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> MasterKey {
        MasterKey(Zeroizing::new(rand::random()))
    }

    /// A key file that unwraps this master key with `password`, recording `host` as where it
    /// was added, with the RFC 9106 Argon2id parameters ([`ARGON2_MEMORY_KIB`] …). Runs
    /// Argon2id (about a second of CPU); call it off the async workers.
    ///
    /// # Errors
    /// `Backend` if the key derivation fails (it does not for these parameters).
    pub fn wrap(&self, password: &Password, host: String) -> Result<KeyFile> {
        let salt: [u8; 16] = rand::random();
        let mut file = KeyFile {
            version: KEY_FILE_VERSION,
            kdf: "argon2id".into(),
            memory_kib: ARGON2_MEMORY_KIB,
            iterations: ARGON2_ITERATIONS,
            parallelism: ARGON2_PARALLELISM,
            salt: hex::encode(salt),
            data: String::new(),
            created: chrono::Local::now().to_rfc3339(),
            host,
        };
        let kek = derive(password, &file)?;
        let nonce: [u8; 24] = rand::random();
        let sealed = XChaCha20Poly1305::new(GenericArray::from_slice(kek.as_ref()))
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: self.0.as_ref(),
                    aad: KEY_WRAP_AAD,
                },
            )
            .map_err(|_| Error::backend("sealing the master key failed"))?;
        let mut data = nonce.to_vec();
        data.extend_from_slice(&sealed);
        file.data = hex::encode(data);
        Ok(file)
    }

    /// The master key `file` wraps, if `password` unlocks it. Runs Argon2id with the file's
    /// parameters; call it off the async workers.
    ///
    /// # Errors
    /// `InvalidInput` if the password does not unlock it; `Corrupted` if the file's
    /// parameters are out of bounds or its fields do not parse.
    pub fn unwrap(file: &KeyFile, password: &Password) -> Result<MasterKey> {
        let data = hex::decode(&file.data)
            .map_err(|e| Error::corrupted(format!("key file data is not hex: {e}")))?;
        if data.len() != 24 + 32 + TAG_LEN as usize {
            return Err(Error::corrupted(format!(
                "key file data is {} bytes, not {}",
                data.len(),
                24 + 32 + TAG_LEN
            )));
        }
        let kek = derive(password, file)?;
        let (nonce, sealed) = data.split_at(24);
        let plain = Zeroizing::new(
            XChaCha20Poly1305::new(GenericArray::from_slice(kek.as_ref()))
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: KEY_WRAP_AAD,
                    },
                )
                .map_err(|_| Error::invalid_input("wrong password for this key"))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(MasterKey(key))
    }
}

/// The key Argon2id derives from `password` with `file`'s parameters, after bounding them.
fn derive(password: &Password, file: &KeyFile) -> Result<Zeroizing<[u8; 32]>> {
    if file.version != KEY_FILE_VERSION || file.kdf != "argon2id" {
        return Err(Error::corrupted(format!(
            "key file version {} with kdf {:?}: this build reads version {KEY_FILE_VERSION}, argon2id",
            file.version, file.kdf
        )));
    }
    if file.memory_kib > 4 << 20 || file.iterations > 64 || !(1..=64).contains(&file.parallelism) {
        return Err(Error::corrupted(format!(
            "key file Argon2id parameters out of bounds (memory {} KiB, {} passes, {} lanes)",
            file.memory_kib, file.iterations, file.parallelism
        )));
    }
    let salt = hex::decode(&file.salt)
        .map_err(|e| Error::corrupted(format!("key file salt is not hex: {e}")))?;
    if !(16..=64).contains(&salt.len()) {
        return Err(Error::corrupted(format!(
            "key file salt is {} bytes (16 to 64 accepted)",
            salt.len()
        )));
    }
    let params = argon2::Params::new(file.memory_kib, file.iterations, file.parallelism, Some(32))
        .map_err(|e| Error::corrupted(format!("key file Argon2id parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.expose(), &salt, out.as_mut())
        .map_err(|e| Error::corrupted(format!("key derivation failed: {e}")))?;
    Ok(out)
}

/// Writes a new key file for `master` under `keys/<random>` in `raw`, recording `host`, and
/// returns its key. Argon2id runs on the blocking pool.
///
/// # Errors
/// Errors of the store.
pub async fn add_key(
    raw: &dyn KvStore,
    master: &MasterKey,
    password: &Password,
    host: String,
) -> Result<Key> {
    let (master, password) = (master.clone(), password.clone());
    let file = spawn_cpu(move || master.wrap(&password, host)).await??;
    let bytes = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::backend(format!("encoding a key file: {e}")))?;
    let key = Key::new(format!("{KEY_PREFIX}{:032x}", rand::random::<u128>()))?;
    raw.put(&key, Bytes::from(bytes)).await?;
    Ok(key)
}

/// The key files in `raw` (at most [`MAX_KEY_FILES`]), each bounded before it is read.
///
/// # Errors
/// `Corrupted` for more key files than that, or one too long or not parsing; errors of the
/// store.
pub async fn key_files(raw: &dyn KvStore) -> Result<Vec<(Key, KeyFile)>> {
    let metas: Vec<MetaEntry> = raw
        .scan_meta(KeyRange::prefix(KEY_PREFIX), Some(MAX_KEY_FILES + 1))
        .try_collect()
        .await?;
    if metas.len() > MAX_KEY_FILES {
        return Err(Error::corrupted(format!(
            "more than {MAX_KEY_FILES} key files under {KEY_PREFIX}"
        )));
    }
    let mut out = Vec::with_capacity(metas.len());
    for entry in metas {
        if entry.meta.size > MAX_KEY_FILE_LEN {
            return Err(Error::corrupted(format!(
                "{}: {} bytes, longer than any key file ({MAX_KEY_FILE_LEN})",
                entry.key, entry.meta.size
            )));
        }
        let Some(bytes) = raw.get(&entry.key).await? else {
            continue; // removed since the listing
        };
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupted(format!("{}: does not parse: {e}", entry.key)))?;
        out.push((entry.key, file));
    }
    Ok(out)
}

/// The master keys `password` unlocks among `files`, in order. Argon2id runs on the
/// blocking pool, once per file.
///
/// # Errors
/// `InvalidInput` if it unlocks none; `Corrupted` for a damaged file that no other file
/// stands in for.
pub async fn unlock(files: &[(Key, KeyFile)], password: &Password) -> Result<Vec<MasterKey>> {
    let mut keys = Vec::new();
    let mut damaged = None;
    for (key, file) in files {
        let (file, pw) = (file.clone(), password.clone());
        match spawn_cpu(move || MasterKey::unwrap(&file, &pw)).await? {
            Ok(master) => keys.push(master),
            Err(e) if e.kind() == ErrorKind::InvalidInput => {}
            Err(e) => damaged = Some(e.with_context("key", key)),
        }
    }
    match (keys.is_empty(), damaged) {
        (false, _) => Ok(keys),
        (true, Some(e)) => Err(e),
        (true, None) => Err(Error::invalid_input(
            "wrong password: no key of this repository opens with it",
        )
        .with_retryable(false)),
    }
}

/// Plaintext segments of a value of `len` bytes.
fn segments(len: u64) -> u64 {
    len.div_ceil(SEGMENT_LEN as u64)
}

/// Stored bytes of a value of `len` plaintext bytes.
pub fn sealed_len(len: u64) -> u64 {
    HEADER_LEN + len + TAG_LEN * segments(len) + TRAILER_LEN
}

/// Plaintext bytes of a stored value of `sealed` bytes.
fn plain_len(sealed: u64) -> Result<u64> {
    let body = sealed
        .checked_sub(HEADER_LEN + TRAILER_LEN)
        .ok_or_else(|| Error::corrupted(format!("{sealed} bytes: too short to be sealed")))?;
    let k = body.div_ceil(SEALED_SEGMENT);
    // The last segment holds 1..=SEGMENT_LEN plaintext bytes.
    if k > 0 && body - (k - 1) * SEALED_SEGMENT <= TAG_LEN {
        return Err(Error::corrupted(format!(
            "{sealed} bytes: not the length of a sealed value"
        )));
    }
    if k > u64::from(u32::MAX) {
        return Err(Error::corrupted(format!(
            "{sealed} bytes: too many segments"
        )));
    }
    Ok(body - TAG_LEN * k)
}

/// What every read of one stored value needs: its sealed length and nonce prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    sealed: u64,
    prefix: [u8; PREFIX_LEN],
}

impl Header {
    fn plain(&self) -> Result<u64> {
        plain_len(self.sealed)
    }
}

/// The segments a non-empty plaintext `range` of the value `header` describes covers: the
/// first and last positions, and the sealed bytes holding them.
fn covering(header: &Header, range: &Range<u64>) -> (u64, u64, Range<u64>) {
    let segment = SEGMENT_LEN as u64;
    let (first, last) = (range.start / segment, (range.end - 1) / segment);
    let start = HEADER_LEN + first * SEALED_SEGMENT;
    let end = (HEADER_LEN + (last + 1) * SEALED_SEGMENT).min(header.sealed - TRAILER_LEN);
    (first, last, start..end)
}

/// Sealed bytes of segment `position` of a value of `len` plaintext bytes (the last one may
/// be short).
fn sealed_segment_len(len: u64, position: u64) -> usize {
    let plain = (len - position * SEGMENT_LEN as u64).min(SEGMENT_LEN as u64);
    (plain + TAG_LEN) as usize
}

/// The part of segment `position`'s plaintext `plain` that lies in `range`.
fn trim<'a>(plain: &'a [u8], position: u64, range: &Range<u64>) -> &'a [u8] {
    let base = position * SEGMENT_LEN as u64;
    let from = range.start.saturating_sub(base) as usize;
    let to = ((range.end - base) as usize).min(plain.len());
    &plain[from..to]
}

fn parse_header(bytes: &[u8]) -> Result<[u8; PREFIX_LEN]> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::corrupted(
            "not a value sealed by this repository's encryption (no hse1 header)",
        ));
    }
    let mut prefix = [0u8; PREFIX_LEN];
    prefix.copy_from_slice(&bytes[MAGIC.len()..HEADER_LEN as usize]);
    Ok(prefix)
}

/// The sealing of one value: its STREAM and associated data.
struct Sealing {
    stream: StreamBE32<XChaCha20Poly1305>,
    aad: Bytes,
}

impl Sealing {
    fn new(cipher: &XChaCha20Poly1305, prefix: &[u8; PREFIX_LEN], key: &Key) -> Sealing {
        Sealing {
            stream: StreamBE32::from_aead(cipher.clone(), GenericArray::from_slice(prefix)),
            aad: Bytes::copy_from_slice(key.as_bytes()),
        }
    }

    fn seal(&self, position: u64, last: bool, plain: &[u8]) -> Result<Vec<u8>> {
        let position = u32::try_from(position)
            .map_err(|_| Error::invalid_input("value too large to seal (2^32 segments)"))?;
        let mut buf = Vec::with_capacity(plain.len() + TAG_LEN as usize);
        buf.extend_from_slice(plain);
        self.stream
            .encrypt_in_place(position, last, &self.aad, &mut buf)
            .map_err(|_| Error::backend("sealing a segment failed"))?;
        Ok(buf)
    }

    fn open(&self, position: u64, last: bool, sealed: &[u8]) -> Result<Vec<u8>> {
        let corrupted = || {
            Error::corrupted(format!(
                "segment {position} does not authenticate (damaged, moved or another key's)"
            ))
        };
        let position = u32::try_from(position).map_err(|_| corrupted())?;
        let mut buf = sealed.to_vec();
        self.stream
            .decrypt_in_place(position, last, &self.aad, &mut buf)
            .map_err(|_| corrupted())?;
        Ok(buf)
    }

    fn trailer(&self, position: u64, digest: &Sha256Digest) -> Result<Vec<u8>> {
        self.seal(position, true, digest.as_bytes())
    }

    fn open_trailer(&self, position: u64, sealed: &[u8]) -> Result<Sha256Digest> {
        let plain = self.open(position, true, sealed)?;
        let mut digest = [0u8; 32];
        if plain.len() != 32 {
            return Err(Error::corrupted("trailer is not a SHA-256"));
        }
        digest.copy_from_slice(&plain);
        Ok(Sha256Digest(digest))
    }
}

/// A `KvStore` layer that seals every value with the repository's master key (see the
/// module docs for the format). Keys, sizes (within 16 bytes per 64 KiB), times and content
/// types pass through in the clear; the metadata it returns is the plaintext's (size and
/// SHA-256), read from the value's sealed trailer.
///
/// A value that was not written through this layer with the same master key (or was
/// damaged) reads as `Corrupted`. Large values stream segment by segment in bounded memory;
/// range reads fetch only the covering segments.
#[derive(Clone)]
pub struct EncryptedStore {
    inner: Arc<dyn KvStore>,
    cipher: XChaCha20Poly1305,
    headers: moka::sync::Cache<Key, Header>,
}

impl fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl EncryptedStore {
    /// The layer over `inner`, sealing with `master`.
    pub fn new(inner: Arc<dyn KvStore>, master: &MasterKey) -> EncryptedStore {
        EncryptedStore {
            inner,
            cipher: XChaCha20Poly1305::new(GenericArray::from_slice(master.0.as_ref())),
            // Headers of recently read values (sealed length and nonce prefix), so a range
            // read costs one read below: 4,096 entries of 40 bytes.
            headers: moka::sync::Cache::new(4096),
        }
    }

    /// The store below the layer.
    pub fn inner(&self) -> &Arc<dyn KvStore> {
        &self.inner
    }

    /// `plain` sealed for `key`, with its SHA-256.
    fn seal_value(&self, key: &Key, plain: &[u8]) -> Result<(Bytes, Sha256Digest)> {
        let prefix: [u8; PREFIX_LEN] = rand::random();
        let sealing = Sealing::new(&self.cipher, &prefix, key);
        let len = plain.len() as u64;
        let mut out = BytesMut::with_capacity(sealed_len(len) as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&prefix);
        let mut position = 0;
        for segment in plain.chunks(SEGMENT_LEN) {
            out.extend_from_slice(&sealing.seal(position, false, segment)?);
            position += 1;
        }
        let digest = Sha256Digest::of(plain);
        out.extend_from_slice(&sealing.trailer(position, &digest)?);
        Ok((out.freeze(), digest))
    }

    /// The plaintext of the whole sealed value `sealed` of `key`, checked against its
    /// trailer.
    fn open_value(&self, key: &Key, sealed: &[u8]) -> Result<(Bytes, Sha256Digest)> {
        let prefix = parse_header(sealed)?;
        let len = plain_len(sealed.len() as u64)?;
        let sealing = Sealing::new(&self.cipher, &prefix, key);
        let mut out = BytesMut::with_capacity(len as usize);
        let body = &sealed[HEADER_LEN as usize..sealed.len() - TRAILER_LEN as usize];
        let mut hasher = Sha256::new();
        for (position, segment) in body.chunks(SEALED_SEGMENT as usize).enumerate() {
            let plain = sealing.open(position as u64, false, segment)?;
            hasher.update(&plain);
            out.extend_from_slice(&plain);
        }
        let digest = sealing.open_trailer(
            segments(len),
            &sealed[sealed.len() - TRAILER_LEN as usize..],
        )?;
        if Sha256Digest(hasher.finalize().into()) != digest {
            return Err(Error::corrupted(
                "plaintext does not match its sealed SHA-256",
            ));
        }
        Ok((out.freeze(), digest))
    }

    async fn seal_async(&self, key: &Key, plain: Bytes) -> Result<(Bytes, Sha256Digest)> {
        let (this, key) = (self.clone(), key.clone());
        cpu_bound(plain.len(), move || this.seal_value(&key, &plain)).await?
    }

    async fn open_async(&self, key: &Key, sealed: Bytes) -> Result<(Bytes, Sha256Digest)> {
        let (this, owned) = (self.clone(), key.clone());
        cpu_bound(sealed.len(), move || this.open_value(&owned, &sealed))
            .await?
            .map_err(|e| e.with_context("key", key))
    }

    /// Plaintext metadata from the store's metadata and the value's trailer.
    async fn plain_meta(&self, key: &Key, meta: ObjectMeta) -> Result<ObjectMeta> {
        Ok(self.plain_meta_pinned(key, meta).await?.0)
    }

    /// The plaintext metadata of `key` and the stored metadata of the version it was read
    /// from. The header, the trailer and `meta` are three reads: a write between them (or a
    /// cached header of an earlier version of the same length) makes the trailer fail to
    /// authenticate, so a failure is read again from a fresh header, and from the new
    /// version when the stored checksum shows the value was replaced; damage is reported
    /// only when the same stored version fails twice.
    async fn plain_meta_pinned(
        &self,
        key: &Key,
        mut meta: ObjectMeta,
    ) -> Result<(ObjectMeta, ObjectMeta)> {
        let mut same_version_failures = 0;
        for _ in 0..PLAIN_META_ATTEMPTS {
            let error = match self.plain_meta_once(key, &meta).await {
                Ok(plain) => return Ok((plain, meta)),
                Err(e) if matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Unavailable) => e,
                Err(e) => return Err(e),
            };
            self.headers.invalidate(key);
            match self.inner.head(key).await? {
                None => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "key removed while its metadata was read",
                    )
                    .with_context("key", key));
                }
                Some(fresh) if fresh.checksum != meta.checksum => meta = fresh,
                Some(_) => {
                    same_version_failures += 1;
                    if same_version_failures == 2 {
                        return Err(error);
                    }
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "the value was replaced {PLAIN_META_ATTEMPTS} times while its metadata was read"
            ),
        )
        .with_context("key", key))
    }

    async fn plain_meta_once(&self, key: &Key, meta: &ObjectMeta) -> Result<ObjectMeta> {
        let header = self.header(key, Some(meta.size)).await?;
        let Some(header) = header else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "key removed while its metadata was read",
            )
            .with_context("key", key));
        };
        let len = header.plain()?;
        let trailer = self
            .inner
            .get_range(key, header.sealed - TRAILER_LEN..header.sealed)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    "key removed while its metadata was read",
                )
                .with_context("key", key)
            })?;
        let sealing = Sealing::new(&self.cipher, &header.prefix, key);
        let checksum = sealing
            .open_trailer(segments(len), &trailer)
            .map_err(|e| e.with_context("key", key))?;
        Ok(ObjectMeta {
            size: len,
            checksum,
            ..meta.clone()
        })
    }

    /// The header of `key` (cached), or `None` if absent. `sealed` is the stored length when
    /// the caller has just read it.
    async fn header(&self, key: &Key, sealed: Option<u64>) -> Result<Option<Header>> {
        if let Some(h) = self.headers.get(key)
            && sealed.is_none_or(|s| s == h.sealed)
        {
            return Ok(Some(h));
        }
        let sealed = match sealed {
            Some(s) => s,
            None => match self.inner.head(key).await? {
                Some(meta) => meta.size,
                None => return Ok(None),
            },
        };
        if sealed < HEADER_LEN {
            return Err(
                Error::corrupted(format!("{sealed} bytes: too short to be sealed"))
                    .with_context("key", key),
            );
        }
        let Some(bytes) = self.inner.get_range(key, 0..HEADER_LEN).await? else {
            return Ok(None);
        };
        let prefix = parse_header(&bytes).map_err(|e| e.with_context("key", key))?;
        let header = Header { sealed, prefix };
        self.headers.insert(key.clone(), header);
        Ok(Some(header))
    }

    /// The plaintext bytes `range` of `key`, reading only the covering segments, with one
    /// header. `None` if the key is absent.
    async fn read_range(&self, key: &Key, header: Header, range: Range<u64>) -> Result<Bytes> {
        let len = header.plain()?;
        check_range(&range, len)?;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let (first, _, sealed_range) = covering(&header, &range);
        let sealed = self
            .inner
            .get_range(key, sealed_range)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "key removed while it was read"))?;
        let sealing = Sealing::new(&self.cipher, &header.prefix, key);
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (i, segment) in sealed.chunks(SEALED_SEGMENT as usize).enumerate() {
            let position = first + i as u64;
            let plain = sealing.open(position, false, segment)?;
            out.extend_from_slice(trim(&plain, position, &range));
        }
        Ok(out.freeze())
    }

    /// Range read with one retry on a fresh header: a cached header of a value replaced
    /// since fails to authenticate or points past the end.
    async fn get_range_checked(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        let Some(header) = self.header(key, None).await? else {
            return Ok(None);
        };
        match self.read_range(key, header, range.clone()).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Corrupted | ErrorKind::InvalidInput | ErrorKind::Unavailable
                ) =>
            {
                self.headers.invalidate(key);
                let Some(fresh) = self.header(key, None).await? else {
                    return Ok(None);
                };
                if fresh == header {
                    return Err(e.with_context("key", key));
                }
                self.read_range(key, fresh, range)
                    .await
                    .map(Some)
                    .map_err(|e| e.with_context("key", key))
            }
            Err(e) => Err(e.with_context("key", key)),
        }
    }
}

/// Appends pieces of `body` to `buf` until it holds `want` bytes.
async fn fill(
    buf: &mut BytesMut,
    body: &mut BoxStream<'_, Result<Bytes>>,
    want: usize,
) -> Result<()> {
    while buf.len() < want {
        match body.next().await {
            Some(piece) => buf.extend_from_slice(&piece?),
            None => return Err(Error::corrupted("sealed value ended early")),
        }
    }
    Ok(())
}

hybridstore_core::kv_store_impl! {
    impl[] KvStore for EncryptedStore;
    forward(inner): [delete, exists, list_keys, clear];
    provided: [put, get_many, stats];
    {
        fn capabilities(&self) -> Capabilities {
            let inner = self.inner.capabilities();
            // The largest plaintext whose sealed form fits the store's limit.
            let max = inner.max_value_len.map(|m| {
                let body = m.saturating_sub(HEADER_LEN + TRAILER_LEN);
                body.saturating_sub(TAG_LEN * body.div_ceil(SEALED_SEGMENT))
            });
            inner.with_max_value_len(max)
        }

        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            let Some(sealed) = self.inner.get(key).await? else {
                return Ok(None);
            };
            Ok(Some(self.open_async(key, sealed).await?.0))
        }

        async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
            let Some(meta) = self.inner.head(key).await? else {
                return Ok(None);
            };
            self.plain_meta(key, meta).await.map(Some)
        }

        async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
            let len = value.len() as u64;
            let (sealed, checksum) = self.seal_async(key, value).await?;
            self.headers.invalidate(key);
            let meta = self.inner.put_with(key, sealed, options).await?;
            Ok(ObjectMeta { size: len, checksum, ..meta })
        }

        fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
            self.inner
                .scan(range, limit)
                .and_then(move |e| async move {
                    let (value, checksum) = self.open_async(&e.key, e.value).await?;
                    let meta = ObjectMeta { size: value.len() as u64, checksum, ..e.meta };
                    Ok(Entry { key: e.key, value, meta })
                })
                .boxed()
        }

        fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
            self.inner
                .scan_meta(range, limit)
                .and_then(move |e| async move {
                    let meta = self.plain_meta(&e.key, e.meta).await?;
                    Ok(MetaEntry { key: e.key, meta })
                })
                .boxed()
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            let mut sealed = WriteBatch::new();
            for op in batch.ops().iter().cloned() {
                match op {
                    BatchOp::Put { key, value, options } => {
                        let (value, _) = self.seal_async(&key, value).await?;
                        self.headers.invalidate(&key);
                        sealed.put_with(key, value, options);
                    }
                    BatchOp::Delete { key } => {
                        self.headers.invalidate(&key);
                        sealed.delete(key);
                    }
                    BatchOp::Check { key, expect: Expect::Checksum(want) } => {
                        // Compare the plaintext checksum here, and pin the stored value
                        // below, so a write between the two fails the batch.
                        let current = match self.inner.head(&key).await? {
                            Some(meta) => Some(self.plain_meta_pinned(&key, meta).await?),
                            None => None,
                        };
                        match current {
                            Some((plain, stored)) if plain.checksum == want => {
                                sealed.expect(key, Expect::Checksum(stored.checksum));
                            }
                            _ => {
                                return Err(conflict(
                                    &key,
                                    &Expect::Checksum(want),
                                ));
                            }
                        }
                    }
                    BatchOp::Check { key, expect } => {
                        sealed.expect(key, expect);
                    }
                }
            }
            self.inner.write_batch(sealed).await
        }

        async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
            self.get_range_checked(key, range).await
        }

        async fn get_stream(
            &self,
            key: &Key,
            range: Option<Range<u64>>,
        ) -> Result<Option<ValueStream<'_>>> {
            match range {
                None => self.stream_whole(key).await,
                Some(range) => self.stream_range(key, range).await,
            }
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.put_stream_sealed(key, reader, options).await
        }
    }
}

impl EncryptedStore {
    async fn stream_whole(&self, key: &Key) -> Result<Option<ValueStream<'_>>> {
        let Some(stream) = self.inner.get_stream(key, None).await? else {
            return Ok(None);
        };
        let len = plain_len(stream.len).map_err(|e| e.with_context("key", key))?;
        let (cipher, key) = (self.cipher.clone(), key.clone());
        let mut inner = stream.body;
        let body = async_stream::try_stream! {
            let mut buf = BytesMut::new();
            fill(&mut buf, &mut inner, HEADER_LEN as usize).await?;
            let prefix = parse_header(&buf.split_to(HEADER_LEN as usize))?;
            let sealing = Sealing::new(&cipher, &prefix, &key);
            let mut hasher = Sha256::new();
            let k = segments(len);
            for position in 0..k {
                let want = sealed_segment_len(len, position);
                fill(&mut buf, &mut inner, want).await?;
                let plain = sealing.open(position, false, &buf.split_to(want)).map_err(|e| e.with_context("key", &key))?;
                hasher.update(&plain);
                yield Bytes::from(plain);
            }
            fill(&mut buf, &mut inner, TRAILER_LEN as usize).await?;
            let digest = sealing.open_trailer(k, &buf.split_to(TRAILER_LEN as usize)).map_err(|e| e.with_context("key", &key))?;
            if Sha256Digest(hasher.finalize().into()) != digest {
                Err(Error::corrupted("plaintext does not match its sealed SHA-256").with_context("key", &key))?;
            }
        };
        Ok(Some(ValueStream {
            len,
            body: body.boxed(),
        }))
    }

    async fn stream_range(&self, key: &Key, range: Range<u64>) -> Result<Option<ValueStream<'_>>> {
        let Some(header) = self.header(key, None).await? else {
            return Ok(None);
        };
        let len = header.plain().map_err(|e| e.with_context("key", key))?;
        check_range(&range, len)?;
        if range.is_empty() {
            return Ok(Some(ValueStream::once(Bytes::new())));
        }
        let (first, last, sealed_range) = covering(&header, &range);
        let Some(stream) = self.inner.get_stream(key, Some(sealed_range)).await? else {
            return Ok(None);
        };
        let sealing = Sealing::new(&self.cipher, &header.prefix, key);
        let key = key.clone();
        let mut inner = stream.body;
        let wanted = range.end - range.start;
        let body = async_stream::try_stream! {
            let mut buf = BytesMut::new();
            for position in first..=last {
                let want = sealed_segment_len(len, position);
                fill(&mut buf, &mut inner, want).await?;
                let plain = sealing.open(position, false, &buf.split_to(want)).map_err(|e| e.with_context("key", &key))?;
                yield Bytes::copy_from_slice(trim(&plain, position, &range));
            }
        };
        Ok(Some(ValueStream {
            len: wanted,
            body: body.boxed(),
        }))
    }

    async fn put_stream_sealed(
        &self,
        key: &Key,
        reader: ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        let prefix: [u8; PREFIX_LEN] = rand::random();
        let sealing = Sealing::new(&self.cipher, &prefix, key);
        let done: Arc<Mutex<Option<(u64, Sha256Digest)>>> = Arc::default();
        let result = done.clone();
        let sealed = async_stream::try_stream! {
            let mut header = BytesMut::from(&MAGIC[..]);
            header.extend_from_slice(&prefix);
            yield header.freeze();
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            let mut position = 0u64;
            let mut buf = vec![0u8; SEGMENT_LEN];
            loop {
                let mut filled = 0;
                while filled < SEGMENT_LEN {
                    let n = reader.read(&mut buf[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                hasher.update(&buf[..filled]);
                total += filled as u64;
                yield Bytes::from(sealing.seal(position, false, &buf[..filled]).map_err(std::io::Error::other)?);
                position += 1;
                if filled < SEGMENT_LEN {
                    break;
                }
            }
            let digest = Sha256Digest(hasher.finalize().into());
            yield Bytes::from(sealing.trailer(position, &digest).map_err(std::io::Error::other)?);
            if let Ok(mut slot) = result.lock() {
                *slot = Some((total, digest));
            }
        };
        let sealed: BoxStream<'_, std::io::Result<Bytes>> = sealed.boxed();
        let mut sealed_reader = tokio_util::io::StreamReader::new(sealed);
        self.headers.invalidate(key);
        let meta = self
            .inner
            .put_stream(key, &mut sealed_reader, options)
            .await?;
        let finished = done.lock().ok().and_then(|slot| *slot);
        let Some((size, checksum)) = finished else {
            return Err(
                Error::backend("the store finished before the sealed stream ended")
                    .with_context("key", key),
            );
        };
        Ok(ObjectMeta {
            size,
            checksum,
            ..meta
        })
    }
}
