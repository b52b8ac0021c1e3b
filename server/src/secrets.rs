//! Key material and the cryptography applied to stored secrets.
//!
//! One 32-byte master key (`secret_key`, or a generated key file beside a SQLite
//! database) is stretched with HKDF-SHA256 into independent subkeys:
//!
//! - an XChaCha20-Poly1305 key that encrypts authenticator secrets at rest, bound to
//!   the owning user through the associated data;
//! - an HMAC-SHA256 key for hashes of emailed/texted one-time codes, so a stolen table
//!   of six-digit codes cannot be brute-forced offline;
//! - an HMAC-SHA256 key that signs remember-browser tokens;
//! - an XChaCha20-Poly1305 key that seals values handed out and taken back whole (an
//!   authorization code carries its grant sealed instead of a row written for it), so
//!   a sealed value is never readable with, or confused for, a stored secret.
//!
//! Keys rotate: `previous_secret_keys` keeps older master keys readable. Everything
//! written names the key it was written under (a short id derived from that key), so
//! reading never guesses: ciphertexts are `v2:<key id>:…`, code hashes `<key id>:…`,
//! signed tokens end in `.<key id>~<signature>`. Values from before key ids (`v1:`,
//! bare hashes and signatures) are tried under every configured key. New values are
//! always written under the current key; `twofold rotate-secrets` rewrites the stored
//! ciphertexts (see `rotation`).
//!
//! Nothing here may log, print or put into an error message the master key, a subkey,
//! a plaintext secret, a code or a token; `Keys` redacts itself in `Debug`.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::Config;

/// Length of the master key and of every subkey.
pub const KEY_LEN: usize = 32;
/// Name of the generated key file, kept in the folder of the SQLite database.
pub const KEY_FILE_NAME: &str = "secret.key";

/// Prefix of the current ciphertext format; a later format gets a new prefix so old
/// rows stay readable during a migration.
const CIPHERTEXT_V1: &str = "v1:";
/// Ciphertexts that name their key: `v2:<key id>:<base64url>`.
const CIPHERTEXT_V2: &str = "v2:";
/// Separates the key id from the signature in the last segment of a signed token.
/// Not in the base64url alphabet, so a signature without it is one from before key ids.
const SIGNATURE_KEY_SEPARATOR: char = '~';
const NONCE_LEN: usize = 24;
/// Poly1305 tag length: a stored value shorter than nonce + tag cannot be genuine.
const TAG_LEN: usize = 16;

// HKDF info labels. Distinct labels make the subkeys independent: knowing one (say,
// through a bug that leaks the signing key) reveals nothing about the others.
const INFO_ENCRYPTION: &[u8] = b"twofold/v1/secret-encryption";
const INFO_CODE_HASH: &[u8] = b"twofold/v1/code-hash";
const INFO_REMEMBER: &[u8] = b"twofold/v1/remember-browser-signature";
const INFO_KEY_ID: &[u8] = b"twofold/v1/key-id";
const INFO_SEAL: &[u8] = b"twofold/v1/sealed-value";
/// Bytes of the key id (shown as hex): enough to tell a handful of keys apart, and
/// an HKDF output, so it reveals nothing about the key.
const KEY_ID_LEN: usize = 4;
/// The purpose [`Keys::step_tag`] hashes under, which no one-time code's hash uses.
const STEP_TAG_PURPOSE: &str = "sign-in-step";
/// The bytes of a [`Keys::step_tag`]. A guess is a code, not a tag (making a tag needs
/// the key), so a tag only has to keep a wrong code's tags from matching a stored one
/// by chance: one in 2^64 for each of the three steps tried, against one in 10^6 for
/// guessing the code. Short, since a pending sign-in stores one for each step of its
/// life and every byte of its row is written again when it completes.
pub const STEP_TAG_BYTES: usize = 8;

/// Operators paste keys from `openssl rand -base64 32` (standard, padded) or from
/// URL-safe tools that drop the padding; both are accepted.
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Why a stored secret could not be decrypted. Deliberately coarse: the caller treats
/// both as "this factor is unusable" and must not tell a client which one happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// Not a value this code ever wrote (unknown prefix, bad base64, too short).
    #[error("the stored secret is not in a known format")]
    Malformed,
    /// Authentication failed: wrong key, wrong user (associated data) or tampering.
    #[error("the stored secret does not decrypt with this key for this owner")]
    Rejected,
    /// Written under a key that is neither `secret_key` nor in `previous_secret_keys`.
    #[error("the stored secret was encrypted under a key that is not configured")]
    UnknownKey,
}

/// The subkeys derived from one master key, and the id that names it.
struct KeySet {
    id: String,
    encryption: Zeroizing<[u8; KEY_LEN]>,
    code_hash: Zeroizing<[u8; KEY_LEN]>,
    remember: Zeroizing<[u8; KEY_LEN]>,
    seal: Zeroizing<[u8; KEY_LEN]>,
}

/// The current key and the previous ones still accepted for reading. Cheap to clone;
/// wiped from memory when the last clone drops.
#[derive(Clone)]
pub struct Keys {
    /// The current key first, then `previous_secret_keys` in the configured order.
    sets: Arc<[KeySet]>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys { <redacted> }")
    }
}

