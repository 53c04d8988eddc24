//! The kernel key in an HSM, through PKCS#11 (feature `pkcs11`; tested against SoftHSM2).
//!
//! [`Pkcs11Signer`] signs with an Ed25519 private key that never leaves the token
//! (`CKK_EC_EDWARDS`, `CKM_EDDSA` with no parameters: pure Ed25519). It finds the token
//! by label, logs in as the user with a PIN read from an environment variable or a file,
//! and finds the private key and its public key by `CKA_LABEL`.
//!
//! Every signature the token returns is verified against the public key (with the
//! project's Ed25519 rules, [`verify_core::PublicKey::verify`]) before it is handed out:
//! a faulty token or a swapped key gives a [`SignError`], never an invalid record.
//!
//! Sessions: a PKCS#11 session must not be used by two threads at once, so the signer
//! keeps a small pool of sessions (at most [`Pkcs11Config::max_sessions`]), each used by
//! one thread at a time. A lost session (`CKR_SESSION_HANDLE_INVALID`, a removed token,
//! a lost login...) is reopened once per signature, finding the token again by label;
//! if that fails too the signature fails.
//!
//! The module is loaded and `C_Initialize`d once per process and never finalized: two
//! signers on the same module share its state (and its login state per token).
//!
//! ```toml
//! # how a configuration names the key (serde field names of Pkcs11Config)
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "helm"
//! key_label = "kernel-1"
//! pin = { env = "HELM_PKCS11_PIN" }   # or pin = { file = "/etc/helm/pkcs11.pin" }
//! max_sessions = 4                    # optional
//! ```

use core::fmt;
use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use verify_core::PublicKey;

use crate::signer::{RecordSigner, SignError};

/// `CKA_EC_PARAMS` for Ed25519: the DER OID 1.3.101.112 (RFC 8410), which
/// [`Pkcs11Signer::generate_key`] uses.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// `CKA_EC_PARAMS` for Ed25519 in the older form: the PrintableString "edwards25519"
/// (accepted on keys made by other tools; SoftHSM2 accepts both).
const ED25519_PRINTABLE: [u8; 14] = [
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];
/// Longest PIN file read (a PIN is short; anything longer is not a PIN file).
const MAX_PIN_FILE: u64 = 1024;
/// Token labels are 32 bytes, blank padded.
const MAX_TOKEN_LABEL: usize = 32;
/// Signed once when a signer opens, to prove that key and token work before the first
/// record depends on them.
const OPEN_PROBE: &[u8] = b"HELM PKCS#11 signer self-test";

fn default_max_sessions() -> usize {
    4
}

/// Where the PIN comes from: never the configuration text itself.
///
/// In a configuration: `pin = { env = "NAME" }` or `pin = { file = "/path" }`. The
/// `Debug` form shows the variable's name or the file's path, never the PIN.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Pin {
    /// The name of an environment variable holding the PIN.
    Env(String),
    /// A file holding the PIN on one line; it must not be readable or writable by
    /// other users (mode 0600 or 0400).
    File(PathBuf),
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Env(name) => write!(f, "environment variable {name}"),
            Pin::File(path) => write!(f, "PIN file {}", path.display()),
        }
    }
}

impl Pin {
    /// Reads the PIN. One trailing newline (`\n` or `\r\n`) is removed; an empty PIN,
    /// or one with other control characters, is refused.
    fn read(&self) -> Result<Secret, SignError> {
        let mut raw = match self {
            Pin::Env(name) => {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(SignError(format!("PIN: {name:?} is not an environment variable name")));
                }
                std::env::var_os(name)
                    .ok_or_else(|| SignError(format!("PIN: environment variable {name} is not set")))?
                    .into_vec()
            }
            Pin::File(path) => read_pin_file(path)?,
        };
        let secret = Secret::from_bytes(&raw, self);
        wipe(&mut raw);
        secret
    }
}

/// A PIN read from its source: kept (zeroized on drop by `secrecy`) to log in again
/// when sessions are lost, with its salted digest to compare logins by.
struct Secret {
    pin: AuthPin,
    digest: [u8; 32],
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The PIN in `raw` (read from `source`): UTF-8, one trailing line break removed,
    /// not empty, no control characters.
    fn from_bytes(raw: &[u8], source: &Pin) -> Result<Secret, SignError> {
        let bad = |why: &str| SignError(format!("PIN from {source}: {why}"));
        let line = raw
            .strip_suffix(b"\r\n")
            .or_else(|| raw.strip_suffix(b"\n"))
            .unwrap_or(raw);
        let text = core::str::from_utf8(line).map_err(|_| bad("not UTF-8"))?;
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(bad("contains control characters (more than one line?)"));
        }
        Ok(Secret {
            digest: pin_digest(line)?,
            pin: AuthPin::from(text),
        })
    }
}

