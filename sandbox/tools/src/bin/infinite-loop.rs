//! Never finishes: a busy loop with no host calls, stopped only by fuel or the deadline.

fn main() {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