impl Keys {
    /// Finds the master key: `secret_key` when set; otherwise, for SQLite, the key file
    /// beside the database (created on first start); PostgreSQL requires `secret_key`
    /// because several nodes may share the database and each must hold the same key.
    /// `previous_secret_keys` are added for reading.
    pub fn from_config(config: &Config) -> anyhow::Result<Keys> {
        let current = Self::current_from_config(config)?;
        let mut previous = Vec::with_capacity(config.previous_secret_keys.len());
        for (i, encoded) in config.previous_secret_keys.iter().enumerate() {
            let master =
                decode_master(encoded.expose_secret()).with_context(|| format!("previous_secret_keys[{i}]"))?;
            previous.push(*master);
        }
        current.with_previous(&previous)
    }

    fn current_from_config(config: &Config) -> anyhow::Result<Keys> {
        if let Some(secret) = &config.secret_key {
            return Self::from_base64(secret.expose_secret()).context("secret_key");
        }
        if !config.database_url.starts_with("sqlite:") {
            anyhow::bail!("secret_key is required with PostgreSQL (every node must share it)");
        }
        match key_file_path(&config.database_url) {
            Some(path) => Self::from_key_file(&path),
            None => {
                // An in-memory database disappears with the process, and so does
                // everything encrypted under this key; writing a key file would only
                // litter the working directory.
                let mut master = Zeroizing::new([0u8; KEY_LEN]);
                rand::rng().fill_bytes(master.as_mut());
                Ok(Self::from_bytes(*master))
            }
        }
    }

    /// Derives the subkeys from a master key. Used directly by tests.
    pub fn from_bytes(master: [u8; KEY_LEN]) -> Keys {
        Keys { sets: Arc::new([KeySet::derive(master)]) }
    }

    /// These keys, with `previous` master keys accepted for reading. Refuses a key
    /// listed twice (or the current key among the previous ones): that is a mistake in
    /// the configuration, and the ids would be ambiguous.
    pub fn with_previous(&self, previous: &[[u8; KEY_LEN]]) -> anyhow::Result<Keys> {
        let current = self.current();
        let mut sets = vec![KeySet {
            id: current.id.clone(),
            encryption: current.encryption.clone(),
            code_hash: current.code_hash.clone(),
            remember: current.remember.clone(),
            seal: current.seal.clone(),
        }];
        for master in previous {
            let set = KeySet::derive(*master);
            if sets.iter().any(|s| s.id == set.id) {
                anyhow::bail!("previous_secret_keys lists key {} twice (or repeats secret_key)", set.id);
            }
            sets.push(set);
        }
        Ok(Keys { sets: sets.into() })
    }

    /// Decodes a base64 master key (standard or URL-safe alphabet, padded or not).
    /// Error messages give the decoded length at most, never the value.
    pub fn from_base64(encoded: &str) -> anyhow::Result<Keys> {
        Ok(Self::from_bytes(*decode_master(encoded)?))
    }

    fn current(&self) -> &KeySet {
        // `sets` is built with the current key first and never empty.
        &self.sets[0]
    }

    fn by_id(&self, id: &str) -> Option<&KeySet> {
        self.sets.iter().find(|s| s.id == id)
    }

    /// The id of the key new values are written under (public: it names the key, it
    /// does not reveal it).
    pub fn current_id(&self) -> &str {
        &self.current().id
    }

    /// The ids of the previous keys still accepted for reading.
    pub fn previous_ids(&self) -> impl Iterator<Item = &str> {
        self.sets.iter().skip(1).map(|s| s.id.as_str())
    }

    /// Reads the key file, or creates it with a fresh random key (owner-only
    /// permissions) when it does not exist yet.
    pub fn from_key_file(path: &Path) -> anyhow::Result<Keys> {
        match std::fs::read_to_string(path) {
            Ok(contents) => {
                let contents = Zeroizing::new(contents);
                warn_if_readable_by_others(path);
                Self::from_base64(&contents).with_context(|| format!("key file {}", path.display()))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Self::create_key_file(path),
            Err(e) => Err(e).with_context(|| format!("cannot read key file {}", path.display())),
        }
    }

    fn create_key_file(path: &Path) -> anyhow::Result<Keys> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create folder {}", parent.display()))?;
        }
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(master.as_mut());
        let encoded =
            Zeroizing::new(format!("{}\n", base64::engine::general_purpose::STANDARD.encode(master.as_ref())));

