//! `Pkcs11Signer` against SoftHSM2, a real PKCS#11 module: key generation, records that
//! verify-core accepts, concurrent signing, wrong PINs and labels, lost sessions.
//!
//! Needs `softhsm2-util` and `libsofthsm2.so` (Debian package softhsm2). Without them the
//! tests print "SKIPPED: softhsm2 not installed" to stderr and pass, unless
//! `HELM_REQUIRE_SOFTHSM=1` (CI sets it), which makes them fail. `HELM_SOFTHSM_MODULE`
//! names the module if it is not in a usual place.
//!
//! The tests share one SoftHSM2 configuration (a module reads it once per process) and
//! run one at a time (they log in and out, and one finalizes the module).
//!
//! Signatures per second: `cargo test --release -p helm-kernel --features pkcs11
//! --test pkcs11_softhsm -- --ignored --nocapture`.
#![cfg(feature = "pkcs11")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "tests"
)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use helm_kernel::pkcs11::{Pin, Pkcs11Config, Pkcs11Signer};
use helm_kernel::signer::{sign_record, RecordSigner};
use verify_core::{
    body, sig_structure, verify_signature, Capacity, Kind, OwnedTables, Record, RecordBuilder, SignatureCheck, Signer,
    TrustAction, Verifier,
};

/// The token most tests use; its key `KEY` is made once by the fixture.
const TOKEN: &str = "helm-test";
/// A token nobody logs in to: a wrong PIN there reaches C_Login's own check.
const FRESH_TOKEN: &str = "helm-fresh";
const KEY: &str = "kernel-1";
const USER_PIN: &str = "4711-user-pin";
const SO_PIN: &str = "0815-so-pin";
const PIN_ENV: &str = "HELM_TEST_PKCS11_PIN";
const WRONG_PIN_ENV: &str = "HELM_TEST_PKCS11_WRONG_PIN";
const WRONG_PIN: &str = "9999-not-the-pin";

const MODULE_PLACES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

struct Hsm {
    dir: PathBuf,
    module: PathBuf,
    /// The public key of `KEY` on `TOKEN`, as `generate_key` returned it.
    public: [u8; 32],
}

