//! Helpers shared by weft's criterion benchmarks (see `benches/benches/`).
