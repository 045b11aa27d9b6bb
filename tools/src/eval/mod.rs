//! Evaluation of parallel context encoding (PAPER.md §5–6): tasks that turn data and a seed
//! into examples, scoring, the sweep driver behind the [`runner::Runner`] boundary, results
//! files, reports and plots.

pub mod engine;
pub mod example;
pub mod full;
pub mod plot;
pub mod report;
pub mod results;
pub mod runner;
pub mod score;
pub mod sweep;
pub mod tasks;
