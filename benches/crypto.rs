//! Criterion benchmarks of the mesh security toolbox.
fn main() {}