        let mut options = std::fs::OpenOptions::new();
        // create_new: if another process created the file in the meantime, its key wins
        // (read below) instead of two processes running with different keys.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Self::from_key_file(path),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create key file {}", path.display()));
            }
        };
        file.write_all(encoded.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write key file {}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            "generated a new secret key file; production deployments should set TWOFOLD_SECRET_KEY \
             (and back it up: losing the key makes every enrolled authenticator unusable)"
        );
        Ok(Self::from_bytes(*master))
    }

    /// Encrypts `plaintext` for the owner named by `aad` (the user id) under the
    /// current key. The result is `v2:<key id>:` + base64url(nonce || ciphertext || tag)
    /// and is safe to store.
    pub fn encrypt_secret(&self, plaintext: &[u8], aad: &str) -> String {
        let key = self.current();
        format!("{CIPHERTEXT_V2}{}:{}", key.id, seal_blob(&key.encryption, plaintext, aad))
    }

    /// Seals `plaintext` for `purpose` under the current key, for a value that is handed
    /// out and must come back unaltered: `<key id>.<base64url(nonce || ciphertext ||
    /// tag)>`, URL-safe. Only [`Keys::open`] with the same purpose reads it.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let key = self.current();
        format!("{}.{}", key.id, seal_blob(&key.seal, plaintext, purpose))
    }

    /// Reverses [`Keys::seal`] under whichever configured key sealed it. Fails for a
    /// value altered in any byte, sealed for another purpose, or under a key no longer
    /// configured.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let (id, encoded) = sealed.split_once('.').ok_or(DecryptError::Malformed)?;
        let key = self.by_id(id).ok_or(DecryptError::UnknownKey)?;
        open_blob(&key.seal, encoded, purpose)
    }

    /// Reverses [`Keys::encrypt_secret`]. Fails when the value was tampered with,
    /// encrypted under a key not configured, or encrypted for another owner (`aad`).
    pub fn decrypt_secret(&self, stored: &str, aad: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if let Some(rest) = stored.strip_prefix(CIPHERTEXT_V2) {
            let (id, encoded) = rest.split_once(':').ok_or(DecryptError::Malformed)?;
            let key = self.by_id(id).ok_or(DecryptError::UnknownKey)?;
            return open_blob(&key.encryption, encoded, aad);
        }
        let encoded = stored.strip_prefix(CIPHERTEXT_V1).ok_or(DecryptError::Malformed)?;
        // Written before ciphertexts named their key: any configured key may own it.
        let mut outcome = Err(DecryptError::Rejected);
        for key in self.sets.iter() {
            outcome = open_blob(&key.encryption, encoded, aad);
            if !matches!(outcome, Err(DecryptError::Rejected)) {
                break;
            }
        }
        outcome
    }

    /// Whether `stored` is a ciphertext under the current key (and needs no rewrite).
    pub fn is_current_ciphertext(&self, stored: &str) -> bool {
        stored
            .strip_prefix(CIPHERTEXT_V2)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current().id)
    }

    /// The same secret encrypted under the current key, or `None` when it already is.
    pub fn reencrypt_secret(&self, stored: &str, aad: &str) -> Result<Option<String>, DecryptError> {
        if self.is_current_ciphertext(stored) {
            return Ok(None);
        }
        let plain = self.decrypt_secret(stored, aad)?;
        Ok(Some(self.encrypt_secret(&plain, aad)))
    }

    /// Keyed hash of a one-time code, lowercase hex. `purpose` (e.g. `"email-signin"`)
    /// and `binding` (e.g. the pending sign-in id) are part of the input, so a hash
    /// issued for one purpose or one sign-in never verifies for another.
    /// The result is `<key id>:<hex>`.
    pub fn code_hash(&self, purpose: &str, binding: &str, code: &str) -> String {
        let key = self.current();
        format!("{}:{}", key.id, hex(&code_mac(key, purpose, binding, code)))
    }

    /// Checks `code` against a stored [`Keys::code_hash`] in constant time.
    pub fn verify_code_hash(&self, purpose: &str, binding: &str, code: &str, stored: &str) -> bool {
        let matches = |key: &KeySet, stored_hex: &str| -> bool {
            let expected = hex(&code_mac(key, purpose, binding, code));
            // Lengths are public (always 64); only the contents are compared in
            // constant time.
            expected.as_bytes().ct_eq(stored_hex.as_bytes()).into()
        };
        match stored.split_once(':') {
            Some((id, stored_hex)) => self.by_id(id).is_some_and(|key| matches(key, stored_hex)),
            // A hash from before key ids: every configured key is tried, all of them,
            // so the time does not tell which one matched.
            None => self.sets.iter().fold(false, |found, key| matches(key, stored) | found),
        }
    }

    /// The keyed tag of `code` at time step `step` of the pending sign-in `binding` (its
    /// token hash), under the current key: the first [`STEP_TAG_BYTES`] of
    /// [`Keys::code_hash`]'s HMAC. The password step stores one for each step of the
    /// sign-in's life, and a verification sends those of the typed code, so the
    /// database can tell which step a code matches while holding neither the secret nor
    /// any code (`signin::opened`).
    pub fn step_tag(&self, binding: &str, step: i64, code: &str) -> [u8; STEP_TAG_BYTES] {
        let mac = code_mac(self.current(), STEP_TAG_PURPOSE, &format!("{binding}:{step}"), code);
        let mut tag = [0; STEP_TAG_BYTES];
        tag.copy_from_slice(&mac[..STEP_TAG_BYTES]);
        tag
    }

    /// Whether a stored code hash was made under the current key.
    pub fn is_current_code_hash(&self, stored: &str) -> bool {
        stored.split_once(':').is_some_and(|(id, _)| id == self.current().id)
    }

    /// Appends an HMAC under the current key to `token`:
    /// `token.<key id>~<signature>` (signature in base64url).
    pub fn sign_token(&self, token: &str) -> String {
        let key = self.current();
        let signature = remember_mac(key, token);
        format!("{token}.{}{SIGNATURE_KEY_SEPARATOR}{}", key.id, URL_SAFE_NO_PAD.encode(signature))
    }

    /// Returns the inner token when the signature made by [`Keys::sign_token`] under
    /// any configured key is intact; `None` for anything else.
    pub fn verify_signed_token(&self, signed: &str) -> Option<String> {
        // Neither the key id (hex) nor the signature (base64url) has a '.', so the last
        // '.' separates them from the token even if a token ever contains dots.
        let (token, last) = signed.rsplit_once('.')?;
        let valid = |key: &KeySet, signature: &str| -> bool {
            let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else { return false };
            remember_mac(key, token).as_slice().ct_eq(signature.as_slice()).into()
        };
        let ok = match last.split_once(SIGNATURE_KEY_SEPARATOR) {
            Some((id, signature)) => self.by_id(id).is_some_and(|key| valid(key, signature)),
            // Signed before key ids: every configured key is tried.
            None => self.sets.iter().fold(false, |found, key| valid(key, last) | found),
        };
        ok.then(|| token.to_owned())
    }
}