fn read_pin_file(path: &Path) -> Result<Vec<u8>, SignError> {
    let err = |e: std::io::Error| SignError(format!("PIN file {}: {e}", path.display()));
    let meta = fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        return Err(SignError(format!("PIN file {}: not a regular file", path.display())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(SignError(format!(
            "PIN file {} may be read or written by other users; chmod 600 it",
            path.display()
        )));
    }
    if meta.len() > MAX_PIN_FILE {
        return Err(SignError(format!(
            "PIN file {}: larger than {MAX_PIN_FILE} bytes",
            path.display()
        )));
    }
    fs::read(path).map_err(err)
}

/// Overwrites a buffer that held a PIN before it is freed (best effort: no copies the
/// allocator or the environment keep are reached).
fn wipe(buf: &mut [u8]) {
    buf.iter_mut().for_each(|b| *b = 0);
    core::hint::black_box(buf);
}

/// Which key on which token, and how to log in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// `CKA_LABEL` of the token (at most 32 bytes). Exactly one token may carry it.
    pub token_label: String,
    /// `CKA_LABEL` of the Ed25519 key pair. Exactly one private and one public key on
    /// the token may carry it.
    pub key_label: String,
    /// Where the user PIN comes from.
    pub pin: Pin,
    /// Most sessions open at once (default 4): concurrent signatures beyond that wait
    /// for a session. 1 serializes all signing through one session.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
}

impl Pkcs11Config {
    /// A configuration with the default session limit.
    pub fn new(module: impl Into<PathBuf>, token_label: &str, key_label: &str, pin: Pin) -> Pkcs11Config {
        Pkcs11Config {
            module: module.into(),
            token_label: token_label.to_owned(),
            key_label: key_label.to_owned(),
            pin,
            max_sessions: default_max_sessions(),
        }
    }

    fn check(&self) -> Result<(), SignError> {
        if self.token_label.is_empty() || self.token_label.len() > MAX_TOKEN_LABEL {
            return Err(SignError(format!(
                "PKCS#11 token label {:?}: must be 1 to {MAX_TOKEN_LABEL} bytes",
                self.token_label
            )));
        }
        if self.key_label.is_empty() {
            return Err(SignError("PKCS#11 key label is empty".into()));
        }
        if self.max_sessions == 0 {
            return Err(SignError("PKCS#11 max_sessions must be at least 1".into()));
        }
        Ok(())
    }

    /// "token 'T' key 'K' (module M)", for errors.
    fn names(&self) -> String {
        format!(
            "PKCS#11 token '{}' key '{}' (module {})",
            self.token_label,
            self.key_label,
            self.module.display()
        )
    }
}

// ---------------------------------------------------------------------------------------
// Process-wide module state
// ---------------------------------------------------------------------------------------

/// Loaded modules by canonical path. A module is initialized once and never finalized:
/// `C_Finalize` would end the sessions of every other signer on it.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// Login state is per application and token, not per session: a second `C_Login` answers
/// `CKR_USER_ALREADY_LOGGED_IN` without checking the PIN. To keep a wrong PIN from
/// passing because another signer in this process logged in first, the digest of the
/// PIN of each successful login is kept here, by (module, token serial, token label).
static LOGINS: OnceLock<Mutex<HashMap<LoginKey, [u8; 32]>>> = OnceLock::new();
/// (canonical module path, token serial number, token label).
type LoginKey = (PathBuf, String, String);
static PIN_SALT: OnceLock<[u8; 32]> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind our mutexes stays consistent at every point a panic could occur
    // (there are none on purpose), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn load_module(path: &Path) -> Result<(Pkcs11, PathBuf), SignError> {
    let canonical = fs::canonicalize(path).map_err(|e| SignError(format!("PKCS#11 module {}: {e}", path.display())))?;
    let mut modules = lock(MODULES.get_or_init(Default::default));
    if let Some(ctx) = modules.get(&canonical) {
        return Ok((ctx.clone(), canonical));
    }
    let ctx = Pkcs11::new(&canonical)
        .map_err(|e| SignError(format!("PKCS#11 module {}: cannot load: {e}", canonical.display())))?;
    initialize(&ctx, &canonical)?;
    modules.insert(canonical.clone(), ctx.clone());
    Ok((ctx, canonical))
}

