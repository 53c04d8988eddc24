//! The ProofGraph store on the real file system: round trips, segment rollover, the
//! writer lock (in this process and in a child process, including one killed with
//! SIGKILL), lockless reading, record limits, concurrent group commit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use helm_kernel::store::{read_records, Durability, Store, StoreError, StoreOptions};

/// A record whose bytes name its tag.
fn rec(tag: u64, len: usize) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (tag as usize * 31 + i) as u8));
    v.truncate(len);
    v
}

fn all(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = store
        .for_each_record(|i, r| {
            assert_eq!(i, out.len() as u64);
            out.push(r.to_vec());
            Ok::<(), StoreError>(())
        })
        .unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

fn read_dir_records(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    read_records(dir, |i, r| {
        assert_eq!(i, out.len() as u64);
        out.push(r.to_vec());
        Ok::<(), StoreError>(())
    })
    .unwrap();
    out
}

fn seg_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
}

#[test]
fn append_reopen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut expect = Vec::new();
    {
        let (store, rec0) = Store::open(&dir, StoreOptions::default()).unwrap();
        assert_eq!(
            rec0,
            helm_kernel::store::Recovery {
                records: 0,
                segments: 1,
                truncated_bytes: 0,
                torn: None,
                reserved_bytes: 0,
            }
        );
        assert!(store.is_empty());
        assert_eq!(*store.durability(), Durability::Durable);
        for i in 0..10u64 {
            let a = rec(2 * i, 300);
            let b = rec(2 * i + 1, 1 + i as usize);
            let t = store.append(&[&a, &b]).unwrap();
            assert_eq!(t.position(), 2 * i + 2);
            store.wait_durable(t).unwrap();
            expect.push(a);
            expect.push(b);
        }
        assert_eq!(store.len(), 20);
        assert_eq!(all(&store), expect);
        let st = store.stats();
        assert_eq!((st.appended, st.durable, st.segments), (20, 20, 1));
        // An empty batch is a no-op whose ticket is the current position.
        assert_eq!(store.append(&[]).unwrap().position(), 20);
        store.close().unwrap();
    }
    let (store, rec1) = Store::open(&dir, StoreOptions::default()).unwrap();
    assert_eq!(
        (rec1.records, rec1.segments, rec1.truncated_bytes, rec1.torn.clone()),
        (20, 1, 0, None)
    );
    assert_eq!(store.len(), 20);
    // Sequences continue.
    let t = store.append(&[&rec(20, 50)]).unwrap();
    assert_eq!(t.position(), 21);
    store.wait_durable(t).unwrap();
    expect.push(rec(20, 50));
    assert_eq!(all(&store), expect);
    drop(store);
    assert_eq!(read_dir_records(&dir), expect);
}

#[test]
fn segments_roll_over_and_are_named_by_first_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = StoreOptions {
        segment_bytes: 1300,
        ..StoreOptions::default()
    };
    let mut expect = Vec::new();
    {
        let (store, _) = Store::open(dir, opts.clone()).unwrap();
        for i in 0..12u64 {
            // Frames of 308 bytes: two batches of two fit in a segment of 1300 bytes (24-byte header).
            let a = rec(2 * i, 300);
            let b = rec(2 * i + 1, 300);
            store.wait_durable(store.append(&[&a, &b]).unwrap()).unwrap();
            expect.push(a);
            expect.push(b);
        }
        // A batch larger than a segment gets one of its own.
        let big = rec(99, 5000);
        store.wait_durable(store.append(&[&big]).unwrap()).unwrap();
        expect.push(big);
        assert_eq!(all(&store), expect);
        assert_eq!(store.stats().segments, 7);
    }
    let names = seg_files(dir);
    assert_eq!(
        names,
        [0u64, 4, 8, 12, 16, 20, 24]
            .iter()
            .map(|i| format!("{i:020}.seg"))
            .collect::<Vec<_>>()
    );
    for n in &names[..6] {
        assert_eq!(std::fs::metadata(dir.join(n)).unwrap().len(), 24 + 4 * 308);
    }
    let (store, rec) = Store::open(dir, opts).unwrap();
    assert_eq!((rec.records, rec.segments), (25, 7));
    assert_eq!(all(&store), expect);
    assert_eq!(read_dir_records(dir), expect);
}