impl KeySet {
    fn derive(master: [u8; KEY_LEN]) -> KeySet {
        let master = Zeroizing::new(master);
        // No salt: the master key is already uniformly random, which is the case where
        // RFC 5869 says the salt may be omitted.
        let hkdf = Hkdf::<Sha256>::new(None, master.as_ref());
        let derive = |info: &[u8]| {
            let mut out = Zeroizing::new([0u8; KEY_LEN]);
            if hkdf.expand(info, out.as_mut()).is_err() {
                // HKDF-SHA256 can produce up to 8160 bytes; 32 always fits.
                unreachable!("HKDF-SHA256 output of 32 bytes is always valid");
            }
            out
        };
        let id = derive(INFO_KEY_ID);
        KeySet {
            id: hex(&id[..KEY_ID_LEN]),
            encryption: derive(INFO_ENCRYPTION),
            code_hash: derive(INFO_CODE_HASH),
            remember: derive(INFO_REMEMBER),
            seal: derive(INFO_SEAL),
        }
    }
}

fn open_blob(key: &[u8; KEY_LEN], encoded: &str, aad: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let blob = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| DecryptError::Malformed)?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(DecryptError::Malformed);
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DecryptError::Malformed)?;
    xchacha_open(key, &nonce, aad.as_bytes(), ciphertext).ok_or(DecryptError::Rejected)
}

fn seal_blob(key: &[u8; KEY_LEN], plaintext: &[u8], aad: &str) -> String {
    // 192-bit random nonces: collisions are negligible even for billions of
    // encryptions under one key, so no counter has to be kept across nodes.
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    URL_SAFE_NO_PAD.encode(xchacha_seal(key, &nonce, aad.as_bytes(), plaintext))
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03): HChaCha20 turns the key and the
/// nonce's first 16 bytes into a key for this message alone, and ChaCha20-Poly1305
/// (RFC 8439) encrypts under it with four zero bytes and the nonce's last 8 as its
/// nonce. The AEAD is aws-lc's: RustCrypto's `XChaCha20Poly1305` took 2.1 µs to seal an
/// authorization code (550 bytes), this 0.5 µs, and sealing was a tenth of the work of
/// an authorization request. The bytes are the same (a test checks both ways). The
/// result is `nonce || ciphertext || tag`, sealed in place behind the nonce.
fn xchacha_seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let (sealer, inner) = xchacha_key(key, nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    let Ok(tag) = sealer.seal_in_place_separate_tag(inner, Aad::from(aad), &mut out[NONCE_LEN..]) else {
        // aws-lc refuses only messages over 256 GiB.
        unreachable!("ChaCha20-Poly1305 sealing of a small value cannot fail");
    };
    out.extend_from_slice(tag.as_ref());
    out
}

/// Reverses [`xchacha_seal`]; `None` when the tag does not verify.
fn xchacha_open(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (opener, inner) = xchacha_key(key, nonce);
    let mut buf = Zeroizing::new(sealed.to_vec());
    let plain_len = opener.open_in_place(inner, Aad::from(aad), &mut buf).ok()?.len();
    buf.truncate(plain_len);
    Some(buf)
}

/// The ChaCha20-Poly1305 key and nonce of one XChaCha20-Poly1305 message.
fn xchacha_key(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    let (head, tail) = nonce.split_at(16);
    let mut subkey = chacha20::hchacha::<chacha20::cipher::consts::U10>(key.into(), head.into());
    let Ok(unbound) = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice()) else {
        unreachable!("a 32-byte key is what ChaCha20-Poly1305 takes");
    };
    zeroize::Zeroize::zeroize(subkey.as_mut_slice());
    let mut inner = [0u8; 12];
    inner[4..].copy_from_slice(tail);
    (LessSafeKey::new(unbound), Nonce::assume_unique_for_key(inner))
}