/// `C_Initialize` with OS locking (the signer calls the module from many threads).
/// Already initialized (by us earlier, or by another library in the process) is fine.
fn initialize(ctx: &Pkcs11, module: &Path) -> Result<(), SignError> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(SignError(format!(
            "PKCS#11 module {}: C_Initialize failed: {}",
            module.display(),
            ck(&e)
        ))),
    }
}

/// The digest of a PIN kept in [`LOGINS`]: SHA-256 under a random per-process salt.
fn pin_digest(pin: &[u8]) -> Result<[u8; 32], SignError> {
    let salt = match PIN_SALT.get() {
        Some(s) => *s,
        None => {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| SignError(format!("no OS randomness: {e}")))?;
            *PIN_SALT.get_or_init(|| s)
        }
    };
    let mut h = Sha256::new();
    h.update(salt);
    h.update(pin);
    Ok(h.finalize().into())
}

// ---------------------------------------------------------------------------------------
// PKCS#11 helpers
// ---------------------------------------------------------------------------------------

/// A cryptoki error as "C_Sign: SessionHandleInvalid" (its `Display` quotes the spec).
fn ck(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?}: {rv:?}"),
        other => other.to_string(),
    }
}

/// Errors after which the session (or the login, or the token's slot) is gone and
/// reopening may help; any other error is final.
fn is_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// The one slot whose token carries `label`, and the token's serial number.
fn find_token(ctx: &Pkcs11, config: &Pkcs11Config) -> Result<(Slot, String), CkFailure> {
    let mut found = Vec::new();
    let mut others = Vec::new();
    for slot in ctx.get_slots_with_token()? {
        let info = ctx.get_token_info(slot)?;
        if info.label() == config.token_label {
            if !info.token_initialized() {
                return Err(CkFailure::Final("the token is not initialized".into()));
            }
            if !info.user_pin_initialized() {
                return Err(CkFailure::Final("the token's user PIN is not initialized".into()));
            }
            if info.user_pin_locked() {
                return Err(CkFailure::Final("the token's user PIN is locked".into()));
            }
            found.push((slot, info.serial_number().to_owned()));
        } else if info.token_initialized() {
            others.push(format!("'{}'", info.label()));
        }
    }
    match found.len() {
        1 => found.pop().ok_or_else(|| CkFailure::Final("unreachable".into())),
        0 => Err(CkFailure::Final(format!(
            "no token with that label (tokens present: {})",
            if others.is_empty() {
                "none".to_owned()
            } else {
                others.join(", ")
            }
        ))),
        n => Err(CkFailure::Final(format!(
            "{n} tokens carry that label; token labels must be unique"
        ))),
    }
}

/// A failure while opening or using a session: `Lost` may go away by reopening once;
/// `Busy` (the token allows no more sessions) by waiting for one of ours.
#[derive(Debug)]
enum CkFailure {
    Lost(String),
    Busy(String),
    Final(String),
}

impl From<CkError> for CkFailure {
    fn from(e: CkError) -> CkFailure {
        if is_lost(&e) {
            CkFailure::Lost(ck(&e))
        } else if matches!(e, CkError::Pkcs11(RvError::SessionCount, _)) {
            CkFailure::Busy(ck(&e))
        } else {
            CkFailure::Final(ck(&e))
        }
    }
}

impl CkFailure {
    fn text(&self) -> &str {
        match self {
            CkFailure::Lost(t) | CkFailure::Busy(t) | CkFailure::Final(t) => t,
        }
    }
}