impl Hsm {
    fn config(&self, token: &str, key: &str) -> Pkcs11Config {
        Pkcs11Config::new(&self.module, token, key, Pin::Env(PIN_ENV.into()))
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_module() -> Option<PathBuf> {
    if let Some(m) = std::env::var_os("HELM_SOFTHSM_MODULE") {
        return Some(PathBuf::from(m)).filter(|p| p.is_file());
    }
    MODULE_PLACES.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn init_token(util: &Path, conf: &Path, label: &str) {
    let out = Command::new(util)
        .env("SOFTHSM2_CONF", conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup() -> Option<Mutex<Hsm>> {
    let util = find_in_path("softhsm2-util");
    let module = find_module();
    let (Some(util), Some(module)) = (util, module) else {
        let detail = format!(
            "softhsm2-util in PATH: {}, libsofthsm2.so found: {}; on Debian: apt-get install softhsm2",
            find_in_path("softhsm2-util").is_some(),
            find_module().is_some()
        );
        if std::env::var("HELM_REQUIRE_SOFTHSM").as_deref() == Ok("1") {
            panic!("HELM_REQUIRE_SOFTHSM=1 but softhsm2 is not installed ({detail})");
        }
        // Straight to the file descriptor: libtest captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!! SKIPPED: softhsm2 not installed: the PKCS#11 tests did not run.\n!!!! ({detail})\n"
        );
        return None;
    };
    // In the target directory: the fixture lives in a static, so it is never dropped
    // and its directory is left behind (a few kilobytes per run).
    let dir = tempfile::Builder::new()
        .prefix("softhsm2-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    init_token(&util, &conf, TOKEN);
    init_token(&util, &conf, FRESH_TOKEN);
    // Before the module is first loaded in this process (it reads the variable in
    // C_Initialize). Tests run one at a time behind the fixture's lock.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    std::env::set_var(PIN_ENV, USER_PIN);
    std::env::set_var(WRONG_PIN_ENV, WRONG_PIN);
    let hsm = Hsm {
        dir: dir.keep(),
        public: [0; 32],
        module,
    };
    let public = Pkcs11Signer::generate_key(&hsm.config(TOKEN, KEY)).expect("generate the test key on SoftHSM2");
    Some(Mutex::new(Hsm { public, ..hsm }))
}

/// The shared SoftHSM2, locked for one test; `None` if SoftHSM2 is missing (and not
/// required).
fn hsm() -> Option<MutexGuard<'static, Hsm>> {
    static FIXTURE: OnceLock<Option<Mutex<Hsm>>> = OnceLock::new();
    FIXTURE
        .get_or_init(setup)
        .as_ref()
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A second handle on the module (the same library state as the signer's), for looking
/// at the token behind the signer's back.
fn raw_module(hsm: &Hsm) -> Pkcs11 {
    let ctx = Pkcs11::new(&hsm.module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => ctx,
        Err(e) => panic!("C_Initialize: {e}"),
    }
}

fn raw_session(ctx: &Pkcs11, token: &str, rw: bool) -> Session {
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == token)
        .unwrap();
    let session = if rw {
        ctx.open_rw_session(slot).unwrap()
    } else {
        ctx.open_ro_session(slot).unwrap()
    };
    match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => session,
        Err(e) => panic!("C_Login: {e}"),
    }
}

#[test]
fn signs_a_record_that_verify_core_accepts_under_a_trust_chain() {
    let Some(hsm) = hsm() else { return };
    let signer = Pkcs11Signer::open(&hsm.config(TOKEN, KEY)).unwrap();
    assert_eq!(signer.public_key(), hsm.public, "the key generate_key returned");

    // The trust anchor (a software key) publishes the HSM key as the kernel key...
    let root = Signer::from_seed(&[0x52; 32]);
    let t0 = 1_767_225_600_000;
    let mut publish = RecordBuilder::new(
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &signer.public_key(),
            Some(&["kernel"]),
            None,
            None,
        ),
    );
    publish.lamport = 1;
    publish.time = t0;
    let publish = publish.sign(&root);
    let publish_hash = verify_core::sha256(&publish);

    // ...and the HSM key signs a POLICY record through the kernel's signer interface.
    let mut policy = RecordBuilder::new(Kind::Policy, body::policy(&[0xab; 32], Some("from-the-hsm")));
    policy.parents = vec![publish_hash];
    policy.lamport = 2;
    policy.time = t0 + 1000;
    let record = sign_record(&policy, &signer).unwrap();

    let decoded = Record::decode(&record).unwrap();
    assert_eq!(decoded.kid, hsm.public);
    assert_eq!(decoded.kind, Kind::Policy);
    assert!(verify_signature(
        &decoded.kid,
        &sig_structure(decoded.protected, decoded.payload),
        &decoded.signature
    ));

    let mut tables = OwnedTables::new(Capacity::for_records(8));
    let mut verifier = Verifier::new(&[root.public_key()], tables.tables()).unwrap();
    verifier.push(&publish).unwrap();
    let check = SignatureCheck::compute(&record);
    assert_eq!(check.hash(), &decoded.hash);
    verifier.push_checked(&record, Some(&check)).unwrap();
    let verified = verifier.finish().unwrap();
    assert_eq!(verified.records, 2);
    assert_eq!(verified.count(Kind::Policy), 1);

    // The same chain with one signature bit flipped does not verify.
    let mut bad = record.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut tables = OwnedTables::new(Capacity::for_records(8));
    let mut verifier = Verifier::new(&[root.public_key()], tables.tables()).unwrap();
    verifier.push(&publish).unwrap();
    assert!(verifier.push(&bad).is_err());
}

#[test]
fn eight_threads_sign_concurrently() {
    let Some(hsm) = hsm() else { return };
    let mut config = hsm.config(TOKEN, KEY);
    config.max_sessions = 3; // fewer sessions than threads: some wait for one
    let signer = Arc::new(Pkcs11Signer::open(&config).unwrap());
    let reference = signer.sign(b"the same message from every thread").unwrap();
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let signer = Arc::clone(&signer);
            s.spawn(move || {
                for i in 0..40u32 {
                    let msg = format!("thread {t} message {i}");
                    let sig = signer.sign(msg.as_bytes()).unwrap();
                    assert!(verify_signature(&signer.public_key(), msg.as_bytes(), &sig));
                    // Ed25519 is deterministic: every session gives the same signature.
                    assert_eq!(signer.sign(b"the same message from every thread").unwrap(), reference);
                }
            });
        }
    });
}