#[test]
fn second_open_in_the_same_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let err = Store::open(tmp.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
    // From another thread as well.
    let p = tmp.path().to_path_buf();
    let err = std::thread::spawn(move || Store::open(&p, StoreOptions::default()).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    // The lockless reader is not refused.
    store.wait_durable(store.append(&[b"x"]).unwrap()).unwrap();
    assert_eq!(read_dir_records(tmp.path()), vec![b"x".to_vec()]);
    drop(store);
    // Another test of this binary may be spawning a child at this moment: between its
    // fork and exec the child holds a copy of every descriptor (close-on-exec closes them
    // only at exec), our LOCK file's among them, and flock(2) locks belong to the open
    // file, so for that instant the lock outlives our drop. Retry briefly.
    let mut reopened = Store::open(tmp.path(), StoreOptions::default());
    for _ in 0..100 {
        if !matches!(reopened, Err(StoreError::Locked { .. })) {
            break;
        }
        std::thread::sleep(core::time::Duration::from_millis(10));
        reopened = Store::open(tmp.path(), StoreOptions::default());
    }
    let (store, rec) = reopened.unwrap();
    assert_eq!(rec.records, 1);
    drop(store);
}

const CHILD_ENV: &str = "HELM_STORE_TEST_CHILD_DIR";

/// In the child (the test binary run again with `CHILD_ENV` set): open the store, say
/// what happened, and hold the store until stdin closes.
fn child_main(dir: &str) {
    match Store::open(Path::new(dir), StoreOptions::default()) {
        Ok((store, _)) => {
            store.wait_durable(store.append(&[b"from the child"]).unwrap()).unwrap();
            println!("CHILD-OPENED");
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        Err(StoreError::Locked { .. }) => println!("CHILD-LOCKED"),
        Err(e) => println!("CHILD-ERROR {e}"),
    }
}

fn spawn_child(dir: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "second_process_is_refused_and_a_killed_holder_leaves_no_lock",
            "--exact",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no stdout");
    };
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    let verdict = loop {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break None;
        }
        if let Some(pos) = line.find("CHILD-") {
            break Some(line[pos..].trim().to_string());
        }
    };
    match verdict {
        Some(v) => (child, v),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child exited without a verdict");
        }
    }
}

#[test]
fn second_process_is_refused_and_a_killed_holder_leaves_no_lock() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_main(&dir);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // This process holds the store: the child is refused.
    let (store, _) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let (mut child, verdict) = spawn_child(tmp.path());
    assert_eq!(verdict, "CHILD-LOCKED");
    child.wait().unwrap();
    drop(store);
    // The child holds it: this process is refused.
    let (mut child, verdict) = spawn_child(tmp.path());
    assert_eq!(verdict, "CHILD-OPENED");
    let err = Store::open(tmp.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    // kill -9: the kernel releases the flock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    let (store, rec) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(rec.records, 1);
    assert_eq!(all(&store), vec![b"from the child".to_vec()]);
}

#[test]
fn record_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let max = vec![7u8; 65_536];
    let over = vec![7u8; 65_537];
    let err = store.append(&[b"ok", &[]]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidRecord {
                position: 1,
                len: 0,
                ..
            }
        ),
        "{err}"
    );
    let err = store.append(&[&over]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidRecord {
                position: 0,
                len: 65_537,
                max: 65_536
            }
        ),
        "{err}"
    );
    assert_eq!(store.len(), 0, "nothing of a refused batch is written");
    store.wait_durable(store.append(&[&max]).unwrap()).unwrap();
    assert_eq!(all(&store), vec![max.clone()]);
    drop(store);
    // A blob store takes larger frames, and every reader reads them.
    let blobs = tmp.path().join("blobs");
    let opts = StoreOptions {
        max_record: helm_kernel::store::MAX_FRAME,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(&blobs, opts.clone()).unwrap();
    let big = vec![9u8; 1 << 20];
    store.wait_durable(store.append(&[&big]).unwrap()).unwrap();
    drop(store);
    let (store, rec) = Store::open(&blobs, opts).unwrap();
    assert_eq!((rec.records, rec.torn), (1, None));
    assert_eq!(all(&store), vec![big]);
}