/// Logs the user in on `session` (login state is shared by all the application's
/// sessions on the token). If the token is already logged in, only a login this process
/// made with the same PIN is accepted.
fn login(
    session: &Session,
    config: &Pkcs11Config,
    module: &Path,
    serial: &str,
    secret: &Secret,
) -> Result<(), CkFailure> {
    let key = (module.to_path_buf(), serial.to_owned(), config.token_label.clone());
    let logins = LOGINS.get_or_init(Default::default);
    match session.login(UserType::User, Some(&secret.pin)) {
        Ok(()) => {
            lock(logins).insert(key, secret.digest);
            Ok(())
        }
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match lock(logins).get(&key) {
            Some(d) if *d == secret.digest => Ok(()),
            Some(_) => Err(CkFailure::Final(format!(
                "wrong PIN (from {}): the token is logged in by this process with another PIN",
                config.pin
            ))),
            None => Err(CkFailure::Final(format!(
                "the token is already logged in by another user of the module in this process; \
                 cannot check the PIN (from {})",
                config.pin
            ))),
        },
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(CkFailure::Final(format!(
            "wrong PIN (from {}): C_Login: PinIncorrect",
            config.pin
        ))),
        Err(CkError::Pkcs11(rv @ (RvError::PinLocked | RvError::PinExpired | RvError::PinLenRange), _)) => {
            Err(CkFailure::Final(format!(
                "cannot log in with the PIN from {}: C_Login: {rv:?}",
                config.pin
            )))
        }
        Err(e) => Err(e.into()),
    }
}

fn ed25519_template(class: ObjectClass, label: &str) -> [Attribute; 3] {
    [
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// The one Ed25519 object of `class` labelled `label`, if any.
fn find_key(session: &Session, class: ObjectClass, config: &Pkcs11Config) -> Result<Option<ObjectHandle>, CkFailure> {
    let mut found = session.find_objects(&ed25519_template(class, &config.key_label))?;
    match found.len() {
        0 | 1 => Ok(found.pop()),
        n => Err(CkFailure::Final(format!(
            "{n} Ed25519 {} carry that label; key labels must be unique",
            if class == ObjectClass::PRIVATE_KEY {
                "private keys"
            } else {
                "public keys"
            }
        ))),
    }
}

/// Labels of the Ed25519 private keys on the token, for the "no such key" error.
fn private_key_labels(session: &Session) -> String {
    let template = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC_EDWARDS),
    ];
    let mut labels: Vec<String> = session
        .find_objects(&template)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| session.get_attributes(h, &[AttributeType::Label]).ok())
        .flatten()
        .filter_map(|a| match a {
            Attribute::Label(l) => Some(format!("'{}'", String::from_utf8_lossy(&l))),
            _ => None,
        })
        .collect();
    labels.sort();
    if labels.is_empty() {
        "none".to_owned()
    } else {
        labels.join(", ")
    }
}

/// Checks that `CKA_EC_PARAMS` names Ed25519 (CKK_EC_EDWARDS also covers Ed448).
fn check_ed25519_params(params: &[u8]) -> Result<(), String> {
    if params == ED25519_OID || params == ED25519_PRINTABLE {
        Ok(())
    } else {
        Err(format!(
            "CKA_EC_PARAMS {} is not Ed25519 (OID 1.3.101.112 or \"edwards25519\")",
            hex::encode(params)
        ))
    }
}

/// The raw Ed25519 public key in a `CKA_EC_POINT` value: a DER OCTET STRING of 32 bytes
/// (`04 20 ...`, what PKCS#11 3.0 specifies and SoftHSM2 returns), or, as some tokens
/// return it, the 32 bytes themselves. Anything else is refused.
pub fn ec_point_to_ed25519(ec_point: &[u8]) -> Result<[u8; 32], String> {
    let raw = match ec_point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ if ec_point.len() == 32 => ec_point,
        _ => {
            return Err(format!(
                "CKA_EC_POINT ({} bytes: {}) is not an Ed25519 point (a DER OCTET STRING of 32 bytes)",
                ec_point.len(),
                hex::encode(ec_point.get(..40).unwrap_or(ec_point))
            ))
        }
    };
    raw.try_into().map_err(|_| "CKA_EC_POINT: not 32 bytes".to_owned())
}

/// Reads the public key's curve and point; the Ed25519 key, checked as a trust event
/// would admit it (canonical, prime order).
fn read_public_key(session: &Session, public: ObjectHandle) -> Result<PublicKey, CkFailure> {
    let attrs = session.get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])?;
    let mut params = None;
    let mut point = None;
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let bad = |why: String| CkFailure::Final(format!("public key: {why}"));
    check_ed25519_params(&params.ok_or_else(|| bad("no CKA_EC_PARAMS".into()))?).map_err(bad)?;
    let raw = ec_point_to_ed25519(&point.ok_or_else(|| bad("no CKA_EC_POINT".into()))?).map_err(bad)?;
    PublicKey::admit(&raw).map_err(|e| bad(format!("{} refused: {e:?}", hex::encode(raw))))
}