fn code_mac(key: &KeySet, purpose: &str, binding: &str, code: &str) -> [u8; 32] {
    let mut mac = hmac_with(&key.code_hash);
    // Each field is preceded by its length, so no choice of field contents can make two
    // different (purpose, binding, code) triples feed the same bytes.
    for field in [purpose, binding, code] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

fn remember_mac(key: &KeySet, token: &str) -> [u8; 32] {
    let mut mac = hmac_with(&key.remember);
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Decodes a base64 master key (standard or URL-safe alphabet, padded or not).
/// Error messages give the decoded length at most, never the value.
fn decode_master(encoded: &str) -> anyhow::Result<Zeroizing<[u8; KEY_LEN]>> {
    let encoded = encoded.trim();
    let decoded = STANDARD_ANY_PAD
        .decode(encoded)
        .or_else(|_| URL_SAFE_ANY_PAD.decode(encoded))
        .map(Zeroizing::new)
        // The decoder's own error names the offending character; it is dropped so that
        // no part of the key reaches a log.
        .map_err(|_| {
            anyhow::anyhow!("the key must be {KEY_LEN} random bytes encoded as base64; it is not valid base64")
        })?;
    let master: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "the key must be {KEY_LEN} random bytes encoded as base64; it decodes to {} bytes \
                 (generate one with `openssl rand -base64 32`)",
            decoded.len()
        )
    })?;
    Ok(Zeroizing::new(master))
}

fn hmac_with(key: &[u8; KEY_LEN]) -> HmacSha256 {
    let Ok(mac) = <HmacSha256 as Mac>::new_from_slice(key) else {
        // HMAC accepts keys of any length.
        unreachable!("HMAC-SHA256 accepts a 32-byte key");
    };
    mac
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Where the key file lives for a SQLite URL: `secret.key` in the database's folder.
/// `None` for an in-memory database.
pub fn key_file_path(database_url: &str) -> Option<PathBuf> {
    // Same parsing as `db::Db::connect`, so the key file sits beside the file that is
    // actually opened.
    let path = database_url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory") {
        return None;
    }
    let parent = Path::new(path).parent().unwrap_or(Path::new(""));
    Some(parent.join(KEY_FILE_NAME))
}