#[test]
fn ticket_from_another_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = Store::open(&tmp.path().join("a"), StoreOptions::default()).unwrap();
    let (b, _) = Store::open(&tmp.path().join("b"), StoreOptions::default()).unwrap();
    let t = a.append(&[b"1", b"2"]).unwrap();
    let err = b.wait_durable(t).unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidTicket { ticket: 2, appended: 0 }),
        "{err}"
    );
}

#[test]
fn callback_errors_stop_the_replay() {
    #[derive(Debug)]
    enum ReplayError {
        Store(StoreError),
        Stop(u64),
    }
    impl From<StoreError> for ReplayError {
        fn from(e: StoreError) -> Self {
            ReplayError::Store(e)
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    store.wait_durable(store.append(&[b"a", b"b", b"c"]).unwrap()).unwrap();
    let mut seen = 0;
    let r = store.for_each_record(|i, _| {
        seen += 1;
        if i == 1 {
            Err(ReplayError::Stop(i))
        } else {
            Ok(())
        }
    });
    assert!(matches!(r, Err(ReplayError::Stop(1))), "{r:?}");
    assert_eq!(seen, 2);
    let r = read_records(tmp.path(), |_, _| Err(ReplayError::Stop(7)));
    assert!(matches!(r, Err(ReplayError::Stop(7))));
    let r = read_records(&tmp.path().join("absent"), |_, _| Ok::<(), ReplayError>(()));
    assert!(matches!(r, Err(ReplayError::Store(StoreError::Io { .. }))), "{r:?}");
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(
        tmp.path(),
        StoreOptions {
            segment_bytes: 64 * 1024,
            ..Default::default()
        },
    )
    .unwrap();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..40u64 {
                    let a = rec(t << 32 | i << 1, 300);
                    let b = rec(t << 32 | i << 1 | 1, 300);
                    let ticket = store.append(&[&a, &b]).unwrap();
                    store.wait_durable(ticket).unwrap();
                    mine.push((ticket.position() - 2, a, b));
                }
                mine
            })
        })
        .collect();
    let mut placed = Vec::new();
    for t in threads {
        placed.extend(t.join().unwrap());
    }
    let records = all(&store);
    assert_eq!(records.len(), 16 * 40 * 2);
    for (at, a, b) in placed {
        assert_eq!(records[at as usize], a);
        assert_eq!(records[at as usize + 1], b);
    }
    let st = store.stats();
    assert_eq!(st.durable, 1280);
    assert!(st.fsyncs >= 1 && st.fsyncs <= 640, "{st:?}");
}

#[test]
fn buffered_mode_is_labelled_and_syncs_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions::buffered(core::time::Duration::from_millis(1));
    let (store, _) = Store::open(tmp.path(), opts).unwrap();
    assert!(
        store.durability().to_string().starts_with("BUFFERED"),
        "{}",
        store.durability()
    );
    let t = store.append(&[b"r"]).unwrap();
    store.wait_durable(t).unwrap();
    // The background thread catches up (bounded wait, not a timing assertion).
    for _ in 0..10_000 {
        if store.stats().durable == 1 {
            break;
        }
        std::thread::sleep(core::time::Duration::from_millis(1));
    }
    assert_eq!(store.stats().durable, 1);
    store.close().unwrap();
    let (store, rec) = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(rec.records, 1);
    assert_eq!(all(&store), vec![b"r".to_vec()]);
}
