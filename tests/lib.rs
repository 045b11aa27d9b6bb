//! Shared helpers for weft's integration tests.