/// A key file others can read defeats encryption at rest; say so, but keep running
/// (the operator may have good reasons, e.g. a group-owned service account).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the secret key file is accessible to other users; restrict it with chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    #[test]
    fn xchacha_is_byte_for_byte_the_independent_implementation() {
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 550, 4096] {
            let key = [u8::try_from(len % 251).unwrap(); KEY_LEN];
            let mut nonce = [0u8; NONCE_LEN];
            rand::rng().fill_bytes(&mut nonce);
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let reference = XChaCha20Poly1305::new(&key.into());
            let theirs = reference.encrypt(&XNonce::from(nonce), Payload { msg: &plain, aad: b"owner" }).unwrap();
            let ours = xchacha_seal(&key, &nonce, b"owner", &plain);
            assert_eq!((&ours[..NONCE_LEN], &ours[NONCE_LEN..]), (&nonce[..], &theirs[..]), "length {len}");
            assert_eq!(xchacha_open(&key, &nonce, b"owner", &theirs).unwrap().as_slice(), plain.as_slice());
            assert!(xchacha_open(&key, &nonce, b"other", &theirs).is_none());
            let mut flipped = theirs.clone();
            flipped[len / 2] ^= 1;
            assert!(xchacha_open(&key, &nonce, b"owner", &flipped).is_none());
        }
    }
    use secrecy::SecretString;

    fn keys() -> Keys {
        Keys::from_bytes([7u8; 32])
    }

    #[test]
    fn debug_is_redacted() {
        let shown = format!("{:?}", keys());
        assert_eq!(shown, "Keys { <redacted> }");
    }

    #[test]
    fn subkeys_are_distinct() {
        let k = keys();
        assert_ne!(*k.current().encryption, *k.current().code_hash);
        assert_ne!(*k.current().encryption, *k.current().remember);
        assert_ne!(*k.current().code_hash, *k.current().remember);
        assert_ne!(*k.current().seal, *k.current().encryption);
        assert_ne!(*k.current().seal, *k.current().remember);
        assert_ne!(*k.current().encryption, [7u8; 32]);
    }

    #[test]
    fn a_sealed_value_opens_only_unaltered_for_its_purpose_and_under_a_configured_key() {
        let k = keys();
        let sealed = k.seal("authorization-code", b"grant");
        assert!(sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'), "{sealed}");
        assert_eq!(k.open("authorization-code", &sealed).as_deref().map(|v| v.as_slice()), Ok(&b"grant"[..]));
        assert_ne!(sealed, k.seal("authorization-code", b"grant"), "a fresh nonce each time");
        assert_eq!(k.open("other-purpose", &sealed), Err(DecryptError::Rejected));
        // Every single character changed is refused, never read as another value.
        let last = sealed.len() - 1;
        for at in [sealed.find('.').unwrap_or(0) + 1, sealed.len() / 2, last] {
            let mut altered = sealed.clone().into_bytes();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(k.open("authorization-code", &altered).is_err(), "altered at {at}");
        }
        assert_eq!(k.open("authorization-code", "no-dot"), Err(DecryptError::Malformed));
        // Not the stored-secret key: a sealed value is no ciphertext of a secret.
        let body = sealed.split_once('.').unwrap().1;
        assert!(k.decrypt_secret(&format!("v2:{}:{body}", k.current_id()), "authorization-code").is_err());
        // Readable after a rotation while the old key stays listed, then no longer.
        let rotated = Keys::from_bytes([9u8; 32]).with_previous(&[[7u8; 32]]).unwrap();
        assert!(rotated.open("authorization-code", &sealed).is_ok());
        assert_eq!(Keys::from_bytes([9u8; 32]).open("authorization-code", &sealed), Err(DecryptError::UnknownKey));
    }

    #[test]
    fn encryption_round_trips() {
        let k = keys();
        let stored = k.encrypt_secret(b"12345678901234567890", "user-1");
        assert!(stored.starts_with(&format!("v2:{}:", k.current_id())));
        assert!(!stored.contains("12345678901234567890"));
        let plain = k.decrypt_secret(&stored, "user-1").unwrap();
        assert_eq!(plain.as_slice(), b"12345678901234567890");
        // Empty plaintexts work too.
        let stored = k.encrypt_secret(b"", "u");
        assert_eq!(k.decrypt_secret(&stored, "u").unwrap().as_slice(), b"");
    }

    #[test]
    fn nonces_differ_between_encryptions() {
        let k = keys();
        assert_ne!(k.encrypt_secret(b"same", "u"), k.encrypt_secret(b"same", "u"));
    }

    #[test]
    fn wrong_aad_fails() {
        let k = keys();
        let stored = k.encrypt_secret(b"secret", "user-1");
        assert_eq!(k.decrypt_secret(&stored, "user-2").unwrap_err(), DecryptError::Rejected);
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let k = keys();
        let stored = k.encrypt_secret(b"secret", "user-1");
        let prefix = format!("v2:{}:", k.current_id());
        let mut blob = URL_SAFE_NO_PAD.decode(&stored[prefix.len()..]).unwrap();
        for i in 0..blob.len() {
            blob[i] ^= 1;
            let tampered = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&blob));
            assert_eq!(k.decrypt_secret(&tampered, "user-1").unwrap_err(), DecryptError::Rejected, "flip at byte {i}");
            blob[i] ^= 1;
        }
        // Truncated, unprefixed and non-base64 values are malformed.
        assert_eq!(k.decrypt_secret("v1:AAAA", "user-1").unwrap_err(), DecryptError::Malformed);
        assert_eq!(k.decrypt_secret(&stored[prefix.len()..], "user-1").unwrap_err(), DecryptError::Malformed);
        assert_eq!(k.decrypt_secret(&format!("{prefix}AAAA"), "user-1").unwrap_err(), DecryptError::Malformed);
        assert_eq!(k.decrypt_secret("v2:nocolon", "user-1").unwrap_err(), DecryptError::Malformed);
        assert_eq!(k.decrypt_secret("v1:!!!", "user-1").unwrap_err(), DecryptError::Malformed);
        assert_eq!(k.decrypt_secret("v2:AAAA", "user-1").unwrap_err(), DecryptError::Malformed);
    }

    #[test]
    fn wrong_key_fails() {
        let stored = keys().encrypt_secret(b"secret", "user-1");
        let other = Keys::from_bytes([8u8; 32]);
        assert_eq!(other.decrypt_secret(&stored, "user-1").unwrap_err(), DecryptError::UnknownKey);
    }

    #[test]
    fn code_hash_is_bound_to_purpose_binding_and_key() {
        let k = keys();
        let h = k.code_hash("email-signin", "pending-1", "123456");
        let (id, digest) = h.split_once(':').unwrap();
        assert_eq!(id, k.current_id());
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(h, k.code_hash("email-signin", "pending-1", "123456"));
        assert_ne!(h, k.code_hash("sms-signin", "pending-1", "123456"));
        assert_ne!(h, k.code_hash("email-signin", "pending-2", "123456"));
        assert_ne!(h, k.code_hash("email-signin", "pending-1", "123457"));
        let other = Keys::from_bytes([8u8; 32]).code_hash("email-signin", "pending-1", "123456");
        assert_ne!(h.split_once(':').unwrap().1, other.split_once(':').unwrap().1);
        // Moving characters between fields changes the hash (no ambiguous joins).
        assert_ne!(k.code_hash("a", "bc", "1"), k.code_hash("ab", "c", "1"));
        assert_ne!(k.code_hash("a", "b1", ""), k.code_hash("a", "b", "1"));
    }

    #[test]
    fn verify_code_hash_accepts_only_the_right_code() {
        let k = keys();
        let h = k.code_hash("email-signin", "pending-1", "123456");
        assert!(k.verify_code_hash("email-signin", "pending-1", "123456", &h));
        assert!(!k.verify_code_hash("email-signin", "pending-1", "654321", &h));
        assert!(!k.verify_code_hash("email-signin", "pending-2", "123456", &h));
        assert!(!k.verify_code_hash("sms-signin", "pending-1", "123456", &h));
        assert!(!k.verify_code_hash("email-signin", "pending-1", "123456", ""));
        assert!(!k.verify_code_hash("email-signin", "pending-1", "123456", &h[..h.len() - 1]));
        // Another key's id in front of the right digest does not verify.
        let foreign = format!("00000000:{}", h.split_once(':').unwrap().1);
        assert!(!k.verify_code_hash("email-signin", "pending-1", "123456", &foreign));
    }

    #[test]
    fn signed_tokens_round_trip_and_reject_tampering() {
        let k = keys();
        let signed = k.sign_token("abc_DEF-123");
        assert!(signed.starts_with(&format!("abc_DEF-123.{}~", k.current_id())));
        assert_eq!(k.verify_signed_token(&signed).as_deref(), Some("abc_DEF-123"));
        // A dotted token still verifies.
        let dotted = k.sign_token("a.b");
        assert_eq!(k.verify_signed_token(&dotted).as_deref(), Some("a.b"));

        // Changed token, changed signature, missing signature, other key.
        assert_eq!(k.verify_signed_token(&signed.replacen("abc", "abd", 1)), None);
        let mut chars: Vec<char> = signed.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        assert_eq!(k.verify_signed_token(&chars.into_iter().collect::<String>()), None);
        assert_eq!(k.verify_signed_token("abc_DEF-123"), None);
        assert_eq!(k.verify_signed_token("abc_DEF-123."), None);
        assert_eq!(k.verify_signed_token(""), None);
        assert_eq!(Keys::from_bytes([8u8; 32]).verify_signed_token(&signed), None);
    }

    /// Values written before key ids existed, made the way the code then made them.
    fn legacy_ciphertext(master: [u8; 32], plaintext: &[u8], aad: &str) -> String {
        let set = KeySet::derive(master);
        let cipher = XChaCha20Poly1305::new(&(*set.encryption).into());
        let nonce = [3u8; NONCE_LEN];
        let ct = cipher.encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: aad.as_bytes() }).unwrap();
        format!("v1:{}", URL_SAFE_NO_PAD.encode([nonce.as_slice(), ct.as_slice()].concat()))
    }

    #[test]
    fn previous_keys_read_what_they_wrote_and_new_writes_use_the_current_key() {
        let old = Keys::from_bytes([1u8; 32]);
        let new = Keys::from_bytes([2u8; 32]).with_previous(&[[1u8; 32]]).unwrap();
        assert_ne!(old.current_id(), new.current_id());
        assert_eq!(new.previous_ids().collect::<Vec<_>>(), [old.current_id()]);

        let stored = old.encrypt_secret(b"totp", "user-1");
        assert!(!new.is_current_ciphertext(&stored));
        assert_eq!(new.decrypt_secret(&stored, "user-1").unwrap().as_slice(), b"totp");
        let rewritten = new.reencrypt_secret(&stored, "user-1").unwrap().unwrap();
        assert!(new.is_current_ciphertext(&rewritten));
        assert_eq!(new.reencrypt_secret(&rewritten, "user-1").unwrap(), None);
        // Once the old key is dropped, only the rewritten value is readable.
        let only_new = Keys::from_bytes([2u8; 32]);
        assert_eq!(only_new.decrypt_secret(&stored, "user-1").unwrap_err(), DecryptError::UnknownKey);
        assert_eq!(only_new.decrypt_secret(&rewritten, "user-1").unwrap().as_slice(), b"totp");
        // The owner binding survives the rewrite.
        assert_eq!(new.reencrypt_secret(&stored, "user-2").unwrap_err(), DecryptError::Rejected);

        let hash = old.code_hash("recovery", "user-1", "abc");
        assert!(new.verify_code_hash("recovery", "user-1", "abc", &hash));
        assert!(!new.is_current_code_hash(&hash));
        assert!(!only_new.verify_code_hash("recovery", "user-1", "abc", &hash));
        assert!(new.is_current_code_hash(&new.code_hash("recovery", "user-1", "abc")));

        let token = old.sign_token("t0k3n");
        assert_eq!(new.verify_signed_token(&token).as_deref(), Some("t0k3n"));
        assert_eq!(only_new.verify_signed_token(&token), None);
        assert!(new.sign_token("t0k3n").contains(&format!(".{}~", new.current_id())));
    }

    #[test]
    fn values_from_before_key_ids_are_read_under_any_configured_key() {
        let keys = Keys::from_bytes([2u8; 32]).with_previous(&[[1u8; 32]]).unwrap();
        let legacy = legacy_ciphertext([1u8; 32], b"old", "user-1");
        assert_eq!(keys.decrypt_secret(&legacy, "user-1").unwrap().as_slice(), b"old");
        assert!(keys.reencrypt_secret(&legacy, "user-1").unwrap().is_some());
        assert_eq!(keys.decrypt_secret(&legacy, "user-2").unwrap_err(), DecryptError::Rejected);
        assert_eq!(Keys::from_bytes([5u8; 32]).decrypt_secret(&legacy, "user-1").unwrap_err(), DecryptError::Rejected);

        let old = KeySet::derive([1u8; 32]);
        let bare_hash = hex(&code_mac(&old, "recovery", "user-1", "abc"));
        assert!(keys.verify_code_hash("recovery", "user-1", "abc", &bare_hash));
        assert!(!keys.verify_code_hash("recovery", "user-1", "abd", &bare_hash));
        let bare_token = format!("tok.{}", URL_SAFE_NO_PAD.encode(remember_mac(&old, "tok")));
        assert_eq!(keys.verify_signed_token(&bare_token).as_deref(), Some("tok"));
        assert_eq!(Keys::from_bytes([5u8; 32]).verify_signed_token(&bare_token), None);
    }

    #[test]
    fn a_key_listed_twice_is_refused() {
        let err = Keys::from_bytes([2u8; 32]).with_previous(&[[1u8; 32], [1u8; 32]]).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(Keys::from_bytes([2u8; 32]).with_previous(&[[2u8; 32]]).is_err());
        let encoded = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let config = Config {
            secret_key: Some(SecretString::from(encoded)),
            previous_secret_keys: vec![SecretString::from("c2hvcnQ=")],
            ..Config::default()
        };
        let err = format!("{:#}", Keys::from_config(&config).unwrap_err());
        assert!(err.contains("previous_secret_keys[0]") && !err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn base64_keys_in_both_alphabets_with_or_without_padding() {
        // 32 bytes whose encoding uses both '+'/'/' (standard) and '-'/'_' (URL-safe).
        let raw: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(250)).collect();
        let reference = Keys::from_bytes(raw.clone().try_into().unwrap());
        let std_padded = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(std_padded.ends_with('='));
        let variants = [
            std_padded.clone(),
            std_padded.trim_end_matches('=').to_owned(),
            base64::engine::general_purpose::URL_SAFE.encode(&raw),
            URL_SAFE_NO_PAD.encode(&raw),
            format!("  {std_padded}\n"),
        ];
        for v in variants {
            let k = Keys::from_base64(&v).unwrap();
            assert_eq!(*k.current().encryption, *reference.current().encryption, "{v}");
        }
    }

    #[test]
    fn bad_key_lengths_and_encodings_are_rejected_without_echo() {
        let b64 = base64::engine::general_purpose::STANDARD;
        for len in [0usize, 16, 31, 33, 64] {
            let encoded = b64.encode(vec![0xAB; len]);
            let err = format!("{:#}", Keys::from_base64(&encoded).unwrap_err());
            assert!(err.contains(&format!("decodes to {len} bytes")), "{err}");
            if !encoded.is_empty() {
                assert!(!err.contains(&encoded), "{err}");
            }
        }
        let err = format!("{:#}", Keys::from_base64("not*base64*at*all").unwrap_err());
        assert!(err.contains("not valid base64") && !err.contains("not*base64"), "{err}");

        let config = Config { secret_key: Some(SecretString::from("c2hvcnQ=")), ..Config::default() };
        let err = format!("{:#}", Keys::from_config(&config).unwrap_err());
        assert!(err.contains("secret_key") && !err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn configured_key_is_used() {
        let encoded = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let config = Config {
            secret_key: Some(SecretString::from(encoded)),
            database_url: "postgres://localhost/twofold".into(),
            ..Config::default()
        };
        let k = Keys::from_config(&config).unwrap();
        let stored = k.encrypt_secret(b"x", "u");
        assert_eq!(Keys::from_bytes([9u8; 32]).decrypt_secret(&stored, "u").unwrap().as_slice(), b"x");
    }

    #[test]
    fn postgres_without_key_is_refused() {
        let config = Config { database_url: "postgres://localhost/twofold".into(), ..Config::default() };
        let err = Keys::from_config(&config).unwrap_err().to_string();
        assert_eq!(err, "secret_key is required with PostgreSQL (every node must share it)");
    }

    #[test]
    fn key_file_path_follows_the_database() {
        assert_eq!(key_file_path("sqlite://data/twofold.db"), Some(PathBuf::from("data/secret.key")));
        assert_eq!(key_file_path("sqlite:data/twofold.db?mode=rwc"), Some(PathBuf::from("data/secret.key")));
        assert_eq!(key_file_path("sqlite:///var/lib/tf/db.sqlite"), Some(PathBuf::from("/var/lib/tf/secret.key")));
        assert_eq!(key_file_path("sqlite://twofold.db"), Some(PathBuf::from("secret.key")));
        assert_eq!(key_file_path("sqlite::memory:"), None);
        assert_eq!(key_file_path("sqlite://file.db?mode=memory&cache=shared"), None);
    }

    #[test]
    fn in_memory_sqlite_gets_an_ephemeral_key() {
        let config = Config { database_url: "sqlite::memory:".into(), ..Config::default() };
        let a = Keys::from_config(&config).unwrap();
        let b = Keys::from_config(&config).unwrap();
        assert_ne!(*a.current().encryption, *b.current().encryption);
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nested").join("twofold.db");
        let config = Config { database_url: format!("sqlite://{}", db.display()), ..Config::default() };
        let first = Keys::from_config(&config).unwrap();
        let key_file = dir.path().join("nested").join("secret.key");
        assert!(key_file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let contents = std::fs::read_to_string(&key_file).unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(contents.trim()).unwrap().len(), 32);

        let stored = first.encrypt_secret(b"persisted", "user-1");
        let second = Keys::from_config(&config).unwrap();
        assert_eq!(second.decrypt_secret(&stored, "user-1").unwrap().as_slice(), b"persisted");
        assert_eq!(std::fs::read_to_string(&key_file).unwrap(), contents);
    }

    #[test]
    fn corrupt_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("secret.key");
        std::fs::write(&key_file, "dG9vIHNob3J0\n").unwrap();
        let err = format!("{:#}", Keys::from_key_file(&key_file).unwrap_err());
        assert!(err.contains("secret.key") && err.contains("decodes to 9 bytes"), "{err}");
        assert!(!err.contains("dG9v"), "{err}");
    }
}