/// Refuses private keys that can leave the token or need a PIN per signature.
fn check_private_key(session: &Session, private: ObjectHandle) -> Result<Vec<u8>, CkFailure> {
    let attrs = session.get_attributes(
        private,
        &[
            AttributeType::Sign,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::AlwaysAuthenticate,
            AttributeType::Id,
        ],
    )?;
    let bad = |why: &str| CkFailure::Final(format!("private key: {why}"));
    let mut id = Vec::new();
    for a in attrs {
        match a {
            Attribute::Sign(false) => return Err(bad("CKA_SIGN is false")),
            Attribute::Sensitive(false) => {
                return Err(bad("CKA_SENSITIVE is false: the key can be read off the token"))
            }
            Attribute::Extractable(true) => return Err(bad("CKA_EXTRACTABLE is true: the key can leave the token")),
            Attribute::AlwaysAuthenticate(true) => {
                return Err(bad(
                    "CKA_ALWAYS_AUTHENTICATE is true (a PIN per signature): not supported",
                ))
            }
            Attribute::Id(i) => id = i,
            _ => {}
        }
    }
    Ok(id)
}

fn key_id(session: &Session, object: ObjectHandle) -> Result<Vec<u8>, CkFailure> {
    Ok(session
        .get_attributes(object, &[AttributeType::Id])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Id(i) => Some(i),
            _ => None,
        })
        .unwrap_or_default())
}

fn eddsa() -> Mechanism<'static> {
    // Pure Ed25519: CKM_EDDSA without parameters (RFC 8032 §5.1).
    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
}

// ---------------------------------------------------------------------------------------
// Session pool
// ---------------------------------------------------------------------------------------

/// A session in the pool, with the private key's handle as that session found it.
#[derive(Debug)]
struct Lease {
    session: Session,
    key: ObjectHandle,
    epoch: u64,
}

#[derive(Debug)]
struct PoolState {
    idle: Vec<Lease>,
    /// Sessions open (idle or checked out).
    open: usize,
    /// The token's slot (found again by label when sessions are lost).
    slot: Slot,
    /// Bumped when sessions are found lost: older leases are closed, not reused.
    epoch: u64,
}

#[derive(Debug)]
struct Pool {
    state: Mutex<PoolState>,
    freed: Condvar,
    max: usize,
}

/// A checked-out session; dropped without [`Checkout::done`], it is closed (so an error
/// path can never return a broken session to the pool).
struct Checkout<'a> {
    pool: &'a Pool,
    lease: Option<Lease>,
}