#[test]
fn wrong_pin_is_a_clear_error() {
    let Some(hsm) = hsm() else { return };
    // On a token nobody is logged in to: C_Login refuses the PIN.
    let mut config = hsm.config(FRESH_TOKEN, KEY);
    config.pin = Pin::Env(WRONG_PIN_ENV.into());
    let e = Pkcs11Signer::open(&config).unwrap_err().to_string();
    assert!(e.contains("wrong PIN"), "{e}");
    assert!(
        e.contains(FRESH_TOKEN) && e.contains(WRONG_PIN_ENV),
        "names token and PIN source: {e}"
    );
    assert!(
        !e.contains(WRONG_PIN) && !e.contains(USER_PIN),
        "never shows a PIN: {e}"
    );

    // On a token this process is logged in to (login state is shared by all sessions, so
    // C_Login would answer "already logged in" without looking at the PIN).
    let good = Pkcs11Signer::open(&hsm.config(TOKEN, KEY)).unwrap();
    let mut config = hsm.config(TOKEN, KEY);
    config.pin = Pin::Env(WRONG_PIN_ENV.into());
    let e = Pkcs11Signer::open(&config).unwrap_err().to_string();
    assert!(e.contains("wrong PIN") && e.contains(TOKEN), "{e}");
    assert!(!e.contains(WRONG_PIN) && !e.contains(USER_PIN), "{e}");
    // ...and the good signer still works.
    good.sign(b"still logged in").unwrap();

    // A PIN variable that is not set.
    config.pin = Pin::Env("HELM_TEST_PKCS11_PIN_NOT_SET".into());
    let e = Pkcs11Signer::open(&config).unwrap_err().to_string();
    assert!(e.contains("HELM_TEST_PKCS11_PIN_NOT_SET is not set"), "{e}");
}

