//! Writes seed corpora for the fuzz targets into `corpus/<target>/` (or the directory
//! given as the first argument): the fixture's valid records for `record_decode`, framed
//! valid streams for `verifier_stream`, and no-op / single-op inputs for the mutation
//! targets. Deterministic: the fixture uses fixed seeds and Ed25519 signs
//! deterministically.
//!
//!     cargo run --example gen_seeds [-- OUT_DIR]

use std::fs;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let f = helm_fuzz::fixture();
    let write = |target: &str, name: String, bytes: &[u8]| -> std::io::Result<()> {
        let dir = out.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };
    let mut n = 0;

    // record_decode: every valid record.
    for (i, r) in f.pool().enumerate().take(f.chain.len() + 2) {
        write("record_decode", format!("seed-record-{i:02}"), r)?;
        n += 1;
    }

    // verifier_stream: the chain framed inline, the chain by reference, and the
    // chain followed by extras into a small record table.
    let frame = |records: &[&[u8]], capb: u8| {
        let mut v = vec![records.len() as u8, capb, 0];
        for r in records {
            v.extend_from_slice(&(r.len() as u16).to_be_bytes());
            v.extend_from_slice(r);
        }
        v
    };
    let chain: Vec<&[u8]> = f.chain.iter().map(Vec::as_slice).collect();
    write("verifier_stream", "seed-inline-chain".into(), &frame(&chain, 0))?;
    let mut by_ref = vec![f.chain.len() as u8, 0, 0];
    for k in 0..f.chain.len() {
        by_ref.extend_from_slice(&[0xFF, k as u8]);
    }
    write("verifier_stream", "seed-ref-chain".into(), &by_ref)?;
    let mut full = vec![24, 0x80 | 19, 0];
    for k in 0..24usize {
        full.extend_from_slice(&[0xFF, k as u8]);
    }
    write("verifier_stream", "seed-ref-full-table".into(), &full)?;
    n += 3;

    // verifier_mutate / verifier_resign: no change, and one xor per record.
    for i in 0..f.chain.len() as u8 {
        write("verifier_mutate", format!("seed-noop-{i:02}"), &[i])?;
        write("verifier_mutate", format!("seed-xor-{i:02}"), &[i, 0, 0, 40, 1])?;
        write("verifier_resign", format!("seed-noop-{i:02}"), &[i, 0])?;
        write("verifier_resign", format!("seed-xor-{i:02}"), &[i, 0, 0, 0, 30, 1])?;
        n += 4;
    }
    // sandbox_module: every seed module unchanged (mode i), and as raw bytes (mode 0x80).
    for (i, m) in helm_fuzz::sandbox_seed_modules().iter().enumerate() {
        write("sandbox_module", format!("seed-noop-{i:02}"), &[i as u8])?;
        let mut raw = vec![0x80];
        raw.extend_from_slice(m);
        write("sandbox_module", format!("seed-raw-{i:02}"), &raw)?;
        n += 2;
    }
    eprintln!("wrote {n} seed inputs under {}", out.display());
    Ok(())
}