impl Checkout<'_> {
    /// Returns the session to the pool (unless the pool moved to a newer epoch).
    fn done(mut self) {
        if let Some(lease) = self.lease.take() {
            let mut st = lock(&self.pool.state);
            if lease.epoch == st.epoch {
                st.idle.push(lease);
                drop(st);
            } else {
                st.open = st.open.saturating_sub(1);
                drop(st);
                drop(lease);
            }
            self.pool.freed.notify_one();
        }
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            drop(lease); // closes the session
            let mut st = lock(&self.pool.state);
            st.open = st.open.saturating_sub(1);
            drop(st);
            self.pool.freed.notify_one();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The signer
// ---------------------------------------------------------------------------------------

/// An Ed25519 key on a PKCS#11 token. `Send + Sync`: share it (in an `Arc`) between
/// threads; each signature uses one pooled session.
pub struct Pkcs11Signer {
    ctx: Pkcs11,
    /// Canonical path of the module.
    module: PathBuf,
    config: Pkcs11Config,
    secret: Secret,
    serial: String,
    public: PublicKey,
    pool: Pool,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("module", &self.module)
            .field("token_label", &self.config.token_label)
            .field("token_serial", &self.serial)
            .field("key_label", &self.config.key_label)
            .field("public", &hex::encode(self.public.as_bytes()))
            .field("pin", &format_args!("from {}", self.config.pin))
            .field("max_sessions", &self.pool.max)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Pkcs11Signer>();
};

impl Pkcs11Signer {
    /// Loads the module, finds the token by label, logs in, finds the Ed25519 key pair
    /// by label, checks it (Ed25519 curve, private key sensitive, not extractable, no
    /// per-signature PIN) and signs a self-test message with it.
    pub fn open(config: &Pkcs11Config) -> Result<Pkcs11Signer, SignError> {
        config.check()?;
        let secret = config.pin.read()?;
        let (ctx, module) = load_module(&config.module)?;
        let signer = Pkcs11Signer::open_with(ctx, module, config, secret)
            .map_err(|f| SignError(format!("{}: {}", config.names(), f.text())))?;
        // The key pair matches and the token signs: proven before any record needs it.
        signer.sign(OPEN_PROBE)?;
        Ok(signer)
    }

    fn open_with(
        ctx: Pkcs11,
        module: PathBuf,
        config: &Pkcs11Config,
        secret: Secret,
    ) -> Result<Pkcs11Signer, CkFailure> {
        let (slot, serial) = find_token(&ctx, config)?;
        if !ctx.get_mechanism_list(slot)?.contains(&MechanismType::EDDSA) {
            return Err(CkFailure::Final(
                "the token does not offer CKM_EDDSA (Ed25519 signatures)".into(),
            ));
        }
        let session = ctx.open_ro_session(slot)?;
        login(&session, config, &module, &serial, &secret)?;
        let Some(private) = find_key(&session, ObjectClass::PRIVATE_KEY, config)? else {
            return Err(CkFailure::Final(format!(
                "no Ed25519 private key with that label on the token (Ed25519 private keys there: {})",
                private_key_labels(&session)
            )));
        };
        let Some(public_handle) = find_key(&session, ObjectClass::PUBLIC_KEY, config)? else {
            return Err(CkFailure::Final(
                "no Ed25519 public key with that label on the token (its CKA_EC_POINT is the kernel's key id)".into(),
            ));
        };
        let private_id = check_private_key(&session, private)?;
        let public_id = key_id(&session, public_handle)?;
        if !private_id.is_empty() && !public_id.is_empty() && private_id != public_id {
            return Err(CkFailure::Final(format!(
                "the private and the public key carry different CKA_IDs ({} and {})",
                hex::encode(&private_id),
                hex::encode(&public_id)
            )));
        }
        let public = read_public_key(&session, public_handle)?;
        Ok(Pkcs11Signer {
            ctx,
            module,
            config: config.clone(),
            secret,
            serial,
            public,
            pool: Pool {
                state: Mutex::new(PoolState {
                    idle: vec![Lease {
                        session,
                        key: private,
                        epoch: 0,
                    }],
                    open: 1,
                    slot,
                    epoch: 0,
                }),
                freed: Condvar::new(),
                max: config.max_sessions,
            },
        })
    }

    /// Creates an Ed25519 key pair on the token under `config.key_label`: a token
    /// object, the private key private, sensitive, not extractable, sign only; the
    /// public key with `CKA_EC_PARAMS` the DER OID 1.3.101.112. Both get the same
    /// random 16-byte `CKA_ID`. Refuses if an Ed25519 key with that label exists.
    /// Returns the raw public key (the kernel's key id, for its trust event).
    pub fn generate_key(config: &Pkcs11Config) -> Result<[u8; 32], SignError> {
        config.check()?;
        let secret = config.pin.read()?;
        let (ctx, module) = load_module(&config.module)?;
        Pkcs11Signer::generate_with(&ctx, &module, config, &secret)
            .map_err(|f| SignError(format!("{}: key generation: {}", config.names(), f.text())))
    }

    fn generate_with(
        ctx: &Pkcs11,
        module: &Path,
        config: &Pkcs11Config,
        secret: &Secret,
    ) -> Result<[u8; 32], CkFailure> {
        let (slot, serial) = find_token(ctx, config)?;
        if !ctx
            .get_mechanism_list(slot)?
            .contains(&MechanismType::ECC_EDWARDS_KEY_PAIR_GEN)
        {
            return Err(CkFailure::Final(
                "the token does not offer CKM_EC_EDWARDS_KEY_PAIR_GEN (Ed25519 key generation)".into(),
            ));
        }
        let session = ctx.open_rw_session(slot)?;
        login(&session, config, module, &serial, secret)?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if !session
                .find_objects(&ed25519_template(class, &config.key_label))?
                .is_empty()
            {
                return Err(CkFailure::Final(
                    "an Ed25519 key with that label already exists on the token; not creating another".into(),
                ));
            }
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| CkFailure::Final(format!("no OS randomness: {e}")))?;
        let label = config.key_label.as_bytes().to_vec();
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Label(label.clone()),
            Attribute::Id(id.to_vec()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Derive(false),
            Attribute::Label(label),
            Attribute::Id(id.to_vec()),
        ];
        let (public_handle, private) =
            session.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public_template, &private_template)?;
        let checked = check_private_key(&session, private).and_then(|_| read_public_key(&session, public_handle));
        if checked.is_err() {
            // Leave no half-usable key behind.
            let _ = session.destroy_object(private);
            let _ = session.destroy_object(public_handle);
        }
        Ok(*checked?.as_bytes())
    }

    /// The configuration the signer was opened with.
    pub fn config(&self) -> &Pkcs11Config {
        &self.config
    }

    /// Signs with a pooled session. A failure comes with the epoch of the session it
    /// happened on: `Lost` failures are for the caller to recover from once.
    fn sign_once(&self, message: &[u8]) -> Result<[u8; 64], (CkFailure, u64)> {
        let checkout = self.checkout()?;
        let (lease, epoch) = match checkout.lease.as_ref() {
            Some(lease) => (lease, lease.epoch),
            None => return Err((CkFailure::Final("no session checked out".into()), 0)),
        };
        let sig = lease
            .session
            .sign(&eddsa(), lease.key, message)
            .map_err(|e| (e.into(), epoch))?;
        let sig: [u8; 64] = sig.as_slice().try_into().map_err(|_| {
            let why = format!("the token returned a {}-byte signature, not 64", sig.len());
            (CkFailure::Final(why), epoch)
        })?;
        checkout.done();
        Ok(sig)
    }

    /// A session from the pool, or a new one while fewer than `max` are open; else waits.
    fn checkout(&self) -> Result<Checkout<'_>, (CkFailure, u64)> {
        let mut st = lock(&self.pool.state);
        loop {
            if let Some(lease) = st.idle.pop() {
                return Ok(Checkout {
                    pool: &self.pool,
                    lease: Some(lease),
                });
            }
            if st.open < self.pool.max {
                st.open = st.open.saturating_add(1);
                let (slot, epoch) = (st.slot, st.epoch);
                drop(st);
                return match self.open_session(slot) {
                    Ok((session, key)) => Ok(Checkout {
                        pool: &self.pool,
                        lease: Some(Lease { session, key, epoch }),
                    }),
                    Err(e) => {
                        let mut again = lock(&self.pool.state);
                        again.open = again.open.saturating_sub(1);
                        if matches!(e, CkFailure::Busy(_)) && again.open > 0 {
                            // The token's session limit is below max_sessions: wait for
                            // one of the sessions we have.
                            st = self.pool.freed.wait(again).unwrap_or_else(PoisonError::into_inner);
                            continue;
                        }
                        drop(again);
                        self.pool.freed.notify_one();
                        Err((e, epoch))
                    }
                };
            }
            st = self.pool.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A new session on `slot`, logged in, with the private key's handle.
    fn open_session(&self, slot: Slot) -> Result<(Session, ObjectHandle), CkFailure> {
        let session = self.ctx.open_ro_session(slot)?;
        login(&session, &self.config, &self.module, &self.serial, &self.secret)?;
        match find_key(&session, ObjectClass::PRIVATE_KEY, &self.config)? {
            Some(key) => Ok((session, key)),
            None => Err(CkFailure::Final("the private key is no longer on the token".into())),
        }
    }

    /// After a lost session: closes the idle sessions of that epoch, initializes the
    /// module again if it was finalized, finds the token again by label.
    fn recover(&self, lost_epoch: u64) -> Result<(), CkFailure> {
        let stale = {
            let mut st = lock(&self.pool.state);
            if st.epoch != lost_epoch {
                return Ok(()); // another thread recovered already
            }
            st.epoch = st.epoch.wrapping_add(1);
            let stale = core::mem::take(&mut st.idle);
            st.open = st.open.saturating_sub(stale.len());
            stale
        };
        drop(stale); // closing dead sessions fails quietly
        self.pool.freed.notify_all();
        initialize(&self.ctx, &self.module).map_err(|e| CkFailure::Final(e.0))?;
        let (slot, serial) = find_token(&self.ctx, &self.config)?;
        if serial != self.serial {
            return Err(CkFailure::Final(format!(
                "the token now has serial number '{serial}', not '{}'",
                self.serial
            )));
        }
        lock(&self.pool.state).slot = slot;
        Ok(())
    }
}

