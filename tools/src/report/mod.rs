//! The reproduction report of issue #7 (`weft report`): the sweep log, the paper's numbers,
//! the five claims checked against the results, and the markdown of docs/RESULTS.md.

pub mod claims;
pub mod log;
pub mod paper;
pub mod render;