#[test]
fn pin_from_a_file() {
    let Some(hsm) = hsm() else { return };
    let path = hsm.dir.join("user.pin");
    std::fs::write(&path, format!("{USER_PIN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = hsm.config(TOKEN, KEY);
    config.pin = Pin::File(path.clone());
    let signer = Pkcs11Signer::open(&config).unwrap();
    assert_eq!(signer.public_key(), hsm.public);
    drop(signer);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Pkcs11Signer::open(&config).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn unknown_labels_are_clear_errors() {
    let Some(hsm) = hsm() else { return };
    let e = Pkcs11Signer::open(&hsm.config(TOKEN, "no-such-key"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no Ed25519 private key"), "{e}");
    assert!(e.contains("'no-such-key'") && e.contains(TOKEN), "{e}");
    assert!(e.contains(&format!("'{KEY}'")), "lists the keys that are there: {e}");

    let e = Pkcs11Signer::open(&hsm.config("no-such-token", KEY))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no token with that label"), "{e}");
    assert!(
        e.contains(&format!("'{TOKEN}'")),
        "lists the tokens that are there: {e}"
    );

    let mut config = hsm.config(TOKEN, KEY);
    config.module = hsm.dir.join("no-such-module.so");
    let e = Pkcs11Signer::open(&config).unwrap_err().to_string();
    assert!(e.contains("no-such-module.so"), "{e}");
}

#[test]
fn generated_private_key_is_sensitive_and_not_extractable() {
    let Some(hsm) = hsm() else { return };
    let ctx = raw_module(&hsm);
    let session = raw_session(&ctx, TOKEN, false);
    let template = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Label(KEY.as_bytes().to_vec()),
    ];
    let keys = session.find_objects(&template).unwrap();
    assert_eq!(keys.len(), 1);
    let attrs = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Token,
                AttributeType::Private,
            ],
        )
        .unwrap();
    for expected in [
        Attribute::Extractable(false),
        Attribute::Sensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::AlwaysSensitive(true),
        Attribute::Token(true),
        Attribute::Private(true),
    ] {
        assert!(
            attrs.iter().any(|a| format!("{a:?}") == format!("{expected:?}")),
            "{expected:?} in {attrs:?}"
        );
    }
    // The secret itself cannot be read.
    let value = session.get_attributes(keys[0], &[AttributeType::Value]);
    assert!(
        !matches!(&value, Ok(v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
        "{value:?}"
    );

    // A second key under the same label is refused.
    let e = Pkcs11Signer::generate_key(&hsm.config(TOKEN, KEY))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn lost_sessions_are_reopened_once() {
    let Some(hsm) = hsm() else { return };
    let signer = Pkcs11Signer::open(&hsm.config(TOKEN, KEY)).unwrap();
    signer.sign(b"before").unwrap();
    let ctx = raw_module(&hsm);

    // Someone logs the application out of the token: the signer's sessions lose the
    // login (C_Sign: UserNotLoggedIn or a stale key handle).
    let other = raw_session(&ctx, TOKEN, false);
    other.logout().unwrap();
    drop(other);
    let sig = signer.sign(b"after logout").unwrap();
    assert!(verify_signature(&hsm.public, b"after logout", &sig));

    // The module is finalized under the signer (every session handle becomes invalid).
    ctx.finalize().unwrap();
    let sig = signer.sign(b"after finalize").unwrap();
    assert!(verify_signature(&hsm.public, b"after finalize", &sig));

    // A key that disappears: reopening once fails, and the signer says so (no panic).
    let doomed_config = hsm.config(TOKEN, "doomed");
    Pkcs11Signer::generate_key(&doomed_config).unwrap();
    let doomed = Pkcs11Signer::open(&doomed_config).unwrap();
    doomed.sign(b"while it exists").unwrap();
    let ctx = raw_module(&hsm);
    let session = raw_session(&ctx, TOKEN, true);
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let template = [Attribute::Class(class), Attribute::Label(b"doomed".to_vec())];
        for handle in session.find_objects(&template).unwrap() {
            session.destroy_object(handle).unwrap();
        }
    }
    drop(session);
    let e = doomed.sign(b"after the key is gone").unwrap_err().to_string();
    assert!(e.contains("doomed") && e.contains(TOKEN), "{e}");
    // The other key is unaffected.
    signer.sign(b"the kernel key still signs").unwrap();
}

#[test]
fn debug_and_describe_show_no_pin() {
    let Some(hsm) = hsm() else { return };
    let config = hsm.config(TOKEN, KEY);
    let signer = Pkcs11Signer::open(&config).unwrap();
    for text in [format!("{signer:?}"), format!("{config:?}"), signer.describe()] {
        assert!(!text.contains(USER_PIN), "{text}");
    }
    let describe = signer.describe();
    assert!(describe.contains(TOKEN) && describe.contains(KEY), "{describe}");
    assert!(describe.contains(&hex::encode(hsm.public)), "{describe}");
}

/// Signatures per second through SoftHSM2: one thread, two threads sharing one session
/// (a `Mutex<Session>`), two threads with a session each; and the token's raw C_Sign
/// rate without the signer's verification. Median of three runs.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_signatures_per_second() {
    let Some(hsm) = hsm() else { return };
    const PER_THREAD: u32 = 3000;
    let run = |threads: u32, max_sessions: usize| -> f64 {
        let mut config = hsm.config(TOKEN, KEY);
        config.max_sessions = max_sessions;
        let signer = Pkcs11Signer::open(&config).unwrap();
        // Warm the pool: every session open before the clock starts.
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| signer.sign(b"warm up").unwrap());
            }
        });
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let signer = &signer;
                s.spawn(move || {
                    let mut msg = [0u8; 300]; // about the size of a record's Sig_structure
                    for i in 0..PER_THREAD {
                        msg[..4].copy_from_slice(&i.to_le_bytes());
                        msg[4..8].copy_from_slice(&t.to_le_bytes());
                        signer.sign(&msg).unwrap();
                    }
                });
            }
        });
        f64::from(threads * PER_THREAD) / start.elapsed().as_secs_f64()
    };
    let raw = || -> f64 {
        let ctx = raw_module(&hsm);
        let session = raw_session(&ctx, TOKEN, false);
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(KEY.as_bytes().to_vec()),
        ];
        let key = session.find_objects(&template).unwrap()[0];
        let mech = cryptoki::mechanism::Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
            cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
        ));
        let msg = [7u8; 300];
        let start = Instant::now();
        for _ in 0..PER_THREAD {
            session.sign(&mech, key, &msg).unwrap();
        }
        f64::from(PER_THREAD) / start.elapsed().as_secs_f64()
    };
    println!("\nSoftHSM2 Ed25519 signatures/s ({PER_THREAD} per thread, 300-byte messages; median of 3):");
    let report = |name: &str, f: &dyn Fn() -> f64| {
        let mut v = [f(), f(), f()];
        v.sort_by(f64::total_cmp);
        println!(
            "  {name:<55} {:>8.0}/s   runs: {:.0} {:.0} {:.0}",
            v[1], v[0], v[1], v[2]
        );
    };
    report("raw C_Sign, 1 thread (no verification)", &raw);
    report("Pkcs11Signer, 1 thread, 1 session", &|| run(1, 1));
    report("Pkcs11Signer, 2 threads, 1 session (Mutex<Session>)", &|| run(2, 1));
    report("Pkcs11Signer, 2 threads, 2 sessions (pool)", &|| run(2, 2));
    report("Pkcs11Signer, 4 threads, 4 sessions (pool)", &|| run(4, 4));
}