impl RecordSigner for Pkcs11Signer {
    fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    /// Signs on the token, reopening a lost session once, and verifies the signature
    /// under the public key before returning it.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        let sig = match self.sign_once(message) {
            Ok(sig) => sig,
            Err((CkFailure::Lost(first), epoch)) => {
                let again = self
                    .recover(epoch)
                    .and_then(|()| self.sign_once(message).map_err(|(f, _)| f));
                again.map_err(|f| {
                    SignError(format!(
                        "{}: session lost ({first}); reopening failed: {}",
                        self.config.names(),
                        f.text()
                    ))
                })?
            }
            Err((failure, _)) => return Err(SignError(format!("{}: {}", self.config.names(), failure.text()))),
        };
        if self.public.verify(message, &sig) {
            Ok(sig)
        } else {
            Err(SignError(format!(
                "{}: the token returned a signature that does not verify under the key's public key {}; refused",
                self.config.names(),
                hex::encode(self.public.as_bytes())
            )))
        }
    }

    fn describe(&self) -> String {
        format!(
            "PKCS#11 token '{}' (serial {}) key '{}' ed25519:{} via {}",
            self.config.token_label,
            self.serial,
            self.config.key_label,
            hex::encode(self.public.as_bytes()),
            self.module.display()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn ec_point_forms() {
        let key = [7u8; 32];
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&key);
        assert_eq!(ec_point_to_ed25519(&der).unwrap(), key);
        assert_eq!(ec_point_to_ed25519(&key).unwrap(), key);
        // wrong inner length, long-form length, wrong tag, Ed448-sized, empty
        let mut short = vec![0x04, 0x1f];
        short.extend_from_slice(&key[..31]);
        assert!(ec_point_to_ed25519(&short).is_err());
        let mut long_form = vec![0x04, 0x81, 0x20];
        long_form.extend_from_slice(&key);
        assert!(ec_point_to_ed25519(&long_form).is_err());
        let mut bitstring = vec![0x03, 0x20];
        bitstring.extend_from_slice(&key);
        assert!(ec_point_to_ed25519(&bitstring).is_err());
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(ec_point_to_ed25519(&trailing).is_err());
        assert!(ec_point_to_ed25519(&[0x04, 0x39]).is_err());
        assert!(ec_point_to_ed25519(&[]).is_err());
    }

    #[test]
    fn curve_params() {
        assert!(check_ed25519_params(&ED25519_OID).is_ok());
        assert!(check_ed25519_params(&ED25519_PRINTABLE).is_ok());
        assert!(check_ed25519_params(&[0x06, 0x03, 0x2b, 0x65, 0x71]).is_err(), "Ed448");
        assert!(check_ed25519_params(b"\x13\x0aedwards448").is_err());
    }

    #[test]
    fn pin_text() {
        let src = Pin::Env("X".into());
        assert!(Secret::from_bytes(b"1234\n", &src).is_ok());
        assert!(Secret::from_bytes(b"1234\r\n", &src).is_ok());
        assert_eq!(
            Secret::from_bytes(b"1234\n", &src).unwrap().digest,
            Secret::from_bytes(b"1234", &src).unwrap().digest
        );
        assert_ne!(
            Secret::from_bytes(b"1234", &src).unwrap().digest,
            Secret::from_bytes(b"1235", &src).unwrap().digest
        );
        for bad in [&b""[..], b"\n", b"12\n34", b"1234\n\n", b"\xff\xfe"] {
            let e = Secret::from_bytes(bad, &src).unwrap_err().0;
            assert!(e.contains("environment variable X"), "{e}");
        }
    }

    #[test]
    fn config_from_toml_like_json_names_no_pin() {
        let c: Pkcs11Config = serde_json::from_str(
            r#"{"module": "/m.so", "token_label": "t", "key_label": "k", "pin": {"env": "HELM_PIN"}}"#,
        )
        .unwrap();
        assert_eq!(c.max_sessions, 4);
        assert_eq!(c.pin, Pin::Env("HELM_PIN".into()));
        // A PIN written into the configuration itself is refused.
        assert!(serde_json::from_str::<Pkcs11Config>(
            r#"{"module": "/m.so", "token_label": "t", "key_label": "k", "pin": {"value": "1234"}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Pkcs11Config>(
            r#"{"module": "/m.so", "token_label": "t", "key_label": "k", "pin": "1234"}"#
        )
        .is_err());
    }
}
