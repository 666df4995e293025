//! Tool-call benchmark (being written).
fn main() {}
