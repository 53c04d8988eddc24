//! Allocates and touches 1 MiB blocks forever, keeping them all: stopped by the memory cap.

fn main() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut b = vec![0u8; 1 << 20];
        for i in (0..b.len()).step_by(4096) {
            b[i] = blocks.len() as u8;
        }
        blocks.push(std::hint::black_box(b));
    }
}
