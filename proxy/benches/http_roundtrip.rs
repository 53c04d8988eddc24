//! HTTP round-trip benchmark (being written).
fn main() {}
