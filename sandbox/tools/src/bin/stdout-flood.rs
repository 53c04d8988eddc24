//! Writes 64 KiB lines to stdout forever: stopped by the output cap.

use std::io::Write;

fn main() {
    let mut line = vec![b'y'; 65_535];
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    loop {
        if out.write_all(&line).is_err() {
            std::process::exit(3);
        }
    }
}
